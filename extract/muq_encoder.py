"""MuQ encoder: the ``muq`` package's model, built from a local config.json and loaded strictly.

Weights: an HF directory of OpenMuQ/MuQ-large-msd-iter (``config.json`` +
``model.safetensors`` or ``pytorch_model.bin``).  ``MuQ.from_pretrained`` is never
called: it may reach the hub and it loads non-strictly.  We build ``muq.MuQ`` from the
flat MuQConfig dict in config.json (the layout PyTorchModelHubMixin writes) and load
the state dict ourselves with strict key and shape checks.

Input: 24 kHz float32 (MuQ computes in half precision when fed 16-bit input, so we
always cast).  Output: ``last_hidden_state`` (after the conformer's final LayerNorm).

Front end: torchaudio mel spectrogram (n_fft 2048, hop 240, centred with reflect
padding; MuQ drops the last STFT frame) -> two stride-2 residual conv blocks in time
(label rate 25: 4 mel frames per token) -> conformer.  So a clip of ``n`` samples gives
``M = n // 240`` mel frames and ``ceil(M / 4)`` tokens (25 Hz; 10 s -> 250), and it needs
at least 1025 samples (reflect padding of 1024 must be shorter than the input).

Chunking (``config['chunking']``): clips longer than 30 s are cut into 30-s chunks
(720000 samples = 750 tokens, a multiple of the 960-sample token hop).  A remainder
``r`` is not encoded alone: the last chunk is moved back by whole tokens so it is as
long as possible (≤ 30 s) and ends at the clip's end; its leading tokens that repeat the
previous chunk are dropped.  The concatenation then has exactly the frame count and
token timing of one pass (``ceil((n // 240) / 4)``), every chunk has ≥ 29.96 s of
audio, and no chunk is padded.  Frames differ from a single pass near chunk borders
(the conformer attends over its whole input); that is the policy's price.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # we never resolve hub ids; make sure nothing tries

import numpy as np

from .base import (EncoderLoadError, FrameEncoder, load_checkpoint, strict_load, to_device, transformers_without_sklearn,
                   weights_to_be_loaded)
from .wavlm import align_weight_norm_keys

SAMPLE_RATE = 24000  # MuQ's MelSTFT is fixed to 24 kHz
N_FFT = 2048  # fixed in MuQModel ("melspec_2048")
MAX_CHUNK_SECONDS = 30.0
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Training-target modules: built from a fixed seed, never used for features.  A file
# may lack them; present tensors are still checked and loaded.
TRAINING_ONLY_PREFIXES = ("model.quantizer_", "model.rvq.")
MUQ_LARGE_STAT = {"melspec_2048_cnt": 14282760192, "melspec_2048_mean": 6.768444971712967,
                  "melspec_2048_std": 18.417922652295623}


# ----------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------
def read_config(cfg_file: Path):
    """config.json -> ``MuQConfig`` (unknown fields ignored, as the hub mixin does), checked."""
    with transformers_without_sklearn():
        from muq import MuQConfig

    try:
        raw = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise EncoderLoadError(f"{cfg_file}: not valid JSON ({e})") from e
    if not isinstance(raw, dict) or "w2v2_config" not in raw or "encoder_dim" not in raw:
        raise EncoderLoadError(f"{cfg_file}: not a MuQ config (needs encoder_dim and w2v2_config)")
    fields = {f.name for f in dataclasses.fields(MuQConfig)}
    cfg = MuQConfig(**{k: v for k, v in raw.items() if k in fields})
    problems = []
    if list(cfg.features) != ["melspec_2048"]:
        problems.append(f"features {cfg.features} (only ['melspec_2048'] exists in muq)")
    if cfg.use_encodec_target:
        problems.append("use_encodec_target=true (would download EnCodec weights)")
    if cfg.is_flash:
        problems.append("is_flash=true (flash conformer is not supported)")
    if int(100 // cfg.label_rate) not in (2, 4):
        problems.append(f"label_rate {cfg.label_rate} (muq supports 25 or 50)")
    stat = cfg.stat or {}
    if not all(k in stat for k in ("melspec_2048_mean", "melspec_2048_std")):
        problems.append("stat lacks melspec_2048_mean/melspec_2048_std")
    if not isinstance(cfg.w2v2_config, dict) or not cfg.w2v2_config:
        problems.append("w2v2_config is empty")
    if problems:
        raise EncoderLoadError(f"{cfg_file}: unsupported MuQ config: " + "; ".join(problems))
    w2v2 = dict(cfg.w2v2_config)
    w2v2.pop("id2label", None)
    w2v2.pop("label2id", None)
    # rvq_ckpt_path would make muq torch.load() another pickle: training targets only, skip it
    return dataclasses.replace(cfg, w2v2_config=w2v2, rvq_ckpt_path=None, resume_checkpoint=None)


def build_model(cfg, init: bool = True):
    """``muq.MuQ(cfg)`` without touching the caller's RNGs (muq seeds torch and ``random``); ``init=False`` when a
    strict load fills every weight next (no random draws)."""
    import torch

    with transformers_without_sklearn():
        from muq import MuQ

    state = random.getstate()
    try:
        with torch.random.fork_rng(devices=[]), weights_to_be_loaded(active=not init):
            model = MuQ(cfg)
    finally:
        random.setstate(state)
    return model


def arch_summary(cfg) -> dict:
    """The config fields that determine the frames (recorded in the encoder identity)."""
    w = cfg.w2v2_config
    keys = ("num_attention_heads", "intermediate_size", "hidden_act", "position_embeddings_type",
            "rotary_embedding_base", "conv_depthwise_kernel_size", "layer_norm_eps", "max_source_positions")
    return {
        "hop_length": cfg.hop_length, "n_mels": cfg.n_mels, "label_rate": cfg.label_rate,
        "conv_dim": cfg.conv_dim, "encoder_dim": cfg.encoder_dim, "encoder_depth": cfg.encoder_depth,
        "stat_mean": cfg.stat["melspec_2048_mean"], "stat_std": cfg.stat["melspec_2048_std"],
        "w2v2": {k: w.get(k) for k in keys},
    }


# ----------------------------------------------------------------------------------
# chunk plan
# ----------------------------------------------------------------------------------
def chunk_plan(n: int, chunk: int, token_hop: int, hop: int) -> list[tuple[int, int, int]]:
    """``(start, stop, drop)`` per chunk: encode ``wave[start:stop]``, drop its first ``drop`` frames.

    ``chunk`` is a multiple of ``token_hop`` (samples per output frame).  Full chunks
    tile the clip; a remainder that yields frames in a full pass (≥ ``hop`` samples) is
    covered by a last chunk that starts ``m`` whole tokens earlier (longest ≤ ``chunk``)
    and gives ``m`` frames too many at its start.
    """
    if n <= chunk:
        return [(0, n, 0)]
    k, r = divmod(n, chunk)
    plan = [(i * chunk, (i + 1) * chunk, 0) for i in range(k)]
    if r >= hop:  # shorter remainders add no mel frame in a full pass either
        m = (chunk - r) // token_hop
        plan.append((k * chunk - m * token_hop, n, m))
    return plan


def _no_logits_module():
    import torch

    class NoLogits(torch.nn.Module):
        """Stands in for MuQ's codebook projection: an empty logits tensor (the frames never use it)."""

        def forward(self, x):
            return x.new_zeros(*x.shape[:-1], 0)

    return NoLogits()


class MuQEncoder(FrameEncoder):
    """Frozen MuQ; ``last_hidden_state`` at 25 Hz."""

    name = "muq"
    sample_rate = SAMPLE_RATE
    reduced_precisions = ("bf16", "fp16")
    cpu_auto_bf16 = True  # measured to pay on CPUs with native bf16 (bench/precision_bench.py)

    def __init__(self, model, cfg, *, device: str, weights, dtype: str, chunk_seconds: float, absent_training_keys: int):
        self.model = model
        self.hop = int(cfg.hop_length)
        self.fold = int(100 // cfg.label_rate)  # mel frames per output frame (time strides 2x2 or 2x1)
        self.token_hop = self.hop * self.fold
        self.chunk_samples = int(chunk_seconds * SAMPLE_RATE) // self.token_hop * self.token_hop
        if self.chunk_samples < self.token_hop * 2:
            raise ValueError(f"muq: chunk_seconds={chunk_seconds} is too short")
        self.dtype = dtype
        self.dim = int(cfg.encoder_dim)
        self.frame_rate = SAMPLE_RATE / self.token_hop
        config: dict[str, Any] = {
            "arch": arch_summary(cfg),
            "output": "last_hidden_state",
            "input": "float32 waveform, 24 kHz",
            "dtype": dtype,
            "chunking": {
                "policy": "30s-tiles-aligned-tail",
                "chunk_samples": self.chunk_samples,
                "token_hop": self.token_hop,
                "tail": "last chunk shifted back by whole tokens to end at the clip end; repeated leading frames dropped",
            },
        }
        if absent_training_keys:
            config["absent_training_only_keys"] = absent_training_keys
        super().__init__(device=device, weights=weights, config=config)

    @classmethod
    def from_weights(
        cls,
        weights,
        device: str | None = "cpu",
        *,
        dtype: str = "float32",
        chunk_seconds: float = MAX_CHUNK_SECONDS,
        **options,
    ) -> "MuQEncoder":
        """Load from an HF MuQ directory (or a weights file inside one); never contacts a hub.

        ``dtype="float16"`` computes the conformer in fp16 on CUDA (as ``prepare_precision("fp16")``);
        ``chunk_seconds`` ≤ 30.
        """
        if options:
            raise TypeError(f"muq: unknown options {sorted(options)}")
        if weights is None:
            raise EncoderLoadError("muq: weights are required (an HF directory of OpenMuQ/MuQ-large-msd-iter)")
        device = device or "cpu"
        if dtype not in ("float32", "float16"):
            raise ValueError(f"muq: dtype must be 'float32' or 'float16', got {dtype!r}")
        if dtype == "float16" and not str(device).startswith("cuda"):
            raise ValueError("muq: dtype='float16' needs a CUDA device")
        if not 0 < float(chunk_seconds) <= MAX_CHUNK_SECONDS:
            raise ValueError(f"muq: chunk_seconds must be in (0, {MAX_CHUNK_SECONDS}]")
        path = Path(weights)
        if path.is_file() and path.name in WEIGHT_FILES:
            path = path.parent
        if not path.is_dir():
            raise EncoderLoadError(f"{path}: not a MuQ directory (config.json + model.safetensors)")
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise EncoderLoadError(f"{path}: no config.json")
        cfg = read_config(cfg_file)
        wfile = next((path / n for n in WEIGHT_FILES if (path / n).is_file()), None)
        if wfile is None:
            raise EncoderLoadError(f"{path}: none of {', '.join(WEIGHT_FILES)} found")
        sd = load_checkpoint(wfile)
        if not isinstance(sd, dict):
            raise EncoderLoadError(f"{wfile}: not a state dict")
        try:
            model = build_model(cfg, init=False)
        except Exception as e:  # noqa: BLE001 - a config muq cannot build is a load error
            raise EncoderLoadError(f"{cfg_file}: muq cannot build this config ({type(e).__name__}: {e})") from e
        own = model.state_dict()
        sd = align_weight_norm_keys(sd, own)
        absent = [k for k in own if k.startswith(TRAINING_ONLY_PREFIXES) and k not in sd]
        import torch

        for k in absent:  # unused by the forward; zeros, as the build drew no values for them
            sd[k] = torch.zeros_like(own[k])
        strict_load(model, sd, str(wfile))
        model.eval().requires_grad_(False).to(device)
        enc = cls(model, cfg, device=device, weights=wfile, dtype=dtype, chunk_seconds=chunk_seconds,
                  absent_training_keys=len(absent))
        if dtype == "float16":
            enc.prepare_precision("fp16")
            enc._prepared_precision = "fp16"
        return enc

    # -- geometry -------------------------------------------------------------------
    def expected_frames(self, n_samples: int) -> int:
        n = int(n_samples)
        if n < self.min_samples():
            return 0
        return math.ceil((n // self.hop) / self.fold)

    def min_samples(self) -> int:
        # torch reflect padding of n_fft // 2 needs a longer input; that also gives ≥ 1 mel frame
        return max(N_FFT // 2 + 1, self.hop)

    # -- the three steps ------------------------------------------------------------
    def _plan(self, n: int) -> list[tuple[int, int, int]]:
        return chunk_plan(n, self.chunk_samples, self.token_hop, self.hop)

    def split(self, wave: np.ndarray) -> list[np.ndarray]:
        if len(wave) < self.min_samples():
            raise ValueError(
                f"muq: clip of {len(wave)} samples is shorter than the {self.min_samples()} samples "
                f"({self.min_samples() / SAMPLE_RATE * 1000:.1f} ms at 24 kHz) MuQ's STFT needs"
            )
        return [wave[s:e] for s, e, _ in self._plan(len(wave))]

    def forward_batch(self, x: np.ndarray) -> np.ndarray:
        import torch

        x = np.asarray(x, dtype=np.float32)  # 16-bit input would switch MuQ to half precision
        if x.ndim != 2:
            raise ValueError(f"muq: forward_batch takes (B, samples), got shape {x.shape}")
        if x.shape[1] < self.min_samples():
            raise ValueError(f"muq: inputs of {x.shape[1]} samples are shorter than {self.min_samples()}")
        if x.shape[1] > self.chunk_samples:
            raise ValueError(f"muq: input of {x.shape[1]} samples is longer than one chunk; use split()")
        t = to_device(x, self.device)
        with torch.inference_mode():
            out = self.model(t, output_hidden_states=False).last_hidden_state
        return out.float().cpu().numpy()

    def prepare_precision(self, precision: str) -> None:
        """Cast the model to ``precision`` (bf16 or fp16) once; called by ``extract.precision``.

        The mel spectrogram and its normalisation (no modules: they run on the fp32 input) always stay fp32,
        and so do the first conv block's two convolutions that read the normalised mel (``conv1`` and the
        strided shortcut ``conv3``, with their BatchNorms); rotary frequencies stay fp32.  In bf16 the rest of
        the conv blocks and the conformer are cast: the fp32 conv blocks were two thirds of MuQ's bf16 time
        on an AVX-512-BF16 CPU, and casting them took MuQ from 1.7x to 2.75x fp32 (one thread, frame cosine
        >= 0.9998; bench/precision_profile.py).  In fp16 (narrow range: mel power of loud audio overflows it)
        both conv blocks stay fp32, the conformer alone is cast.  The codebook projection (training logits,
        never part of the frames) is replaced by an empty one.
        """
        from .precision import cast_except, cast_output, torch_dtype

        if precision not in self.reduced_precisions:
            raise ValueError(f"muq: no preparation for precision {precision!r}")
        dtype = torch_dtype(precision)
        mm = self.model.model
        mm.linear = _no_logits_module()
        b0 = mm.conv.conv[0]  # first Res2d block; strided, so its shortcut is conv3 + bn3 (never the raw input)
        if precision == "bf16" and b0.diff:
            cast_except(self.model, dtype, keep=(b0.conv1, b0.bn1, b0.conv3, b0.bn3))  # MelSTFT: no module
            cast_output(b0.bn1, dtype)  # -> relu -> conv2 (bf16)
            cast_output(b0.bn3, dtype)  # shortcut, added to bn2's bf16 output
        else:
            cast_except(self.model, dtype, keep=(mm.conv,))
            cast_output(mm.conv, dtype)
        for mod in self.model.modules():  # rotary cache may hold fp32 tables from an earlier call
            if hasattr(mod, "cached_rotary_positional_embedding"):
                mod.cached_sequence_length = None
                mod.cached_rotary_positional_embedding = None

    def join(self, outputs: list[np.ndarray], wave: np.ndarray) -> np.ndarray:
        plan = self._plan(len(wave))
        if len(outputs) != len(plan):
            raise ValueError(f"muq: join got {len(outputs)} chunk outputs for a plan of {len(plan)}")
        frames = super().join([o[d:] for o, (_, _, d) in zip(outputs, plan)], wave)
        want = self.expected_frames(len(wave))
        if frames.shape[0] != want:
            raise RuntimeError(f"muq: chunks gave {frames.shape[0]} frames, a full pass gives {want}")
        return frames
