"""Track 1 predictions: a head's outputs for every clip of a bank (eval windows averaged), scores on 1-5,
the prediction table (with the 20-bin distributions of distribution heads) and dev selection figures.

A long clip's windows are combined by averaging their logits (for CORAL the averaged threshold logits stay
monotone), so one clip has one distribution / score whatever its length.
"""
from __future__ import annotations

import warnings

import numpy as np

from .bank import Track1Bank


def predict_logits(head, bank: Track1Bank, batch_size: int, torch, device: str = "cpu") -> np.ndarray:
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


def scores_of(logits: np.ndarray, output: str, lo: float, hi: float) -> np.ndarray:
    """``(N, 2)`` scores on the label scale from head outputs."""
    import torch

    from mmmos.losses.distribution import coral_score, expected_score

    t = torch.from_numpy(np.asarray(logits, np.float32))
    if output == "distribution":
        return expected_score(t, lo, hi).double().numpy()
    if output == "coral":
        return coral_score(t, lo).double().numpy()
    return t.double().numpy().reshape(len(t), -1)


def distributions(logits: np.ndarray) -> np.ndarray:
    """Softmax over the bins, ``(N, 2, K)`` float64."""
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def prediction_table(df, logits: np.ndarray, output: str, task):
    """clip_id, system, domain, one score column per axis and, for distribution heads, ``<axis>_p00`` ... per bin."""
    import polars as pl

    y = scores_of(logits, output, task.lo, task.hi)
    cols = {"clip_id": df["clip_id"], "system": df["system"],
            "domain": df["domain"] if "domain" in df.columns else pl.Series([None] * df.height, dtype=pl.String)}
    cols.update({a: y[:, k] for k, a in enumerate(task.axes)})
    if output == "distribution":
        p = distributions(logits)
        for k, a in enumerate(task.axes):
            cols.update({f"{a}_p{b:02d}": p[:, k, b] for b in range(p.shape[2])})
    return pl.DataFrame(cols)


def _srcc(p: np.ndarray, y: np.ndarray) -> float:
    """The shared SRCC (:data:`mmmos.core.metrics.METRIC_REGISTRY`); NaN, quietly, where it is undefined (an
    early epoch's constant predictions are normal here, not worth a warning per epoch)."""
    from mmmos.core.metrics import METRIC_REGISTRY, UndefinedMetricWarning

    if not (np.isfinite(p).all() and np.isfinite(y).all()):  # a diverged epoch: no figure, training goes on
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return METRIC_REGISTRY["SRCC"].fn(p, y)


def _system_means(v: np.ndarray, systems: list) -> np.ndarray:
    """Per system (sorted), the mean of each column: the scorer's own exact means
    (:func:`mmmos.core.metrics.system_means`), so the checkpoint is chosen on the figures the table reports."""
    import polars as pl

    from mmmos.core.metrics import system_means

    if not np.isfinite(v).all():  # a diverged epoch: NaN figures (system_means refuses NaN)
        keys = sorted({s for s in systems if s is not None})
        return np.full((len(keys), v.shape[1]), np.nan)
    cols = [f"c{k}" for k in range(v.shape[1])]
    df = pl.DataFrame({"system": [str(s) for s in systems], **{c: v[:, k].astype(np.float64) for k, c in enumerate(cols)}})
    return system_means(df, cols, [], "system").select(cols).to_numpy()


def selection_figures(pred: np.ndarray, truth: np.ndarray, systems: list) -> dict[str, float]:
    """Dev figures the checkpoints are chosen by: utterance and system SRCC per branch (0 = MI, 1 = TA)."""
    has = [s is not None for s in systems]
    ps = _system_means(pred[has], [s for s in systems if s is not None]) if any(has) else np.zeros((0, 2))
    ts = _system_means(truth[has], [s for s in systems if s is not None]) if any(has) else np.zeros((0, 2))
    return {"utt_mi": _srcc(pred[:, 0], truth[:, 0]), "utt_ta": _srcc(pred[:, 1], truth[:, 1]),
            "sys_mi": _srcc(ps[:, 0], ts[:, 0]) if len(ps) else float("nan"),
            "sys_ta": _srcc(ps[:, 1], ts[:, 1]) if len(ps) else float("nan")}
