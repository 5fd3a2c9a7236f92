"""Stacking features: what the meta-model of one axis sees of each member's prediction for a clip.

Per axis and per member, in member order:

* ``score``  the member's score on the axis (always);
* ``bins``   with the ``bins`` feature set, the member's probabilities over :data:`N_BINS` score bins on the
             axis. A member that saved a distribution (prediction columns ``<axis>_p00`` .. ``<axis>_p19``,
             Track 1 distribution heads) contributes those; a scalar member contributes a Gaussian around its
             score (sigma :data:`SIGMA`, in score units) evaluated at the bin centres and normalised.

The bin centres are ``linspace(lo, hi, N_BINS)`` over the task's score range (the distribution heads' centres).
Both the ensemble stage and an exported predictor build features with :func:`axis_features`, so they agree
bit for bit.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

N_BINS = 20
SIGMA = 0.35
FEATURE_SETS: tuple[str, ...] = ("auto", "scores", "bins")
_BIN_RE = re.compile(r"^(.+)_p(\d{2})$")


def bin_columns(axis: str, n_bins: int = N_BINS) -> list[str]:
    """``["<axis>_p00", ..., "<axis>_p19"]``: the prediction columns holding a member's distribution."""
    return [f"{axis}_p{b:02d}" for b in range(n_bins)]


def distribution_axes(columns: list[str]) -> dict[str, list[int]]:
    """Axis -> the bin numbers present among ``columns`` (``PQ_p03`` -> ``{"PQ": [3]}``), sorted."""
    out: dict[str, list[int]] = {}
    for c in columns:
        m = _BIN_RE.match(c)
        if m:
            out.setdefault(m.group(1), []).append(int(m.group(2)))
    return {a: sorted(b) for a, b in out.items()}


def bin_centres(lo: float, hi: float, n_bins: int = N_BINS) -> np.ndarray:
    return np.linspace(lo, hi, n_bins)


def gaussian_bins(scores: np.ndarray, lo: float, hi: float, sigma: float = SIGMA,
                  n_bins: int = N_BINS) -> np.ndarray:
    """``scores (...,)`` -> ``(..., n_bins)``: a normalised Gaussian around each score at the bin centres."""
    c = bin_centres(lo, hi, n_bins)
    s = np.clip(np.asarray(scores, dtype=np.float64), lo, hi)[..., None]
    e = -((s - c) ** 2) / (2.0 * sigma * sigma)
    p = np.exp(e - e.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class FeatureLayout:
    """Which features each member gives the meta-model (the same for every axis)."""

    members: tuple[str, ...]
    bins: bool = False                     # add N_BINS bin probabilities per member
    saved_bins: tuple[bool, ...] = ()      # per member: its own distribution (True) or a Gaussian (False)
    n_bins: int = N_BINS
    sigma: float = SIGMA
    scores: bool = True                    # the members' scores first (False: bins only, the public recipe)

    @property
    def n_features(self) -> int:
        return len(self.members) * (int(self.scores) + (self.n_bins if self.bins else 0))

    def names(self) -> list[str]:
        """Feature names in column order: ``<member>:score`` then ``<member>:p00`` .. per member."""
        out = [f"{m}:score" for m in self.members] if self.scores else []
        if self.bins:
            out += [f"{m}:p{b:02d}" for m in self.members for b in range(self.n_bins)]
        return out

    def to_json(self) -> dict:
        return {"members": list(self.members), "bins": self.bins, "n_bins": self.n_bins, "sigma": self.sigma,
                "member_bins": ["saved" if s else "gaussian" for s in self.saved_bins] if self.bins else [],
                "scores": self.scores, "names": self.names()}

    @classmethod
    def from_json(cls, d: dict) -> "FeatureLayout":
        members = tuple(str(m) for m in d["members"])
        bins = bool(d.get("bins", False))
        saved = tuple(s == "saved" for s in d.get("member_bins", [])) if bins else ()
        return cls(members, bins, saved, int(d.get("n_bins", N_BINS)), float(d.get("sigma", SIGMA)),
                   bool(d.get("scores", True)))


def choose_layout(members: list[str], has_dist: list[bool], feature_set: str = "auto") -> FeatureLayout:
    """The layout for ``feature_set``: ``scores``; ``bins``; ``auto`` = bins when any member saved a distribution."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown stacking feature set {feature_set!r}; valid: {', '.join(FEATURE_SETS)}")
    bins = feature_set == "bins" or (feature_set == "auto" and any(has_dist))
    return FeatureLayout(tuple(members), bins, tuple(bool(h) for h in has_dist) if bins else ())


def axis_features(layout: FeatureLayout, scores: np.ndarray, dists: list[np.ndarray | None] | None,
                  lo: float, hi: float) -> np.ndarray:
    """The feature matrix ``(n_clips, n_features)`` of one axis.

    ``scores``: ``(n_members, n_clips)`` the members' scores on the axis; ``dists``: per member its saved
    ``(n_clips, n_bins)`` distribution on the axis or None (then a Gaussian around its score is used).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[0] != len(layout.members):
        raise ValueError(f"{scores.shape[0]} member score rows for {len(layout.members)} members")
    cols = [scores.T] if layout.scores else []
    if layout.bins:
        for k in range(len(layout.members)):
            d = dists[k] if dists is not None and layout.saved_bins[k] else None
            cols.append(np.asarray(d, dtype=np.float64) if d is not None
                        else gaussian_bins(scores[k], lo, hi, layout.sigma, layout.n_bins))
    return np.concatenate(cols, axis=1)


__all__ = ["FEATURE_SETS", "FeatureLayout", "N_BINS", "SIGMA", "axis_features", "bin_centres", "bin_columns",
           "choose_layout", "distribution_axes", "gaussian_bins"]
