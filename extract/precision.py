"""Compute precision of the frozen encoders: choosing it, preparing a model for it, recording it, running it.

Precisions: ``fp32``; ``bf16`` and ``fp16`` (reduced: the encoder's transformer is cast to that dtype ONCE
by its ``prepare_precision`` hook while its front end - spectrogram, log, normalisation, the conv layers that
read them - stays fp32, see :func:`cast_except`); ``auto`` picks per device and per encoder.

:func:`resolve_precision` is the one place a precision is decided, and it returns what the encoder will
*compute* in: ``fp16`` asked on a CPU is ``fp32`` (no fp16 path is used there), a reduced precision asked
for an encoder without one (the numpy log-mel) is ``fp32``.  That value is part of the encoder's cache
identity (``config.compute_precision``), so frames computed in another precision land in another cache
folder.  Frames are stored as before (fp16 by default).

Why no autocast: autocast covers the whole forward, so MuQ's mel spectrogram ran in fp16 on CUDA and
band-limited audio (16 kHz speech resampled to 24 kHz: empty bands above 8 kHz) under- and overflowed to
non-finite frames.  Casting once keeps the front end in fp32 by construction and also saves autocast's
per-call re-cast of every weight (which ate the whole bf16 gain of M2D on an AMX CPU).

The CPU bf16 policy follows the CPU (:func:`cpu_bf16_native`) unless ``MMMOS_CPU_BF16`` forces it:
``1``/``on`` behaves as on a CPU with native bf16, ``0``/``off`` as on one without (tests run both).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from mmmos.core.errors import UserError

from .base import FrameEncoder, exact_fp32

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
REDUCED = ("bf16", "fp16")
CPU_BF16_ENV = "MMMOS_CPU_BF16"
_NATIVE_FLAGS = ("amx_bf16", "avx512_bf16")
_ON, _OFF = ("1", "on", "true", "yes"), ("0", "off", "false", "no")


class PrecisionError(UserError, ValueError):
    """An unknown precision name, or a bad MMMOS_CPU_BF16 value."""


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


def cpu_bf16_policy() -> bool:
    """Whether ``auto`` treats this CPU as computing bf16 natively: ``MMMOS_CPU_BF16`` when set, else
    :func:`cpu_bf16_native`."""
    raw = os.environ.get(CPU_BF16_ENV, "").strip().lower()
    if raw in _ON:
        return True
    if raw in _OFF:
        return False
    if raw:
        raise PrecisionError(f"{CPU_BF16_ENV}={os.environ[CPU_BF16_ENV]!r}: expected 1/on or 0/off (or unset)")
    return cpu_bf16_native()


def cuda_bf16_supported(device: str) -> bool:
    import torch

    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # older torch: no including_emulation
        return bool(torch.cuda.is_bf16_supported())
    except Exception:  # noqa: BLE001 - no usable CUDA: nothing is supported
        return False


def _traits(encoder) -> tuple[tuple[str, ...], bool, str | None]:
    """``(reduced precisions, cpu auto bf16, cuda auto)`` of an encoder name, class or instance
    (see :class:`~mmmos.extract.base.FrameEncoder`); an encoder not given has none."""
    if encoder is None:
        return (), False, None
    if isinstance(encoder, str):
        from . import ENCODERS, encoder_class

        if encoder not in ENCODERS:
            return (), False, None
        encoder = encoder_class(encoder)
    return (tuple(getattr(encoder, "reduced_precisions", ())), bool(getattr(encoder, "cpu_auto_bf16", False)),
            getattr(encoder, "cuda_auto", None))


def resolve_precision(requested: str, device: str, encoder=None) -> str:
    """The precision ``encoder`` (a registered name, an encoder class or instance) computes in on ``device``.

    * ``fp32`` everywhere; also every request for an encoder without a reduced path, and on ``mps``.
    * CUDA: ``auto`` -> the encoder's ``cuda_auto``, else ``bf16`` where the GPU computes it natively, else
      ``fp16``; an explicit ``bf16`` the GPU lacks -> ``fp16``.
    * CPU: ``auto`` -> ``bf16`` for encoders with ``cpu_auto_bf16`` when :func:`cpu_bf16_policy`, else
      ``fp32``; ``bf16`` -> ``bf16`` (emulated where not native: slow, but what was asked); ``fp16`` ->
      ``fp32`` (recorded as computed).
    """
    if requested not in PRECISIONS:
        raise PrecisionError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    reduced, cpu_auto, cuda_auto = _traits(encoder)
    kind = str(device).split(":", 1)[0]
    if requested == "fp32" or not reduced or kind not in ("cuda", "cpu"):
        return "fp32"
    if kind == "cuda":
        bf16_ok = cuda_bf16_supported(device)
        want = requested if requested != "auto" else (cuda_auto or ("bf16" if bf16_ok else "fp16"))
        if want == "bf16" and not bf16_ok:
            want = "fp16"
        return want if want in reduced else "fp32"
    if requested == "auto":
        return "bf16" if cpu_auto and "bf16" in reduced and cpu_bf16_policy() else "fp32"
    return "bf16" if requested == "bf16" and "bf16" in reduced else "fp32"


def torch_dtype(precision: str):
    """The torch dtype of a reduced precision name (``bf16``/``fp16``)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _encoder_identity(enc: FrameEncoder, precision: str) -> dict:
    ident = enc.identity()
    ident["config"] = {**ident.get("config", {}), "compute_precision": precision}
    return ident


def cache_key(enc: FrameEncoder, precision: str = "fp32", store_dtype: str = "float16") -> str:
    """The cache folder (``encoders/<key>``) that ``run_extract`` writes this encoder's frames to."""
    from mmmos.cache_store import identity_key

    return identity_key({**_encoder_identity(enc, precision), "dtype": store_dtype})


def prepare_encoder(enc: FrameEncoder, precision: str) -> None:
    """Put ``enc``'s weights in ``precision`` once (idempotent): a reduced precision calls the encoder's
    ``prepare_precision(precision)``; an encoder without reduced precisions computes as it always does.
    Going from a reduced precision to another precision is refused: the rounded weights cannot be restored."""
    done = getattr(enc, "_prepared_precision", "fp32")
    if precision == done:
        return
    if done in REDUCED:
        raise RuntimeError(f"{enc.name}: weights were cast to {done}; reload the encoder to compute in {precision}")
    if precision in REDUCED and precision in getattr(enc, "reduced_precisions", ()):
        enc.prepare_precision(precision)
        enc._prepared_precision = precision


def _forward(enc: FrameEncoder, x: np.ndarray, precision: str) -> np.ndarray:
    """``enc.forward_batch(x)`` in ``precision`` (prepared once), as float32; on a GPU without TF32."""
    prepare_encoder(enc, precision)
    with exact_fp32(enc.device):  # the parts kept fp32 compute in fp32, not TF32
        return np.asarray(enc.forward_batch(x), dtype=np.float32)


# ----------------------------------------------------------------------------------
# helpers for the encoders' prepare_precision hooks
# ----------------------------------------------------------------------------------
KEEP_FP32_BUFFERS = ("inv_freq",)  # rotary frequencies: rounding would shift positions by radians


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


def cast_input(module, dtype) -> None:
    """Cast ``module``'s floating positional inputs to ``dtype``: the entry of a part kept in fp32 inside the
    reduced-precision rest of a model."""
    module.register_forward_pre_hook(lambda _m, args: tuple(_cast_tree(a, dtype) for a in args))


def cast_output(module, dtype) -> None:
    """Cast ``module``'s floating outputs (tensor, or tuple/list of them) to ``dtype``: the boundary
    between an fp32 part and the reduced-precision rest of a model."""
    module.register_forward_hook(lambda _m, _args, out: _cast_tree(out, dtype))


__all__ = ["CPU_BF16_ENV", "PRECISIONS", "PrecisionError", "REDUCED", "cache_key", "cast_except",
           "cast_input", "cast_output", "cpu_bf16_native", "cpu_bf16_policy", "prepare_encoder", "resolve_precision",
           "torch_dtype"]
