"""M2D (Masked Modeling Duo) audio encoder, written from the published facts.

Our own ViT with the official checkpoint key names, and our own log-mel front end
(the official ``portable_m2d.py`` is under an evaluation-only licence, so nothing
is copied from it).  Pipeline for one clip at 16 kHz:

1. log-mel: n_fft 400, window 400 (periodic Hann), hop 160, centre/reflect padding,
   power 2, 80 Slaney (area-normalised) mels over 50–8000 Hz, ``ln(x + 1.1920929e-7)``.
   The STFT is a float32 ``conv1d`` with cos/sin kernels, as the official front end
   (nnAudio) computes it, so our numbers round the way the released models saw them.
   ``T = 1 + n_samples // 160`` mel frames (100 Hz).
2. ``(x - mean) / std`` with the checkpoint's ``norm_stats`` (default -7.1, 4.2).
3. Chunking (part of the cache identity, see ``CHUNKING``): ``ceil(T / U)`` chunks of
   ``U`` = input frames (608 or 1001) on the *unpadded* mel; each is encoded alone.
   The tail chunk is zero-padded after normalisation to a multiple of 16 frames.
   Frames past the last whole 16-frame column of a chunk are never seen (the patch
   conv drops them: with U = 1001 the last 9 frames of each full chunk), so
   ``split`` cuts them off already; this gives the same outputs and makes every
   chunk a multiple of 16 frames long.
4. ViT: 16x16 patches in frequency-major order, CLS token (with the position-0
   embedding) prepended then dropped, blocks, final ``norm`` (LayerNorm eps 1e-6).
   Output per 16-frame column: the 5 frequency patches' vectors concatenated
   -> ``dim = 5 * width`` (3840 for ViT-Base) at 100/16 = 6.25 steps per second.

Steps for T mel frames: ``G * (T // U) + min(G, ceil((T % U) / 16))`` with
``G = U // 16`` (80x608: 38, 80x1001: 62).  Because full 1001-frame chunks only
use 992 frames, step times drift by 90 ms per chunk from the nominal 6.25 Hz grid.

Length (~530 lines): one encoder written from the published facts - front end, ViT, strict loader -
sharing the constants above; split apart, each piece would have to re-state them.
"""
from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import EncoderLoadError, FrameEncoder, load_checkpoint, exact_fp32, strict_load, to_device, weights_to_be_loaded

SAMPLE_RATE = 16000
N_FFT = 400
WIN_LENGTH = 400
HOP = 160
N_MELS = 80
F_MIN = 50.0
F_MAX = 8000.0
LOG_EPS = float(np.finfo(np.float32).eps)  # 1.1920929e-07, torch.finfo().eps in the official code
DEFAULT_NORM_STATS = (-7.1, 4.2)
LAYER_NORM_EPS = 1e-6
HEAD_DIM = 64  # heads = width / 64 (ViT-Base: 768 -> 12)

FRONT_END = (
    f"logmel sr={SAMPLE_RATE} n_fft={N_FFT} win={WIN_LENGTH} periodic-hann hop={HOP} center-reflect "
    f"power=2 mels={N_MELS} slaney-area {F_MIN:g}-{F_MAX:g}Hz ln(x+{LOG_EPS:.8g}) stft=conv1d-float32"
)
CHUNKING = (
    "ceil(T/input_frames) chunks on the unpadded log-mel, each encoded alone; tail zero-padded "
    "after normalisation to a multiple of the patch width; frames past the last whole patch column dropped"
)

# Keys in genuine files that are not part of the frame encoder (after prefix stripping).
# Matched exactly / as key prefixes, never as substrings ("blocks." is inside "target_blocks.").
IGNORED_EXACT = frozenset({"mask_token"})
IGNORED_PREFIXES = (
    "target_blocks.",  # M2D pre-training: EMA target encoder
    "target_norm.",
    "decoder_",  # M2D pre-training: predictor (decoder_embed/pos_embed/blocks/norm/pred)
    "audio_proj.",  # M2D-CLAP: audio/text projection heads for the contrastive space
    "text_proj.",
)
NORM_STATS_KEY = "norm_stats"
ANCHOR_KEY = "patch_embed.proj.weight"

_RELEASE_RE = re.compile(r"(?:^|-)(\d+)x(\d+)p(\d+)x(\d+)(?:p(\d+)k)?(?=-|$)")


# ---------------------------------------------------------------------------------------
# front end
# ---------------------------------------------------------------------------------------
def hz_to_slaney_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    log_step = math.log(6.4) / 27.0
    return np.where(f < 1000.0, f * 3.0 / 200.0, 15.0 + np.log(np.maximum(f, 1e-12) / 1000.0) / log_step)


def slaney_mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_slaney_mel`."""
    m = np.asarray(m, dtype=np.float64)
    log_step = math.log(6.4) / 27.0
    return np.where(m < 15.0, m * 200.0 / 3.0, 1000.0 * np.exp((m - 15.0) * log_step))


def slaney_mel_filterbank(
    sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = F_MIN, fmax: float = F_MAX
) -> np.ndarray:
    """Triangular mel filters with area normalisation, ``(n_mels, n_fft//2 + 1)`` float64.

    Band edges are equally spaced on the Slaney mel scale; each triangle rises from
    its lower edge to 1 at its centre and falls to 0 at its upper edge, then is
    scaled by ``2 / (upper - lower)`` (Hz) so every band has the same area.
    """
    bins = np.arange(n_fft // 2 + 1) * (sample_rate / n_fft)
    edges = slaney_mel_to_hz(np.linspace(hz_to_slaney_mel(fmin), hz_to_slaney_mel(fmax), n_mels + 2))
    out = np.empty((n_mels, bins.size))
    for i in range(n_mels):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        rise = (bins - lo) / (mid - lo)
        fall = (hi - bins) / (hi - mid)
        out[i] = np.clip(np.minimum(rise, fall), 0.0, None) * (2.0 / (hi - lo))
    return out


def periodic_hann(n: int) -> np.ndarray:
    """Hann window of period ``n`` (the DFT-even form, as ``scipy.signal.get_window('hann', n)``)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def mel_frames(n_samples: int) -> int:
    """Mel frames the centred STFT gives for ``n_samples`` samples."""
    return 1 + n_samples // HOP


class LogMelFrontEnd:
    """Wave (16 kHz, 1-D) -> natural-log mel power ``(80, 1 + n // 160)`` float32, computed in fp32 on
    ``device`` (beside a GPU the spectrogram runs there, without TF32; the result comes back as numpy)."""

    block_frames = 2048  # frames per conv1d call, bounds memory for long clips

    def __init__(self, device: str = "cpu") -> None:
        n_bins = N_FFT // 2 + 1
        window = np.zeros(N_FFT)
        offset = (N_FFT - WIN_LENGTH) // 2  # centre a shorter window inside the FFT frame
        window[offset : offset + WIN_LENGTH] = periodic_hann(WIN_LENGTH)
        # (k * n) mod N keeps the phase argument small, so float64 cos/sin stay exact-ish.
        phase = 2.0 * np.pi * ((np.arange(n_bins)[:, None] * np.arange(N_FFT)[None, :]) % N_FFT) / N_FFT
        kernels = np.concatenate([window * np.cos(phase), window * np.sin(phase)])
        self.n_bins = n_bins
        self.device = str(device)
        self.kernels = torch.from_numpy(kernels.astype(np.float32)).unsqueeze(1).to(device)  # (2*bins, 1, N_FFT)
        self.mel_fb = torch.from_numpy(slaney_mel_filterbank().astype(np.float32)).to(device)  # (80, bins)

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"m2d front end takes one mono clip (1-D), got shape {wave.shape}")
        pad = N_FFT // 2
        if wave.size <= pad:
            raise ValueError(f"m2d: clip of {wave.size} samples is too short; reflect padding needs > {pad} samples")
        with torch.inference_mode(), exact_fp32(self.device):
            x = to_device(wave, self.device)[None, None]
            x = F.pad(x, (pad, pad), mode="reflect")
            n_frames = mel_frames(wave.size)
            out = []
            for f0 in range(0, n_frames, self.block_frames):
                f1 = min(n_frames, f0 + self.block_frames)
                seg = x[..., f0 * HOP : (f1 - 1) * HOP + N_FFT]
                spec = F.conv1d(seg, self.kernels, stride=HOP)[0]  # (2*bins, f1 - f0)
                power = spec[: self.n_bins].square() + spec[self.n_bins :].square()
                out.append(torch.log(self.mel_fb @ power + LOG_EPS))
            return torch.cat(out, dim=1).cpu().numpy()


# ---------------------------------------------------------------------------------------
# chunking
# ---------------------------------------------------------------------------------------
def chunk_plan(n_frames: int, input_frames: int, patch_frames: int) -> list[tuple[int, int, int]]:
    """``(start, stop, length)`` per chunk: mel frames ``[start, stop)`` zero-padded to ``length``.

    ``length`` is a multiple of ``patch_frames`` and at most the whole columns of one
    input; each chunk yields ``length // patch_frames`` output steps.
    """
    usable = (input_frames // patch_frames) * patch_frames
    plan = []
    for i in range(-(-n_frames // input_frames)):
        start = i * input_frames
        real = min(input_frames, n_frames - start)
        length = min(usable, -(-real // patch_frames) * patch_frames)
        plan.append((start, start + min(real, length), length))
    return plan


def expected_steps(n_frames: int, input_frames: int, patch_frames: int) -> int:
    """Output steps for ``n_frames`` mel frames: ``G*(T//U) + min(G, ceil((T%U)/p))``, ``G = U//p``."""
    g = input_frames // patch_frames
    return g * (n_frames // input_frames) + min(g, -(-(n_frames % input_frames) // patch_frames))


# ---------------------------------------------------------------------------------------
# the ViT (parameter names follow the official checkpoints)
# ---------------------------------------------------------------------------------------
class _Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        # weight layout: rows = [q | k | v], each split into heads of d // heads
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class _Mlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.attn = _Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.mlp = _Mlp(width, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, width: int, patch: tuple[int, int]) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, width, kernel_size=patch, stride=patch)


class M2DViT(nn.Module):
    """ViT encoder of M2D: ``(B, 1, n_mels, T)`` normalised log-mel -> ``(B, T // pw, n_freq * width)``."""

    def __init__(self, width: int, depth: int, heads: int, mlp_hidden: int, grid: tuple[int, int], patch: tuple[int, int]):
        super().__init__()
        self.grid = tuple(grid)  # (frequency patches, time patches) of one full input
        self.patch = tuple(patch)
        self.width = width
        self.patch_embed = _PatchEmbed(width, self.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        # slot 0 belongs to the CLS token; the rest are frequency-major (f * G + t)
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid[0] * grid[1], width))
        self.blocks = nn.ModuleList(_Block(width, heads, mlp_hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_embed.proj(x)  # (B, D, F, cols)
        b, d, nf, cols = p.shape
        if nf != self.grid[0] or cols > self.grid[1] or cols < 1:
            raise ValueError(f"m2d: input gives a {nf}x{cols} patch grid; the model takes {self.grid[0]}x1..{self.grid[1]}")
        tokens = p.flatten(2).transpose(1, 2)  # frequency-major: token f * cols + t
        pos = self.pos_embed[:, 1:].reshape(1, nf, self.grid[1], d)[:, :, :cols].reshape(1, nf * cols, d)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
        h = torch.cat([cls, tokens + pos], dim=1)
        if len(self.blocks):  # the blocks may be bf16/fp16 (see M2DEncoder.prepare_precision); no-op in fp32
            h = h.to(self.blocks[0].norm1.weight.dtype)
        for blk in self.blocks:
            h = blk(h)
        h = self.norm(h.float())[:, 1:]  # drop CLS
        return h.reshape(b, nf, cols, d).permute(0, 2, 1, 3).reshape(b, cols, nf * d)


# ---------------------------------------------------------------------------------------
# checkpoint handling
# ---------------------------------------------------------------------------------------
def parse_release_name(name: str) -> dict[str, int] | None:
    """Sizes encoded in a release folder name, e.g. ``m2d_clap_vit_base-80x1001p16x16-240128_AS-FT_enconly``.

    Returns ``{"n_mels", "input_frames", "patch_f", "patch_t", "sr_khz"}`` (``sr_khz`` 16
    unless a ``p32k``-style tail says otherwise), or None when the name holds no sizes.
    """
    m = _RELEASE_RE.search(name)
    if not m:
        return None
    n_mels, frames, pf, pt, sr = m.groups()
    return {"n_mels": int(n_mels), "input_frames": int(frames), "patch_f": int(pf), "patch_t": int(pt),
            "sr_khz": int(sr) if sr else 16}


def resolve_weights(weights: str | os.PathLike) -> Path:
    """The checkpoint file: ``weights`` itself, or the single ``.pth``/``.pt``/``.safetensors`` in a folder."""
    p = Path(weights)
    if p.is_dir():
        found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix in (".pth", ".pt", ".safetensors"))
        if not found:
            raise EncoderLoadError(f"{p}: no .pth/.pt/.safetensors checkpoint in this M2D folder")
        if len(found) > 1:
            raise EncoderLoadError(f"{p}: several checkpoints ({', '.join(q.name for q in found)}); pass the file itself")
        return found[0]
    if not p.is_file():
        raise EncoderLoadError(f"{p}: weights file not found")
    return p


def _state_dict_of(ckpt: Any, source: str) -> tuple[dict[str, torch.Tensor], Any]:
    """The weights dict of a checkpoint (``{'model': sd, ...}`` or flat) and a top-level ``norm_stats``."""
    if not isinstance(ckpt, dict):
        raise EncoderLoadError(f"{source}: not a state dict (got {type(ckpt).__name__})")
    top_stats = None
    for wrapper in ("model", "state_dict"):
        if isinstance(ckpt.get(wrapper), dict):
            top_stats = ckpt.get(NORM_STATS_KEY)
            ckpt = ckpt[wrapper]
            break
    bad = sorted(k for k, v in ckpt.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise EncoderLoadError(f"{source}: weights hold non-tensor entries [{', '.join(map(str, bad[:6]))}]")
    return ckpt, top_stats


def _encoder_keys(sd: dict[str, torch.Tensor], source: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Strip the wrapper prefix (``module.``, ``encoder.``, ``module.ar.runtime.backbone.`` ...) and
    drop the documented non-encoder keys.  Returns (encoder dict incl. ``norm_stats``, ignored keys)."""
    prefixes = {k[: -len(ANCHOR_KEY)] for k in sd if k.endswith(ANCHOR_KEY)}
    prefixes = {p for p in prefixes if p == "" or p.endswith(".")}  # whole-name match only
    if not prefixes:
        sample = ", ".join(sorted(sd)[:4])
        raise EncoderLoadError(
            f"{source}: not an M2D/ViT checkpoint: no '{ANCHOR_KEY}' key (found e.g. [{sample}])"
        )
    if len(prefixes) > 1:
        raise EncoderLoadError(f"{source}: several encoders in one file (prefixes {sorted(prefixes)}); cannot choose")
    prefix = prefixes.pop()
    out: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for key, value in sd.items():
        if not key.startswith(prefix):
            ignored.append(key)  # outside the encoder's sub-tree (e.g. a fine-tuning head)
            continue
        name = key[len(prefix):]
        if name in IGNORED_EXACT or name.startswith(IGNORED_PREFIXES):
            ignored.append(key)
            continue
        out[name] = value
    return out, ignored


def _infer_architecture(sd: dict[str, torch.Tensor], source: str) -> dict[str, Any]:
    """Width, depth, heads, MLP width and patch size from tensor shapes."""
    w = sd[ANCHOR_KEY]
    if w.ndim != 4 or w.shape[1] != 1:
        raise EncoderLoadError(f"{source}: {ANCHOR_KEY} has shape {tuple(w.shape)}; expected (width, 1, pf, pt)")
    width, _, pf, pt = (int(s) for s in w.shape)
    if width % HEAD_DIM:
        raise EncoderLoadError(f"{source}: width {width} is not a multiple of the head size {HEAD_DIM}")
    block_ids = {int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
    if not block_ids:
        raise EncoderLoadError(f"{source}: no 'blocks.N.*' keys; not an M2D encoder")
    depth = max(block_ids) + 1  # a gap shows up as missing keys in strict_load
    fc1 = sd.get("blocks.0.mlp.fc1.weight")
    if fc1 is None:
        raise EncoderLoadError(f"{source}: missing keys [blocks.0.mlp.fc1.weight]")
    return {"width": width, "depth": depth, "heads": width // HEAD_DIM, "mlp_hidden": int(fc1.shape[0]),
            "patch": (pf, pt)}


def _norm_stats(value: Any, source: str) -> tuple[float, float]:
    if value is None:
        return DEFAULT_NORM_STATS
    arr = np.asarray(value.detach().cpu().double() if isinstance(value, torch.Tensor) else value, dtype=np.float64)
    arr = arr.reshape(-1)
    if arr.size != 2 or not np.all(np.isfinite(arr)) or arr[1] <= 0:
        raise EncoderLoadError(f"{source}: norm_stats {arr.tolist()} is not a (mean, std>0) pair")
    return float(arr[0]), float(arr[1])


# ---------------------------------------------------------------------------------------
# the encoder
# ---------------------------------------------------------------------------------------
class M2DEncoder(FrameEncoder):
    """Frozen M2D encoder: 16 kHz mono -> ``(steps, 5 * width)`` at 6.25 steps/s."""

    name = "m2d"
    sample_rate = SAMPLE_RATE
    frame_rate = 100.0 / 16  # mel frames per second / patch width
    dim = 3840
    reduced_precisions = ("bf16", "fp16")
    cpu_auto_bf16 = True  # 3.2x fp32 on an AVX-512-BF16 CPU at one thread, cosine >= 0.9999 (bench/precision_profile.py)

    _OPTIONS = ("input_frames",)

    def __init__(self, model: M2DViT, *, input_frames: int, norm_stats: tuple[float, float], device: str = "cpu",
                 weights: str | os.PathLike | None = None, source_name: str | None = None):
        pf, pt = model.patch
        config = {
            "n_mels": N_MELS,
            "input_frames": int(input_frames),
            "patch_size": [pf, pt],
            "width": model.width,
            "depth": len(model.blocks),
            "heads": model.blocks[0].attn.heads if len(model.blocks) else 0,
            "mlp_hidden": model.blocks[0].mlp.fc1.out_features if len(model.blocks) else 0,
            "norm_stats": [float(norm_stats[0]), float(norm_stats[1])],
            "front_end": FRONT_END,
            "chunking": CHUNKING,
            "output": "last layer after final norm, CLS dropped, frequency patches concatenated per time column",
        }
        super().__init__(device=device, weights=weights, config=config)
        self.release = source_name  # informative only: renaming the folder is not a new encoder
        self.ignored_keys: list[str] = []  # checkpoint keys left out as non-encoder (set by from_weights)
        self.input_frames = int(input_frames)
        self.patch_frames = pt
        self.norm_stats = (float(norm_stats[0]), float(norm_stats[1]))
        self.frame_rate = 100.0 / pt
        self.dim = (N_MELS // pf) * model.width
        self.front_end = LogMelFrontEnd(device)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model.to(device)

    # -- loading ------------------------------------------------------------------------
    @classmethod
    def from_weights(cls, weights: str | os.PathLike | None, device: str | None = "cpu", **options) -> "M2DEncoder":
        """Load an official M2D checkpoint (file, or its release folder) strictly.

        Options: ``input_frames`` (overrides the folder name's input size, needed when
        the folder name does not encode it).
        """
        unknown = sorted(set(options) - set(cls._OPTIONS))
        if unknown:
            raise TypeError(f"m2d: unknown options {unknown}; known: {list(cls._OPTIONS)}")
        if weights is None:
            raise EncoderLoadError("m2d: needs the checkpoint .pth (or its release folder); there is no built-in model")
        path = resolve_weights(weights)
        source = str(path)
        release = path.parent.name
        sizes = parse_release_name(release)
        if sizes is not None:
            if sizes["sr_khz"] != 16:
                raise EncoderLoadError(f"{source}: folder '{release}' is a {sizes['sr_khz']} kHz model; only 16 kHz M2D is supported")
            if sizes["n_mels"] != N_MELS:
                raise EncoderLoadError(f"{source}: folder '{release}' says {sizes['n_mels']} mel bins; the front end has {N_MELS}")
        input_frames = options.get("input_frames") or (sizes or {}).get("input_frames")
        if not input_frames:
            raise EncoderLoadError(
                f"{source}: folder name '{release}' does not encode the input size (e.g. '-80x1001p16x16-'); "
                "keep the release folder name or pass input_frames="
            )
        input_frames = int(input_frames)

        ckpt = load_checkpoint(path, allow=(argparse.Namespace,))
        sd, top_stats = _state_dict_of(ckpt, source)
        weights_sd, ignored = _encoder_keys(sd, source)
        stats = _norm_stats(weights_sd.pop(NORM_STATS_KEY, top_stats), source)
        arch = _infer_architecture(weights_sd, source)
        pf, pt = arch["patch"]
        if sizes is not None and (sizes["patch_f"], sizes["patch_t"]) != (pf, pt):
            raise EncoderLoadError(
                f"{source}: folder says patch {sizes['patch_f']}x{sizes['patch_t']} but the weights have {pf}x{pt}"
            )
        if N_MELS % pf or input_frames < pt:
            raise EncoderLoadError(f"{source}: patch {pf}x{pt} does not tile an input of {N_MELS}x{input_frames}")
        grid = (N_MELS // pf, input_frames // pt)
        pos = weights_sd.get("pos_embed")
        if pos is not None and tuple(pos.shape) != (1, 1 + grid[0] * grid[1], arch["width"]):
            raise EncoderLoadError(
                f"{source}: pos_embed has shape {tuple(pos.shape)} but input {N_MELS}x{input_frames} with patch "
                f"{pf}x{pt} needs (1, {1 + grid[0] * grid[1]}, {arch['width']}) (CLS slot + {grid[0]}x{grid[1]}); "
                "the folder name or input_frames does not match these weights"
            )
        with weights_to_be_loaded():
            model = M2DViT(arch["width"], arch["depth"], arch["heads"], arch["mlp_hidden"], grid, (pf, pt))
        strict_load(model, {k: v.float() for k, v in weights_sd.items()}, source)
        enc = cls(model, input_frames=input_frames, norm_stats=stats, device=device or "cpu", weights=path,
                  source_name=release if sizes is not None else None)
        enc.ignored_keys = ignored
        return enc

    def prepare_precision(self, precision: str) -> None:
        """Cast the transformer blocks to ``precision`` (bf16 or fp16) once; called by ``extract.precision``.
        The log-mel front end (numpy), patch embedding, CLS/position embeddings and the final LayerNorm stay
        fp32: the tokens enter the blocks rounded once, and the frames leave through an fp32 norm."""
        from .precision import torch_dtype

        if precision not in self.reduced_precisions:
            raise ValueError(f"m2d: no preparation for precision {precision!r}")
        self.model.blocks.to(torch_dtype(precision))

    # -- the three steps ------------------------------------------------------------------
    def log_mel(self, wave: np.ndarray) -> np.ndarray:
        """Normalised log-mel ``(80, 1 + n // 160)`` float32 of one clip."""
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"m2d: takes one mono clip (1-D), got shape {wave.shape}")
        if wave.size < self.min_samples():
            raise ValueError(f"m2d: clip of {wave.size} samples is shorter than the minimum {self.min_samples()}")
        if not np.all(np.isfinite(wave)):
            raise ValueError("m2d: clip contains NaN or infinite samples")
        mean, std = self.norm_stats
        return ((self.front_end(wave) - np.float32(mean)) / np.float32(std)).astype(np.float32)

    def split(self, wave: np.ndarray) -> list[np.ndarray]:
        """Normalised log-mel chunks ``(80, L)``, ``L`` a multiple of 16, per the chunking rule."""
        lm = self.log_mel(wave)
        chunks = []
        for start, stop, length in chunk_plan(lm.shape[1], self.input_frames, self.patch_frames):
            c = np.zeros((lm.shape[0], length), np.float32)  # zeros = padding after normalisation
            c[:, : stop - start] = lm[:, start:stop]
            chunks.append(c)
        return chunks

    def forward_batch(self, x: np.ndarray) -> np.ndarray:
        """``(B, 80, L)`` equal-length chunks -> ``(B, L // 16, dim)`` float32."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 3 or x.shape[1] != N_MELS or x.shape[2] % self.patch_frames:
            raise ValueError(f"m2d: forward_batch takes (B, {N_MELS}, L) with L a multiple of {self.patch_frames}, got {x.shape}")
        with torch.inference_mode():
            t = to_device(x, self.device).unsqueeze(1)
            return self.model(t).float().cpu().numpy()

    def expected_frames(self, n_samples: int) -> int:
        if n_samples < self.min_samples():
            return 0
        return expected_steps(mel_frames(n_samples), self.input_frames, self.patch_frames)

    def min_samples(self) -> int:
        return N_FFT // 2 + 1  # reflect padding needs more samples than the pad; gives 2 mel frames -> 1 step


__all__ = [
    "M2DEncoder", "M2DViT", "LogMelFrontEnd", "chunk_plan", "expected_steps", "mel_frames",
    "parse_release_name", "resolve_weights", "slaney_mel_filterbank",
]
