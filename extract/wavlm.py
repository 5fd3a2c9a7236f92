"""WavLM encoder: ``transformers.WavLMModel`` loaded strictly from local weights.

Two weight formats are accepted:

* an HF directory (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``),
  e.g. a local copy of microsoft/wavlm-base-plus;
* the original unilm file (``WavLM-Base+.pt``: ``{'cfg': dict, 'model': state_dict}``),
  whose config and keys are converted here to the HF layout (our own table below).

Frames: the last hidden state, 50 Hz (hop 320 samples at 16 kHz, receptive field
400 samples), ``(T, hidden_size)`` float32.  Input is the raw waveform: no
normalisation unless the checkpoint itself declares it was trained on normalised
input (WavLM Base+ does not; ``normalize=`` overrides).

Long clips are cut with :func:`extract.base.tiled_chunks` into chunks of at most
``max_chunk_frames`` (1500 = 30 s) frames plus 80 samples of right context, so the
concatenated frames have exactly the count and timing of one pass over the whole
clip.  The policy is recorded in ``config['chunking']``.

Length (~500 lines): one job, loading WavLM in both formats; about half is the original<->HF key and
config table, which only makes sense next to the loader that checks it.
"""
from __future__ import annotations

import ast
import functools
import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # we never resolve hub ids; make sure nothing tries

import numpy as np

from .base import (EncoderLoadError, FrameEncoder, key_mismatch, load_checkpoint, strict_load, tiled_chunks, to_device,
                   transformers_without_sklearn, weights_to_be_loaded)

SAMPLE_RATE = 16000
MAX_CHUNK_FRAMES = 1500  # 30 s at 50 Hz: SPEC caps chunks at 30 s (attention memory ~ T^2)
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

# Config fields that determine the network; recorded in the encoder identity.
ARCH_FIELDS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "conv_dim", "conv_kernel", "conv_stride", "conv_bias", "feat_extract_norm", "feat_extract_activation",
    "do_stable_layer_norm", "num_conv_pos_embeddings", "num_conv_pos_embedding_groups",
    "num_buckets", "max_bucket_distance", "layer_norm_eps",
)


# ----------------------------------------------------------------------------------
# weight-norm key names
# ----------------------------------------------------------------------------------
_WN_OLD = {".weight_g": ".parametrizations.weight.original0", ".weight_v": ".parametrizations.weight.original1"}


def align_weight_norm_keys(sd: dict, model_keys) -> dict:
    """Rename weight-norm tensors between the old (``weight_g/weight_v``) and the
    parametrization (``parametrizations.weight.original0/1``) spellings so they match
    ``model_keys``; the same tensors under either name, nothing else changes."""
    model_keys = set(model_keys)
    out = {}
    for k, v in sd.items():
        new = k
        if k not in model_keys:
            for old, param in _WN_OLD.items():
                if k.endswith(old) and k[: -len(old)] + param in model_keys:
                    new = k[: -len(old)] + param
                elif k.endswith(param) and k[: -len(param)] + old in model_keys:
                    new = k[: -len(param)] + old
        out[new] = v
    return out


def _legacy_name(key: str) -> str:
    for old, param in _WN_OLD.items():
        if key.endswith(param):
            return key[: -len(param)] + old
    return key


def legacy_weight_norm_keys(sd: dict) -> dict:
    """Parametrization spelling -> old ``weight_g``/``weight_v`` spelling (as 2021 files have)."""
    return {_legacy_name(k): v for k, v in sd.items()}


# ----------------------------------------------------------------------------------
# original unilm checkpoint <-> HF layout
# ----------------------------------------------------------------------------------
_P = "(weight|bias|weight_g|weight_v|parametrizations\\.weight\\.original0|parametrizations\\.weight\\.original1)"


def _key_table(conv_norm: str) -> list[tuple[str, str]]:
    """(original, HF) key templates; ``{i}`` = a layer index, ``{p}`` = the parameter name.

    ``conv_norm`` is HF ``feat_extract_norm``: the unilm "default" extractor has one
    GroupNorm at index 2 of conv block 0, "layer_norm" mode a LayerNorm wrapped in
    TransposeLast modules at index 2.1 of every block.
    """
    norm = "feature_extractor.conv_layers.{i}.2.1.{p}" if conv_norm == "layer" else "feature_extractor.conv_layers.{i}.2.{p}"
    layer = [
        ("self_attn.q_proj", "attention.q_proj"),
        ("self_attn.k_proj", "attention.k_proj"),
        ("self_attn.v_proj", "attention.v_proj"),
        ("self_attn.out_proj", "attention.out_proj"),
        ("self_attn.grep_linear", "attention.gru_rel_pos_linear"),
        ("self_attn.relative_attention_bias", "attention.rel_attn_embed"),
        ("self_attn_layer_norm", "layer_norm"),
        ("fc1", "feed_forward.intermediate_dense"),
        ("fc2", "feed_forward.output_dense"),
        ("final_layer_norm", "final_layer_norm"),
    ]
    return [
        ("mask_emb", "masked_spec_embed"),
        ("layer_norm.{p}", "feature_projection.layer_norm.{p}"),
        ("post_extract_proj.{p}", "feature_projection.projection.{p}"),
        ("encoder.pos_conv.0.{p}", "encoder.pos_conv_embed.conv.{p}"),
        ("encoder.layer_norm.{p}", "encoder.layer_norm.{p}"),
        ("feature_extractor.conv_layers.{i}.0.{p}", "feature_extractor.conv_layers.{i}.conv.{p}"),
        (norm, "feature_extractor.conv_layers.{i}.layer_norm.{p}"),
        ("encoder.layers.{i}.self_attn.grep_a", "encoder.layers.{i}.attention.gru_rel_pos_const"),
    ] + [(f"encoder.layers.{{i}}.{o}.{{p}}", f"encoder.layers.{{i}}.{h}.{{p}}") for o, h in layer]


@functools.lru_cache(maxsize=None)
def _compile(template: str):
    import re

    pat = re.escape(template).replace(re.escape("{i}"), "(?P<i>\\d+)").replace(re.escape("{p}"), f"(?P<p>{_P})")
    return re.compile(pat + "$")


def _rename(key: str, table: list[tuple[str, str]], forward: bool) -> str | None:
    """Translate one key with the table (original->HF if ``forward``); None if no entry fits."""
    for orig, hf in table:
        src, dst = (orig, hf) if forward else (hf, orig)
        m = _compile(src).match(key)
        if m:
            g = m.groupdict()
            return dst.replace("{i}", g.get("i") or "").replace("{p}", g.get("p") or "")
    return None


def original_to_hf_keys(sd: dict, conv_norm: str) -> tuple[dict, list[str]]:
    """Original unilm state dict -> HF names; also returns the keys no table entry fits."""
    table = _key_table(conv_norm)
    out, unknown = {}, []
    for k, v in sd.items():
        new = _rename(k, table, forward=True)
        if new is None:
            unknown.append(k)
        else:
            out[new] = v
    return out, unknown


def hf_to_original_keys(sd: dict, conv_norm: str) -> dict:
    """HF state dict -> original unilm names (old weight-norm spelling, as the real file)."""
    table = _key_table(conv_norm)
    out = {}
    for k, v in legacy_weight_norm_keys(sd).items():
        new = _rename(k, table, forward=False)
        if new is None:
            raise ValueError(f"no original-format name for HF key {k}")
        out[new] = v
    return out


def parse_conv_layers(spec: str) -> list[tuple[int, int, int]]:
    """Evaluate unilm's ``conv_feature_layers`` string, e.g.
    ``"[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"``, without ``eval``: only
    list/tuple literals of ints, ``+`` and ``*`` are allowed."""

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [ev(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            a, b = ev(node.left), ev(node.right)
            return a + b if isinstance(node.op, ast.Add) else a * b
        raise ValueError(f"unsupported expression in conv_feature_layers: {ast.dump(node)[:80]}")

    layers = ev(ast.parse(spec, mode="eval"))
    if not isinstance(layers, list) or not all(isinstance(t, tuple) and len(t) == 3 for t in layers):
        raise ValueError(f"conv_feature_layers must be a list of (dim, kernel, stride): {spec!r}")
    return [tuple(int(x) for x in t) for t in layers]


def hf_config_from_original(cfg: dict, source: str = "checkpoint"):
    """Build a ``WavLMConfig`` from an original unilm ``cfg`` dict (defaults as unilm's WavLMConfig)."""
    from transformers import WavLMConfig

    get = cfg.get
    if not (get("relative_position_embedding", False) and get("gru_rel_pos", False)):
        # transformers' WavLM always uses gated relative position bias
        raise EncoderLoadError(
            f"{source}: cfg has relative_position_embedding={get('relative_position_embedding')}, "
            f"gru_rel_pos={get('gru_rel_pos')}; only WavLM with gated relative position bias is supported"
        )
    mode = get("extractor_mode", "default")
    if mode not in ("default", "layer_norm"):
        raise EncoderLoadError(f"{source}: unsupported extractor_mode {mode!r}")
    if get("activation_fn", "gelu") == "glu":
        raise EncoderLoadError(f"{source}: activation_fn 'glu' is not supported by transformers' WavLM")
    try:
        conv = parse_conv_layers(get("conv_feature_layers", "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"))
    except (ValueError, SyntaxError) as e:
        raise EncoderLoadError(f"{source}: bad cfg['conv_feature_layers']: {e}") from e
    return WavLMConfig(
        hidden_size=int(get("encoder_embed_dim", 768)),
        num_hidden_layers=int(get("encoder_layers", 12)),
        num_attention_heads=int(get("encoder_attention_heads", 12)),
        intermediate_size=int(get("encoder_ffn_embed_dim", 3072)),
        hidden_act=get("activation_fn", "gelu"),
        conv_dim=[c[0] for c in conv],
        conv_kernel=[c[1] for c in conv],
        conv_stride=[c[2] for c in conv],
        conv_bias=bool(get("conv_bias", False)),
        feat_extract_norm="group" if mode == "default" else "layer",
        do_stable_layer_norm=bool(get("layer_norm_first", False)),
        num_conv_pos_embeddings=int(get("conv_pos", 128)),
        num_conv_pos_embedding_groups=int(get("conv_pos_groups", 16)),
        num_buckets=int(get("num_buckets", 320)),
        max_bucket_distance=int(get("max_distance", 1280)),
        layer_norm_eps=1e-5,
        mask_time_prob=0.05,  # > 0 so the model keeps masked_spec_embed (the file's mask_emb)
    )


def original_cfg_from_hf(config, normalize: bool = False) -> dict:
    """Inverse of :func:`hf_config_from_original`: a unilm-style ``cfg`` dict."""
    layers = " + ".join(f"[({d},{k},{s})]" for d, k, s in zip(config.conv_dim, config.conv_kernel, config.conv_stride))
    return {
        "extractor_mode": "default" if config.feat_extract_norm == "group" else "layer_norm",
        "encoder_layers": config.num_hidden_layers,
        "encoder_embed_dim": config.hidden_size,
        "encoder_ffn_embed_dim": config.intermediate_size,
        "encoder_attention_heads": config.num_attention_heads,
        "activation_fn": config.hidden_act,
        "layer_norm_first": config.do_stable_layer_norm,
        "conv_feature_layers": layers,
        "conv_bias": config.conv_bias,
        "feature_grad_mult": 0.1,
        "normalize": normalize,
        "dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.0,
        "encoder_layerdrop": 0.05, "dropout_input": 0.1, "dropout_features": 0.1,
        "mask_length": 10, "mask_prob": 0.8, "mask_selection": "static", "mask_other": 0.0,
        "no_mask_overlap": False, "mask_min_space": 1,
        "mask_channel_length": 10, "mask_channel_prob": 0.0, "mask_channel_selection": "static",
        "mask_channel_other": 0.0, "no_mask_channel_overlap": False, "mask_channel_min_space": 1,
        "conv_pos": config.num_conv_pos_embeddings,
        "conv_pos_groups": config.num_conv_pos_embedding_groups,
        "relative_position_embedding": True,
        "num_buckets": config.num_buckets,
        "max_distance": config.max_bucket_distance,
        "gru_rel_pos": True,
    }


def _check_original_keys(model, sd: dict, conv_norm: str, source: str) -> None:
    """Strict key check in the original file's own names, so errors name keys the user can find."""
    expected = hf_to_original_keys({k: v for k, v in model.state_dict().items()}, conv_norm)
    expected = {k: tuple(v.shape) for k, v in expected.items()}
    if "post_extract_proj.weight" not in sd and model.config.conv_dim[-1] == model.config.hidden_size:
        # unilm omits the projection when conv and model widths agree (identity, filled later)
        expected.pop("post_extract_proj.weight", None)
        expected.pop("post_extract_proj.bias", None)
    got = {_legacy_name(k): tuple(v.shape) for k, v in sd.items()}  # one weight-norm spelling
    problem = key_mismatch(expected, got)
    if problem:
        raise EncoderLoadError(f"{source}: weights do not match the WavLM architecture of its cfg: {problem}")


# ----------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------
def _build(config, init: bool = True):
    """``WavLMModel(config)``; ``init=False`` when a strict load fills every weight next (no random draws)."""
    import torch

    with transformers_without_sklearn():
        from transformers import WavLMModel

    with torch.random.fork_rng(devices=[]):  # construction draws random init; leave caller's RNG alone
        with weights_to_be_loaded(active=not init):
            model = WavLMModel(config)
    return model


def _load_hf_dir(path: Path):
    """-> (model, weights file, declared normalisation)."""
    from transformers import WavLMConfig

    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise EncoderLoadError(f"{path}: no config.json (expected an HF WavLM directory)")
    try:
        raw = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise EncoderLoadError(f"{cfg_file}: not valid JSON ({e})") from e
    if raw.get("model_type") != "wavlm":
        raise EncoderLoadError(f"{cfg_file}: model_type is {raw.get('model_type')!r}, not 'wavlm'")
    config = WavLMConfig.from_dict(raw)
    wfile = next((path / n for n in HF_WEIGHT_FILES if (path / n).is_file()), None)
    if wfile is None:
        raise EncoderLoadError(f"{path}: none of {', '.join(HF_WEIGHT_FILES)} found")
    sd = load_checkpoint(wfile)
    if not isinstance(sd, dict):
        raise EncoderLoadError(f"{wfile}: not a state dict")
    if any(k.startswith("wavlm.") for k in sd):
        # saved from a WavLMFor* model: the encoder lives under "wavlm.", task heads are not ours
        sd = {k[len("wavlm."):]: v for k, v in sd.items() if k.startswith("wavlm.")}
    model = _build(config, init=False)
    own = model.state_dict()
    sd = align_weight_norm_keys(sd, own)
    if "masked_spec_embed" in sd and "masked_spec_embed" not in own:
        sd.pop("masked_spec_embed")  # training-only mask vector; config has masking off
    strict_load(model, sd, str(wfile))
    normalize = False
    pre = path / "preprocessor_config.json"
    if pre.is_file():
        normalize = bool(json.loads(pre.read_text()).get("do_normalize", False))
    return model, wfile, normalize


def _load_original(path: Path):
    import torch

    ckpt = load_checkpoint(path)
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("cfg"), dict) and isinstance(ckpt.get("model"), dict)):
        keys = list(ckpt)[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise EncoderLoadError(
            f"{path}: not an original WavLM checkpoint (expected {{'cfg': dict, 'model': state_dict}}, got {keys})"
        )
    config = hf_config_from_original(ckpt["cfg"], str(path))
    sd = ckpt["model"]
    model = _build(config, init=False)
    _check_original_keys(model, sd, config.feat_extract_norm, str(path))
    hf_sd, unknown = original_to_hf_keys(sd, config.feat_extract_norm)
    if unknown:  # cannot happen after _check_original_keys; never drop weights silently
        raise EncoderLoadError(f"{path}: keys without an HF counterpart: {', '.join(unknown[:6])}")
    if "feature_projection.projection.weight" not in hf_sd:
        d = config.hidden_size
        hf_sd["feature_projection.projection.weight"] = torch.eye(d)
        hf_sd["feature_projection.projection.bias"] = torch.zeros(d)
    strict_load(model, align_weight_norm_keys(hf_sd, model.state_dict()), str(path))
    return model, path, bool(ckpt["cfg"].get("normalize", False))


def conv_geometry(kernels, strides) -> tuple[int, int]:
    """(hop, receptive field) in samples of a stack of unpadded 1-D convolutions."""
    hop, rf = 1, 1
    for k, s in zip(reversed(list(kernels)), reversed(list(strides))):
        rf = (rf - 1) * s + k
    for s in strides:
        hop *= s
    return hop, rf


class WavLMEncoder(FrameEncoder):
    """Frozen WavLM; last hidden state at 50 Hz."""

    name = "wavlm"
    sample_rate = SAMPLE_RATE
    reduced_precisions = ("bf16", "fp16")
    cpu_auto_bf16 = True  # measured to pay on CPUs with native bf16 (bench/precision_bench.py)

    def __init__(self, model, *, device: str, weights, normalize: bool, max_chunk_frames: int, dtype: str, source_format: str):
        self.model = model
        self.kernels = list(model.config.conv_kernel)
        self.strides = list(model.config.conv_stride)
        self.hop, self.receptive_field = conv_geometry(self.kernels, self.strides)
        self.max_chunk_frames = int(max_chunk_frames)
        self.normalize = bool(normalize)
        self.dtype = dtype
        self.dim = int(model.config.hidden_size)
        self.frame_rate = SAMPLE_RATE / self.hop
        config: dict[str, Any] = {
            "arch": {k: getattr(model.config, k) for k in ARCH_FIELDS},
            "source_format": source_format,
            "output": "last_hidden_state",
            "normalize_input": self.normalize,
            "dtype": dtype,
            "chunking": {
                "policy": "tiled_chunks",
                "max_frames": self.max_chunk_frames,
                "hop": self.hop,
                "context": self.receptive_field - self.hop,
            },
        }
        super().__init__(device=device, weights=weights, config=config)

    @classmethod
    def from_weights(
        cls,
        weights,
        device: str | None = "cpu",
        *,
        normalize: bool | None = None,
        max_chunk_frames: int = MAX_CHUNK_FRAMES,
        dtype: str = "float32",
        **options,
    ) -> "WavLMEncoder":
        """Load from an HF directory (or a weights file inside one) or an original unilm ``.pt``.

        ``normalize=None`` follows the checkpoint (HF ``preprocessor_config.json``
        ``do_normalize``; original ``cfg['normalize']``; Base+ says False).
        ``dtype="float16"`` computes the transformer in fp16 on CUDA (as ``prepare_precision("fp16")``).
        """
        if options:
            raise TypeError(f"wavlm: unknown options {sorted(options)}")
        if weights is None:
            raise EncoderLoadError("wavlm: weights are required (an HF WavLM directory or the original WavLM .pt)")
        if not 1 <= int(max_chunk_frames) <= MAX_CHUNK_FRAMES:
            raise ValueError(f"wavlm: max_chunk_frames must be in 1..{MAX_CHUNK_FRAMES} (chunks ≤ 30 s)")
        device = device or "cpu"
        if dtype not in ("float32", "float16"):
            raise ValueError(f"wavlm: dtype must be 'float32' or 'float16', got {dtype!r}")
        if dtype == "float16" and not str(device).startswith("cuda"):
            raise ValueError("wavlm: dtype='float16' needs a CUDA device")
        path = Path(weights)
        if path.is_file() and path.name in HF_WEIGHT_FILES and (path.parent / "config.json").is_file():
            path = path.parent
        if path.is_dir():
            model, wfile, declared = _load_hf_dir(path)
            fmt = "hf"
        elif path.is_file():
            model, wfile, declared = _load_original(path)
            fmt = "original"
        else:
            raise EncoderLoadError(f"{path}: weights not found")
        model.eval().requires_grad_(False).to(device)
        enc = cls(
            model, device=device, weights=wfile, normalize=declared if normalize is None else normalize,
            max_chunk_frames=max_chunk_frames, dtype=dtype, source_format=fmt,
        )
        if dtype == "float16":
            enc.prepare_precision("fp16")
            enc._prepared_precision = "fp16"
        return enc

    # -- geometry -------------------------------------------------------------------
    def expected_frames(self, n_samples: int) -> int:
        n = int(n_samples)
        for k, s in zip(self.kernels, self.strides):
            if n < k:
                return 0
            n = (n - k) // s + 1
        return n

    def min_samples(self) -> int:
        return self.receptive_field

    # -- the three steps ------------------------------------------------------------
    def split(self, wave: np.ndarray) -> list[np.ndarray]:
        if len(wave) < self.min_samples():
            raise ValueError(
                f"wavlm: clip of {len(wave)} samples is shorter than the {self.min_samples()} samples "
                f"({self.min_samples() / SAMPLE_RATE * 1000:.0f} ms) one frame needs"
            )
        return tiled_chunks(wave, hop=self.hop, context=self.receptive_field - self.hop, max_frames=self.max_chunk_frames)

    def forward_batch(self, x: np.ndarray) -> np.ndarray:
        import torch

        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"wavlm: forward_batch takes (B, samples), got shape {x.shape}")
        if x.shape[1] < self.min_samples():
            raise ValueError(f"wavlm: inputs of {x.shape[1]} samples are shorter than {self.min_samples()}")
        if x.shape[1] > self.max_chunk_frames * self.hop + self.receptive_field - self.hop:
            raise ValueError(f"wavlm: input of {x.shape[1]} samples is longer than one chunk; use split()")
        t = to_device(x, self.device)
        if self.normalize:  # as Wav2Vec2FeatureExtractor(do_normalize=True), per item
            t = (t - t.mean(1, keepdim=True)) / torch.sqrt(t.var(1, unbiased=False, keepdim=True) + 1e-7)
        with torch.inference_mode():
            out = self.model(t).last_hidden_state
        return out.float().cpu().numpy()

    def prepare_precision(self, precision: str) -> None:
        """Cast the model to ``precision`` (bf16 or fp16) once; called by ``extract.precision``.

        The first conv layer (conv, GroupNorm and GELU over raw samples) always stays fp32.  In bf16 (fp32's
        exponent range) the other six conv layers, the feature projection and the transformer are cast: the
        fp32 conv layers were half of WavLM's bf16 time on an AVX-512-BF16 CPU, and casting them took WavLM
        from 1.8x to 2.2x fp32 (one thread, frame cosine >= 0.9998; bench/precision_profile.py).  In fp16
        (narrow range) the whole conv front end and the feature projection stay fp32, the transformer alone
        is cast.  The positional conv's weight norm is folded into a plain weight first (in fp32), so it is
        neither recomputed per call nor computed in reduced precision.
        """
        import torch
        from torch.nn.utils import parametrize

        from .precision import cast_except, cast_input, cast_output, torch_dtype

        if precision not in self.reduced_precisions:
            raise ValueError(f"wavlm: no preparation for precision {precision!r}")
        dtype = torch_dtype(precision)
        m = self.model
        conv = m.encoder.pos_conv_embed.conv
        if parametrize.is_parametrized(conv, "weight"):
            parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)
        elif hasattr(conv, "weight_g"):  # old-style weight_norm hook
            torch.nn.utils.remove_weight_norm(conv)
        if precision == "bf16":
            # the positional conv stays fp32 too: oneDNN's bf16 grouped conv with few channels per group and a
            # long kernel gives wrong results on AMX CPUs (relative error 1.0 for 2 channels per group, kernel
            # 128; tests/test_precision_inputs.py), and it is about 5 % of Base+'s work
            first, pos = m.feature_extractor.conv_layers[0], m.encoder.pos_conv_embed
            cast_except(m, dtype, keep=(first, pos))
            cast_output(first, dtype)
            cast_input(pos, torch.float32)
            cast_output(pos, dtype)
        else:
            cast_except(m, dtype, keep=(m.feature_extractor, m.feature_projection))
            cast_output(m.feature_projection, dtype)

    def join(self, outputs: list[np.ndarray], wave: np.ndarray) -> np.ndarray:
        frames = super().join(outputs, wave)
        want = self.expected_frames(len(wave))
        if frames.shape[0] != want:
            raise RuntimeError(f"wavlm: chunks gave {frames.shape[0]} frames, a full pass gives {want}")
        return frames
