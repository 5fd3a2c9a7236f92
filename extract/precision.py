"""Compute precision of the frozen encoders: choosing it, recording it, running a forward pass in it.

The compute precision is part of an encoder's cache identity (``config.compute_precision``), so frames
computed in another precision land in another cache folder.
"""
from __future__ import annotations

import numpy as np

from .base import FrameEncoder

PRECISIONS = ("auto", "fp32", "fp16")


def resolve_precision(requested: str, device: str) -> str:
    """``auto`` -> the precision used on ``device`` (fp16 on CUDA, else fp32); others pass through."""
    if requested != "auto":
        return requested
    return "fp16" if str(device).startswith("cuda") else "fp32"


def _encoder_identity(enc: FrameEncoder, precision: str) -> dict:
    ident = enc.identity()
    ident["config"] = {**ident.get("config", {}), "compute_precision": precision}
    return ident


def cache_key(enc: FrameEncoder, precision: str = "fp32", store_dtype: str = "float16") -> str:
    """The cache folder (``encoders/<key>``) that ``run_extract`` writes this encoder's frames to."""
    from mmmos.cache_store import identity_key

    return identity_key({**_encoder_identity(enc, precision), "dtype": store_dtype})


def _forward(enc: FrameEncoder, x: np.ndarray, precision: str) -> np.ndarray:
    if precision == "fp16" and str(enc.device).startswith("cuda"):
        import torch

        with torch.autocast(device_type="cuda", dtype=torch.float16):
            return np.asarray(enc.forward_batch(x), dtype=np.float32)
    return np.asarray(enc.forward_batch(x), dtype=np.float32)


