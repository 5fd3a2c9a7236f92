"""A frame head's outputs for every clip of a Track 1 bank (:class:`mmmos.cache_store.windows.Track1Bank`):
each clip's eval windows are scored and their logits averaged, so a clip has one output whatever its length.

Averaging logits (not scores) keeps CORAL's averaged threshold logits monotone.
"""
from __future__ import annotations

import numpy as np


def predict_logits(head, bank, batch_size: int, torch, device: str = "cpu") -> np.ndarray:
    """``(N, 2, K)`` float32 logits per clip of ``bank`` (eval mode; windows averaged)."""
    head.eval()
    windows = [w for i in range(len(bank)) for w in bank.eval_windows(i)]
    out = []
    with torch.inference_mode():
        for s in range(0, len(windows), batch_size):
            chunk = windows[s : s + batch_size]
            out.append(head(*bank.batch(chunk, torch, device)).float().cpu().numpy())
    if not windows:
        return np.zeros((0, 2, getattr(head, "k", 1)), np.float32)
    per_window = np.concatenate(out)
    items = np.array([w.item for w in windows])
    sums = np.zeros((len(bank),) + per_window.shape[1:], np.float64)
    np.add.at(sums, items, per_window)
    counts = np.bincount(items, minlength=len(bank)).astype(np.float64)
    return (sums / counts.reshape((-1,) + (1,) * (per_window.ndim - 1))).astype(np.float32)


__all__ = ["predict_logits"]
