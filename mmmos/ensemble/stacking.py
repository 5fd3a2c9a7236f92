"""The ``stack`` strategy: a meta-model per axis learns how to combine the members' predictions, without leakage.

* The meta-model of each axis is fitted on the members' predictions for the fitting set (``fit_set``, default
  ``dev``) against its labels; features per :mod:`.stack_features`; model per :mod:`.meta` (ridge by default,
  alpha chosen by grouped cross-validation inside whatever clips it is fitted on).
* The figures for the fitting set itself are OUT-OF-FOLD: its labelled clips are split into K folds grouped by
  system (:mod:`.folds`, seeded), each fold is predicted by a meta-model fitted on the other folds (whose alpha
  is chosen by an inner grouped CV on those folds only: nested). Clips of the fitting set without labels and
  every other set are predicted by the meta-model fitted on all labelled clips of the fitting set.
* Stacked scores are clamped to the task's score range.

The in-sample predictions of the fitting set (the full model applied to the clips it was fitted on) are kept
for reference only: they are what a leaky evaluation would report.

``recipe="public"`` reproduces the public ASTAR-NTU stacking instead: features = the members' 20 bin
probabilities only (a scalar member's Gaussian, sigma 0.35), ridge with alpha 1 on those raw features or
LightGBM with its defaults (``random_state=42``), fitted on all labelled clips of the fitting set, and the
fitting set's figures are IN-SAMPLE (the model predicting the clips it was fitted on), as the public code reports.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .errors import EnsembleError, StrategyUnavailable
from .folds import group_ids, grouped_folds
from .meta import MODELS, LinearModel, fit_meta, fit_public_meta, lightgbm_available
from .stack_features import FEATURE_SETS, FeatureLayout, axis_features, choose_layout

#: how the stack is fitted and its fitting-set figures made: out-of-fold (default) or the public recipe
RECIPES: tuple[str, ...] = ("oof", "public")
from .strategies import STACK, parse_strategy
from .sweep_reader import Sweep, member_columns


@dataclass(frozen=True)
class StackOptions:
    """How the ``stack`` strategy is fitted (``mmmos ensemble --stack-*``)."""

    fit_set: str = "dev"
    folds: int = 5
    seed: int = 0
    model: str = "ridge"
    members: str = "all"      # a selection made by another strategy: all, submitted, dev-top-K, pam-top-K, custom
    features: str = "auto"    # auto, scores, bins (see stack_features); ignored by recipe "public"
    recipe: str = "oof"       # oof (grouped out-of-fold figures) or public (the public code's, in-sample)

    def check(self) -> None:
        """Raise :class:`EnsembleError` for a bad option (before any work)."""
        if self.folds < 2:
            raise EnsembleError(f"--stack-folds must be >= 2, got {self.folds}")
        if self.model not in MODELS:
            raise EnsembleError(f"unknown --stack-model {self.model!r}; valid: {', '.join(MODELS)}")
        if self.model == "lightgbm" and not lightgbm_available():
            raise EnsembleError("--stack-model lightgbm needs the optional package lightgbm (pip install lightgbm)")
        if self.recipe not in RECIPES:
            raise EnsembleError(f"unknown --stack-recipe {self.recipe!r}; valid: {', '.join(RECIPES)}")
        if self.features not in FEATURE_SETS:
            raise EnsembleError(f"unknown --stack-features {self.features!r}; valid: {', '.join(FEATURE_SETS)}")
        if self.members == STACK:
            raise EnsembleError("--stack-members names a selection strategy (all, submitted, dev-top-K, ...), "
                                "not 'stack'")
        try:
            parse_strategy(self.members)
        except EnsembleError as e:
            raise EnsembleError(f"--stack-members: {e}") from None

    def describe(self, k: int) -> str:
        if self.recipe == "public":
            return (f"fitted on {self.fit_set} with the public recipe ({self.fit_set}: IN-SAMPLE, the model predicts "
                    f"the clips it was fitted on)")
        return f"fitted on {self.fit_set} ({self.fit_set}: out-of-fold, {k} folds grouped by system, seed {self.seed})"


@dataclass
class StackResult:
    """A fitted stack: members, feature layout, per-axis models, predictions per set (fitting set out-of-fold)."""

    options: StackOptions
    members: list[str]
    layout: FeatureLayout
    models: dict[str, object]              # axis -> meta-model fitted on all labelled fitting clips
    predictions: dict[str, pl.DataFrame]   # set -> clip_id, system, domain, <axes>
    in_sample: pl.DataFrame                # the fitting set predicted by the full models (reference only)
    folds: pl.DataFrame                    # clip_id, group, fold of the labelled fitting clips
    n_folds: int
    clamp: tuple[float, float]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """The record in ``members.json``: options, fold layout, features, each axis' model."""
        return {"fit_set": self.options.fit_set, "figures": self.options.describe(self.n_folds),
                "model": self.options.model, "member_selection": self.options.members,
                "folds": self.n_folds, "seed": self.options.seed, "fit_clips": self.folds.height,
                "fit_groups": self.folds["group"].n_unique(), "features": self.layout.to_json(),
                "recipe": self.options.recipe,
                "clamp": list(self.clamp), "axes": {a: m.to_json() for a, m in self.models.items()}}

    def export_record(self) -> dict:
        """What a predictor needs to apply the stack: feature layout, per-axis intercept and coefficients, clamp.

        Only linear (ridge) models have such a record; the coefficients are in raw feature units.
        """
        if any(not isinstance(m, LinearModel) for m in self.models.values()):
            raise EnsembleError(f"a {self.options.model} meta-model cannot be exported (only ridge)")
        return {"model": "ridge", "fit_set": self.options.fit_set, "features": self.layout.to_json(),
                "clamp": list(self.clamp),
                "axes": {a: {"intercept": float(m.intercept), "coefficients": [float(c) for c in m.coef]}
                         for a, m in self.models.items()}}


def _block(sweep: Sweep, members: list[str], set_name: str):
    """Clip positions, member scores ``(n_members, n_clips, n_axes)`` and saved distributions of a set."""
    cols = member_columns(sweep, members, set_name)
    sp = sweep.predictions[set_name]
    idx = np.array([sweep.index(m) for m in members])
    values = sp.values[idx][:, cols, :]
    dists = None
    if sp.dists is not None:
        dists = [sp.dists[i][cols] if sp.has_dist[i] else None for i in idx]
    return cols, values, dists


def _features(layout: FeatureLayout, values: np.ndarray, dists, k: int, lo: float, hi: float) -> np.ndarray:
    d = [None if x is None else x[:, k, :] for x in dists] if dists is not None else None
    return axis_features(layout, values[:, :, k], d, lo, hi)


def _frame(sweep: Sweep, set_name: str, cols: np.ndarray, pred: np.ndarray) -> pl.DataFrame:
    sp = sweep.predictions[set_name]
    return pl.DataFrame({
        "clip_id": [sp.clip_ids[i] for i in cols],
        "system": pl.Series([sp.system[i] for i in cols], dtype=pl.String),
        "domain": pl.Series([sp.domain[i] for i in cols], dtype=pl.String),
        **{a: pred[:, k] for k, a in enumerate(sweep.task.axes)},
    })


def _fit_labels(sweep: Sweep, set_name: str, cols: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Labels ``(n_clips, n_axes)`` (NaN where missing) and fold groups of the fitting clips."""
    sp = sweep.predictions[set_name]
    ids = [sp.clip_ids[i] for i in cols]
    truth = sweep.truth[set_name]
    frame = pl.DataFrame({"clip_id": ids}).join(truth, on="clip_id", how="left", maintain_order="left")
    y = frame.select([pl.col(a).cast(pl.Float64) for a in sweep.task.axes]).to_numpy()
    y = np.where(np.isfinite(y), y, np.nan)
    t_sys = frame["system"].to_list()
    systems = [sp.system[i] if sp.system[i] is not None else t for i, t in zip(cols, t_sys)]
    return y, group_ids(systems, ids)


def _check_fit_set(sweep: Sweep, opts: StackOptions) -> None:
    if opts.fit_set not in sweep.predictions:
        raise StrategyUnavailable(f"no predictions for the fitting set {opts.fit_set!r} (--stack-fit); "
                                  f"sets: {', '.join(sweep.sets) or 'none'}")
    if opts.fit_set not in sweep.truth:
        raise StrategyUnavailable(f"the fitting set {opts.fit_set!r} has no labels (--truth {opts.fit_set}=PATH)")


def fit_stack(sweep: Sweep, members: list[str], opts: StackOptions = StackOptions()) -> StackResult:
    """Fit the stack on ``opts.fit_set`` and predict every set (the fitting set out-of-fold).

    Raises :class:`StrategyUnavailable` when the fitting set is missing, unlabelled or has fewer than two
    fold groups; :class:`EnsembleError` for bad options or members.
    """
    opts.check()
    _check_fit_set(sweep, opts)
    task = sweep.task
    cols, values, dists = _block(sweep, members, opts.fit_set)
    y, groups = _fit_labels(sweep, opts.fit_set, cols)
    labelled = np.flatnonzero(np.isfinite(y).any(axis=1))
    lab_groups = [groups[i] for i in labelled]
    if len(set(lab_groups)) < 2:
        raise StrategyUnavailable(f"the fitting set {opts.fit_set!r} has {len(set(lab_groups))} labelled "
                                  "system(s); grouped folds need at least 2")
    fold = np.full(len(cols), -1)
    fold[labelled] = grouped_folds(lab_groups, opts.folds, opts.seed)
    n_folds = int(fold.max()) + 1
    has_dist = [bool(d is not None) for d in dists] if dists is not None else [False] * len(members)
    layout = choose_layout(members, has_dist, opts.features)
    if opts.recipe == "public":  # the public features: 20 bins per member, nothing else
        layout = FeatureLayout(tuple(members), True, tuple(has_dist), scores=False)

    oof = np.empty((len(cols), task.n_axes))
    ins = np.empty_like(oof)
    models = {}
    for k, axis in enumerate(task.axes):
        X = _features(layout, values, dists, k, task.lo, task.hi)
        lab = np.isfinite(y[:, k])
        g = np.asarray(groups, dtype=object)
        if opts.recipe == "public":
            models[axis] = full = fit_public_meta(opts.model, X[lab], y[lab, k])
            oof[:, k] = ins[:, k] = full.predict(X)  # in-sample, as the public code reports
            continue
        models[axis] = full = fit_meta(opts.model, X[lab], y[lab, k], list(g[lab]), opts.folds, opts.seed)
        ins[:, k] = full.predict(X)
        oof[:, k] = ins[:, k]  # unlabelled clips: the full model never saw their labels
        for f in range(n_folds):
            tr, ho = lab & (fold != f), fold == f
            m = fit_meta(opts.model, X[tr], y[tr, k], list(g[tr]), opts.folds, opts.seed)
            oof[ho, k] = m.predict(X[ho])
    clamp = (task.lo, task.hi)
    preds = {opts.fit_set: _frame(sweep, opts.fit_set, cols, np.clip(oof, *clamp))}
    notes = []
    for s in sweep.sets:
        if s == opts.fit_set:
            continue
        sp = sweep.predictions[s]
        lacking = [m for m in members if not sp.has_set[sweep.index(m)]]
        if lacking:
            notes.append(f"{STACK} on {s}: n/a, no predictions from {', '.join(lacking)}")
            continue
        c2, v2, d2 = _block(sweep, members, s)
        p2 = np.column_stack([models[a].predict(_features(layout, v2, d2, k, task.lo, task.hi))
                              for k, a in enumerate(task.axes)])
        preds[s] = _frame(sweep, s, c2, np.clip(p2, *clamp))
    ids = [sweep.predictions[opts.fit_set].clip_ids[i] for i in cols]
    fold_table = pl.DataFrame({"clip_id": [ids[i] for i in labelled], "group": lab_groups,
                               "fold": fold[labelled].astype(np.int64)})
    res = StackResult(opts, list(members), layout, models, preds,
                      _frame(sweep, opts.fit_set, cols, np.clip(ins, *clamp)), fold_table, n_folds, clamp, notes)
    return res


__all__ = ["STACK", "StackOptions", "StackResult", "fit_stack"]
