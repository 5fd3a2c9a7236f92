"""Random-weight MuQ checkpoints laid out like the OpenMuQ release (tests, demos, benchmarks).

Not part of the encoder: ``mmmos.extract.muq_encoder`` only loads; this module writes files it can load.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from mmmos.extract.muq_encoder import MUQ_LARGE_STAT, build_model
from mmmos.testing.wavlm import seeded_build


def _w2v2_dict(size: str) -> dict:
    """Conformer config as MuQ-large uses it (``Wav2Vec2ConformerConfig(...).to_dict()``),
    or a narrow, shallow one for tests."""
    from transformers import Wav2Vec2ConformerConfig

    dims = dict(hidden_size=1024, num_attention_heads=16, intermediate_size=4096, num_hidden_layers=12)
    if size == "tiny":
        dims = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_hidden_layers=2)
    d = Wav2Vec2ConformerConfig(
        **dims, hidden_act="swish", position_embeddings_type="rotary", rotary_embedding_base=10000,
        conv_depthwise_kernel_size=31, layer_norm_eps=1e-5,
    ).to_dict()
    d.pop("id2label", None)  # MuQ's EasyDict config rejects these int-keyed maps
    d.pop("label2id", None)
    return d


def muq_config_dict(size: str = "full") -> dict:
    """A flat MuQConfig dict as in the release's config.json ("full" = MuQ-large sizes)."""
    from muq import MuQConfig

    if size not in ("tiny", "full"):
        raise ValueError(f"size must be 'tiny' or 'full', got {size!r}")
    w2v2 = _w2v2_dict(size)
    if size == "tiny":
        cfg = MuQConfig(conv_dim=8, encoder_dim=32, encoder_depth=2, codebook_size=16, stat=dict(MUQ_LARGE_STAT), w2v2_config=w2v2)
    else:
        cfg = MuQConfig(conv_dim=512, encoder_dim=1024, encoder_depth=12, stat=dict(MUQ_LARGE_STAT), w2v2_config=w2v2)
    return dataclasses.asdict(cfg)


def random_state(model, seed: int) -> dict:
    """The model's state dict with float tensors redrawn (norm gains near 1, small biases,
    positive BatchNorm variances) so that any key mix-up changes the outputs."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in model.state_dict().items():
        if not v.is_floating_point() or k.endswith("inv_freq"):  # counters; rotary frequencies are fixed
            out[k] = v.clone()
            continue
        noise = torch.randn(v.shape, generator=g)
        if k.endswith("running_var"):
            out[k] = (0.5 + torch.rand(v.shape, generator=g)).contiguous()
        elif k.endswith("running_mean") or k.endswith("bias"):
            out[k] = (0.05 * noise).contiguous()
        elif k.endswith("original0") or k.endswith("weight_g"):
            out[k] = (v.abs() * (1 + 0.1 * noise.abs())).contiguous()
        elif ("norm" in k or ".bn" in k) and k.endswith("weight"):
            out[k] = (1 + 0.1 * noise).contiguous()
        else:
            out[k] = (v + 0.02 * noise * (v.std() if v.numel() > 1 else 1)).contiguous()
    return out


def write_random_checkpoint(out_dir, size: str = "tiny", seed: int = 0) -> Path:
    """Write a randomly initialised MuQ as the release lays it out: ``config.json`` (flat
    MuQConfig) + ``model.safetensors``.  "tiny": conformer width 32, 2 layers, 8-channel
    conv blocks, same mel front end and strides (25 Hz); "full": MuQ-large sizes."""
    from muq import MuQConfig
    from safetensors.torch import save_file

    cfg_dict = muq_config_dict(size)
    model = seeded_build(seed, lambda: build_model(MuQConfig(**cfg_dict)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg_dict, indent=2))
    save_file(random_state(model, seed), str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def random_encoder(size: str = "tiny", seed: int = 0, device: str = "cpu"):
    """A frozen ``MuQEncoder`` with the weights ``write_random_checkpoint`` would write, built in memory."""
    from muq import MuQConfig

    from mmmos.extract.muq_encoder import MAX_CHUNK_SECONDS, MuQEncoder

    cfg = MuQConfig(**muq_config_dict(size))
    model = seeded_build(seed, lambda: build_model(cfg))
    model.load_state_dict(random_state(model, seed), strict=True)
    model.eval().requires_grad_(False).to(device)
    return MuQEncoder(model, cfg, device=device, weights=None, dtype="float32", chunk_seconds=MAX_CHUNK_SECONDS,
                      absent_training_keys=0)
