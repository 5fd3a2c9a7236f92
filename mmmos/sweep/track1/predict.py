"""Track 1 predictions: a head's outputs for every clip of a bank (eval windows averaged), scores on 1-5,
the prediction table (with the 20-bin distributions of distribution heads) and dev selection figures.

A long clip's windows are combined by averaging their logits (for CORAL the averaged threshold logits stay
monotone), so one clip has one distribution / score whatever its length.
"""
from __future__ import annotations

import warnings

import numpy as np

# re-exported under their old names: the code now lives with the heads, the losses and the cache
from mmmos.heads.inference import predict_logits  # noqa: F401
from mmmos.losses.distribution import distributions, scores_of

from .bank import Track1Bank  # noqa: F401


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
