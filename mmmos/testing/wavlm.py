"""Random-weight WavLM checkpoints in the real file formats (tests, demos, benchmarks).

Not part of the encoder: ``mmmos.extract.wavlm`` only loads; this module writes files it can load.
"""
from __future__ import annotations

import json
from pathlib import Path

from mmmos.extract.wavlm import SAMPLE_RATE, _build, hf_to_original_keys, legacy_weight_norm_keys, original_cfg_from_hf

# Real Base+ sizes (microsoft/wavlm-base-plus config.json).
BASE_PLUS = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    conv_dim=(512,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
    conv_bias=False, feat_extract_norm="group", do_stable_layer_norm=False,
    num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16, num_buckets=320, max_bucket_distance=800,
)
# Narrow and shallow, same conv strides/kernels so the frame rate stays 50 Hz.
TINY = dict(BASE_PLUS, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16,) * 7)


def seeded_build(seed: int, build):
    """``build()`` with the global torch RNG seeded (and the caller's RNG left alone): the random state below
    perturbs the model's own initial values, which must not depend on what the process drew before (a forward
    pass or another model built earlier changed them, and two "seed=3" models differed)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def random_state(model, seed: int) -> dict:
    """The model's state dict with every float tensor redrawn (norm gains near 1, small
    biases), so that any key mix-up changes the outputs."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in model.state_dict().items():
        if not v.is_floating_point():
            out[k] = v.clone()
            continue
        noise = torch.randn(v.shape, generator=g)
        if k.endswith("original0") or k.endswith("weight_g"):  # weight-norm gains: keep positive
            out[k] = (v.abs() * (1 + 0.1 * noise.abs())).contiguous()
        elif "norm" in k and k.endswith("weight") or k.endswith("gru_rel_pos_const"):
            out[k] = (1 + 0.1 * noise).contiguous()
        elif k.endswith("bias"):
            out[k] = (0.05 * noise).contiguous()
        else:
            out[k] = (v + 0.02 * noise * (v.std() if v.numel() > 1 else 1)).contiguous()
    return out


def _random_model(size: str, seed: int):
    """(config, model, random state dict) of a WavLM of ``size`` ("tiny" or "full" = Base+)."""
    import torch
    from transformers import WavLMConfig

    if size not in ("tiny", "full"):
        raise ValueError(f"size must be 'tiny' or 'full', got {size!r}")
    config = WavLMConfig(**(TINY if size == "tiny" else BASE_PLUS))
    model = seeded_build(seed, lambda: _build(config))
    sd = random_state(model, seed)
    if config.conv_dim[-1] == config.hidden_size:
        # unilm has no projection when widths agree: make it the identity it stands for
        sd["feature_projection.projection.weight"] = torch.eye(config.hidden_size)
        sd["feature_projection.projection.bias"] = torch.zeros(config.hidden_size)
    return config, model, sd


def random_encoder(size: str = "tiny", seed: int = 0, device: str = "cpu"):
    """A frozen ``WavLMEncoder`` with the weights ``write_random_checkpoint`` would write, built in
    memory (benchmarks: no multi-hundred-MB file).  Its identity has no weights file."""
    from mmmos.extract.wavlm import MAX_CHUNK_FRAMES, WavLMEncoder

    _, model, sd = _random_model(size, seed)
    model.load_state_dict(sd, strict=True)
    model.eval().requires_grad_(False).to(device)
    return WavLMEncoder(model, device=device, weights=None, normalize=False, max_chunk_frames=MAX_CHUNK_FRAMES,
                        dtype="float32", source_format="random")


def write_random_checkpoint(out_dir, size: str = "tiny", fmt: str = "hf", seed: int = 0) -> Path:
    """Write a randomly initialised WavLM in a real format; returns what ``from_weights`` takes.

    ``size``: "tiny" (hidden 32, 2 layers, 16-channel conv front end with Base+ kernels
    and strides) or "full" (Base+).  ``fmt``: "hf" (config.json + pytorch_model.bin with
    2021-style weight_g/weight_v names), "hf-safetensors" (config.json +
    model.safetensors, current names) or "original" (unilm ``{'cfg', 'model'}`` .pt).
    """
    import torch

    if fmt not in ("hf", "hf-safetensors", "original"):
        raise ValueError(f"fmt must be 'hf', 'hf-safetensors' or 'original', got {fmt!r}")
    config, model, sd = _random_model(size, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "original":
        f = out / ("WavLM-Base+.pt" if size == "full" else "WavLM-tiny.pt")
        orig = hf_to_original_keys(sd, config.feat_extract_norm)
        if config.conv_dim[-1] == config.hidden_size:
            del orig["post_extract_proj.weight"], orig["post_extract_proj.bias"]
        torch.save({"cfg": original_cfg_from_hf(config), "model": orig}, f)
        return f
    config.architectures = ["WavLMModel"]
    config.to_json_file(str(out / "config.json"))
    (out / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": False, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
        "padding_side": "right", "padding_value": 0.0, "return_attention_mask": True, "sampling_rate": SAMPLE_RATE,
    }, indent=2))
    if fmt == "hf":
        torch.save(legacy_weight_norm_keys(sd), out / "pytorch_model.bin")
    else:
        from safetensors.torch import save_file

        save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out
