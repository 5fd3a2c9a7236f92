"""Compute precision of the frozen encoders: choosing it, preparing a model for it, recording it, running it.

Precisions: ``fp32``; ``fp16`` (CUDA autocast); ``bf16`` (the model's weights are cast to bfloat16 ONCE, by
the encoder's ``prepare_precision`` hook, with numerically sensitive parts left in fp32 - see
:func:`cast_except`); ``auto`` picks per device and per encoder (:func:`resolve_precision`).

The compute precision is part of an encoder's cache identity (``config.compute_precision``), so frames
computed in another precision land in another cache folder.  Frames are stored as before (fp16 by default).

Why cast once instead of ``torch.autocast`` on CPU: autocast re-casts every weight on every call, which ate
the whole bf16 gain for M2D in measurements on an AMX machine; a model cast once pays that cost once.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from mmmos.core.errors import UserError

from .base import FrameEncoder

PRECISIONS = ("auto", "fp32", "fp16", "bf16")

# ``auto`` on a CPU with native bf16 (AMX or AVX-512 BF16): bf16 only for the encoders where it was measured
# to pay (bench/precision_bench.py).  Measured on an Intel AMX machine: WavLM Base+ 1.7x, MuQ-large 1.9x,
# frame cosine to fp32 >= 0.9999; M2D gained nothing under autocast and its cast-once path has not been
# measured on such a CPU, so it stays fp32.  Encoders not listed (logmel: numpy) always compute in fp32.
AUTO_BF16: dict[str, bool] = {"wavlm": True, "muq": True, "m2d": False}
BF16_CAPABLE = frozenset(AUTO_BF16)  # encoders with a ``prepare_precision("bf16")`` path
_NATIVE_FLAGS = ("amx_bf16", "avx512_bf16")


class PrecisionError(UserError, ValueError):
    """An unknown precision name."""


@functools.lru_cache(maxsize=1)
def cpu_bf16_native(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when this CPU computes bf16 natively: /proc/cpuinfo lists ``amx_bf16`` or ``avx512_bf16``
    and oneDNN (PyTorch's CPU backend) agrees it has a bf16 path.  False where it cannot be told
    (no /proc/cpuinfo): without native support bf16 matmuls are emulated and several times slower."""
    try:
        flags = set()
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
    except OSError:
        return False
    if not flags.intersection(_NATIVE_FLAGS):
        return False
    import torch

    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else True


def resolve_precision(requested: str, device: str, encoder_name: str | None = None) -> str:
    """The precision an encoder computes in.

    ``auto``: fp16 on CUDA; on CPU bf16 for the encoders of :data:`AUTO_BF16` when :func:`cpu_bf16_native`,
    else fp32 (also when ``encoder_name`` is not given).  ``bf16`` for an encoder without a bf16 path (the
    numpy log-mel) -> fp32, which is what it computes.  Other names pass through.
    """
    if requested not in PRECISIONS:
        raise PrecisionError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    cuda = str(device).startswith("cuda")
    if requested == "auto":
        if cuda:
            return "fp16"
        wants = encoder_name is not None and AUTO_BF16.get(encoder_name, False)
        return "bf16" if wants and str(device) == "cpu" and cpu_bf16_native() else "fp32"
    if requested == "bf16" and encoder_name is not None and encoder_name not in BF16_CAPABLE:
        return "fp32"
    return requested


def _encoder_identity(enc: FrameEncoder, precision: str) -> dict:
    ident = enc.identity()
    ident["config"] = {**ident.get("config", {}), "compute_precision": precision}
    return ident


def cache_key(enc: FrameEncoder, precision: str = "fp32", store_dtype: str = "float16") -> str:
    """The cache folder (``encoders/<key>``) that ``run_extract`` writes this encoder's frames to."""
    from mmmos.cache_store import identity_key

    return identity_key({**_encoder_identity(enc, precision), "dtype": store_dtype})


def prepare_encoder(enc: FrameEncoder, precision: str) -> None:
    """Put ``enc``'s weights in ``precision`` once (idempotent).  Only bf16 changes weights; it calls the
    encoder's ``prepare_precision("bf16")``.  An encoder without that hook computes as it always does.
    Going back from bf16 to fp32 is refused: the rounded weights cannot be restored."""
    done = getattr(enc, "_prepared_precision", "fp32")
    if precision not in ("bf16", done) and done == "bf16":
        raise RuntimeError(f"{enc.name}: weights were cast to bf16; reload the encoder to compute in {precision}")
    if precision == "bf16" and done != "bf16":
        hook = getattr(enc, "prepare_precision", None)
        if hook is not None:
            hook("bf16")
        enc._prepared_precision = "bf16"


def _forward(enc: FrameEncoder, x: np.ndarray, precision: str) -> np.ndarray:
    """``enc.forward_batch(x)`` in ``precision`` as float32 (fp16: CUDA autocast; bf16: weights cast once)."""
    prepare_encoder(enc, precision)
    if precision == "fp16" and str(enc.device).startswith("cuda"):
        import torch

        with torch.autocast(device_type="cuda", dtype=torch.float16):
            return np.asarray(enc.forward_batch(x), dtype=np.float32)
    return np.asarray(enc.forward_batch(x), dtype=np.float32)


# ----------------------------------------------------------------------------------
# helpers for the encoders' prepare_precision hooks
# ----------------------------------------------------------------------------------
KEEP_FP32_BUFFERS = ("inv_freq",)  # rotary frequencies: bf16 rounding would shift positions by radians


def cast_except(model, dtype, keep=()) -> None:
    """Cast ``model``'s floating parameters and buffers to ``dtype`` in place, except those of the
    modules in ``keep`` and buffers named in :data:`KEEP_FP32_BUFFERS`.  Kept tensors are never
    round-tripped, so they stay bit-identical."""
    keep_ids = {id(t) for m in keep for t in (*m.parameters(), *m.buffers())}
    for mod in model.modules():
        for name, p in mod._parameters.items():
            if p is not None and p.is_floating_point() and id(p) not in keep_ids:
                p.data = p.data.to(dtype)
        for name, b in list(mod._buffers.items()):
            if b is not None and b.is_floating_point() and id(b) not in keep_ids and name not in KEEP_FP32_BUFFERS:
                mod._buffers[name] = b.to(dtype)


def _cast_tree(x, dtype):
    import torch

    if isinstance(x, torch.Tensor):
        return x.to(dtype) if x.is_floating_point() else x
    if isinstance(x, tuple):
        return tuple(_cast_tree(v, dtype) for v in x)
    if isinstance(x, list):
        return [_cast_tree(v, dtype) for v in x]
    return x


def cast_output(module, dtype) -> None:
    """Cast ``module``'s floating outputs (tensor, or tuple/list of them) to ``dtype``: the boundary
    between an fp32 part and the bf16 rest of a model."""
    module.register_forward_hook(lambda _m, _args, out: _cast_tree(out, dtype))


__all__ = ["AUTO_BF16", "BF16_CAPABLE", "PRECISIONS", "PrecisionError", "cache_key", "cast_except", "cast_output",
           "cpu_bf16_native", "prepare_encoder", "resolve_precision"]
