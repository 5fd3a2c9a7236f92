"""A stacked predictor's meta-model: per axis ``clamp(intercept + features @ coefficients)`` over the members.

``predictor.json`` records it under ``"stack"`` (written by ``mmmos ensemble --export-strategy stack``)::

    "stack": {"model": "ridge", "fit_set": "dev", "clamp": [lo, hi],
              "features": {"members": [...], "bins": false, "n_bins": 20, "sigma": 0.35, "member_bins": [...],
                           "names": [...]},
              "axes": {"<axis>": {"intercept": b, "coefficients": [...]}, ...}}

Features are built by the ensemble stage's own code (:func:`mmmos.ensemble.stack_features.axis_features`), so the
predictor combines the members' scores exactly as the ensemble did. Members here give scores only: a layout that
needs a member's saved distribution cannot be applied (refused when the folder is read).
"""
from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

from .errors import PredictorError

if TYPE_CHECKING:  # the ensemble package imports polars/scipy: only when a stacked predictor is read
    from mmmos.ensemble.stack_features import FeatureLayout


@dataclass(frozen=True)
class StackSpec:
    """The recorded meta-model: feature layout, per-axis intercept and coefficients, clamp range."""

    layout: FeatureLayout
    intercepts: np.ndarray        # (n_axes,)
    coefficients: np.ndarray      # (n_axes, n_features)
    clamp: tuple[float, float]
    fit_set: str = ""
    record: dict | None = None    # the JSON as read (written back unchanged)

    @classmethod
    def from_json(cls, d: dict, axes: tuple[str, ...] | list[str], members: list[str], where: str,
                  saved_bins_ok: bool = False) -> "StackSpec":
        """Read and check the record against the predictor's axes and member order (``saved_bins_ok``: the
        predictor computes its members' distributions, as the Track 1 predictor does)."""
        from mmmos.ensemble.stack_features import FeatureLayout

        try:
            if d.get("model") != "ridge":
                raise PredictorError(f"{where}: stacked meta-model {d.get('model')!r} cannot be applied (only ridge)")
            layout = FeatureLayout.from_json(d["features"])
            if list(layout.members) != list(members):
                raise PredictorError(f"{where}: the stack's members {list(layout.members)} are not the predictor's "
                                     f"members {list(members)} (in order)")
            if layout.bins and any(layout.saved_bins) and not saved_bins_ok:
                raise PredictorError(f"{where}: the stack uses members' saved distributions, which this predictor "
                                     "cannot compute")
            if sorted(d["axes"]) != sorted(axes):
                raise PredictorError(f"{where}: stack axes {sorted(d['axes'])} are not the task's {list(axes)}")
            rows = [[float(c) for c in d["axes"][a]["coefficients"]] for a in axes]
            bad = [(a, len(r)) for a, r in zip(axes, rows) if len(r) != layout.n_features]
            if bad:
                raise PredictorError(f"{where}: axis {bad[0][0]} has {bad[0][1]} coefficients per axis for "
                                     f"{layout.n_features} features")
            coef = np.array(rows, dtype=np.float64).reshape(len(axes), layout.n_features)
            icpt = np.array([float(d["axes"][a]["intercept"]) for a in axes], dtype=np.float64)
            lo, hi = (float(v) for v in d["clamp"])
        except (KeyError, TypeError, ValueError) as e:
            raise PredictorError(f"{where}: malformed stack record ({type(e).__name__}: {e})") from None
        if not (np.isfinite(coef).all() and np.isfinite(icpt).all()):
            raise PredictorError(f"{where}: non-finite stack coefficients")
        return cls(layout, icpt, coef, (lo, hi), str(d.get("fit_set", "")), dict(d))

    def apply(self, member_scores: np.ndarray, member_dists: list | None = None) -> np.ndarray:
        """``(n_members, n_rows, n_axes)`` members' scores -> ``(n_rows, n_axes)`` stacked, clamped scores.
        ``member_dists``: per member ``(n_rows, n_axes, n_bins)`` bin probabilities or None (Track 1)."""
        from mmmos.ensemble.stack_features import axis_features

        s = np.asarray(member_scores, dtype=np.float64)
        lo, hi = self.clamp
        out = np.empty(s.shape[1:])
        for k in range(s.shape[2]):
            d = None if member_dists is None else [None if m is None else np.asarray(m)[:, k] for m in member_dists]
            X = axis_features(self.layout, s[:, :, k], d, lo, hi)
            out[:, k] = self.intercepts[k] + X @ self.coefficients[k]
        return np.clip(out, lo, hi)


__all__ = ["StackSpec"]
