"""Ensemble predictions (mean of the members' scores, clip by clip) and their metrics per strategy.

Each distinct member set is averaged and scored once per set, however many strategies choose it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import polars as pl

from mmmos.core.metrics import LEVEL_SHORT, LEVELS, LONG_SCHEMA, METRICS, UndefinedMetricWarning, evaluate
from mmmos.core.tasks import COMPOSITE

from .errors import EnsembleError, StrategyUnavailable
from .stacking import StackOptions, StackResult, fit_stack
from .strategies import CUSTOM, DEFAULT_STRATEGIES, STACK, check_members, parse_strategy, rank, select
from .sweep_reader import Sweep, member_columns


def ensemble_predictions(sweep: Sweep, members: list[str], set_name: str) -> pl.DataFrame:
    """Mean of the members' predictions per clip: ``clip_id, system, domain, <task axes>``.

    The clips are those any member predicted; a clip missing from one member is an error naming
    the member and the clip (an average over fewer members would be a different model).
    """
    members = check_members(sweep, members)
    cols = member_columns(sweep, members, set_name)
    sp = sweep.predictions[set_name]
    idx = np.array([sweep.index(m) for m in members])
    mean = sp.values[idx][:, cols, :].mean(axis=0)
    return pl.DataFrame({
        "clip_id": [sp.clip_ids[i] for i in cols],
        "system": pl.Series([sp.system[i] for i in cols], dtype=pl.String),
        "domain": pl.Series([sp.domain[i] for i in cols], dtype=pl.String),
        **{a: mean[:, k] for k, a in enumerate(sweep.task.axes)},
    })


def _evaluate(pred: pl.DataFrame, truth: pl.DataFrame, set_name: str, sweep: Sweep):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # kept in Evaluation.notes
        return evaluate(pred, truth, set_name=set_name, task=sweep.task)


def table_columns(sets: list[str]) -> list[str]:
    """The Table IV metric columns: ``{set}/{utt|sys}_{metric}`` for every registered metric."""
    return [f"{s}/{LEVEL_SHORT[lv]}_{m}" for s in sets for lv in LEVELS for m in METRICS]


def _wide_row(long: pl.DataFrame, set_name: str) -> dict[str, float | None]:
    m = long.filter((pl.col("axis") == COMPOSITE) & (pl.col("set") == set_name))
    look = {(lv, mt): (v, n) for lv, mt, v, n in m.select("level", "metric", "value", "n").iter_rows()}
    out = {}
    for lv in LEVELS:
        for mt in METRICS:
            v, n = look.get((lv, mt), (None, 0))
            out[f"{set_name}/{LEVEL_SHORT[lv]}_{mt}"] = None if not n else float(v)
    return out


@dataclass
class EnsembleResult:
    """Everything :func:`evaluate_strategies` computed; ``write_outputs`` saves it."""

    table: pl.DataFrame  # Table IV layout (wide)
    metrics: pl.DataFrame  # long: strategy, [fit,] set, level, axis, metric, value, n (fit: with ``stack``)
    predictions: dict[str, dict[str, pl.DataFrame]]  # strategy -> set -> predictions
    members: dict[str, dict]  # strategy -> {"members": [...]} or {"unavailable": reason}
    rankings: dict[str, list[tuple[str, float]]]
    criterion: dict
    notes: list[str]
    stack: StackResult | None = None  # the fitted ``stack`` strategy, if evaluated


def _check_strategies(strategies: list[str], members: list[str] | None) -> list[str]:
    strategies = list(strategies)
    if members is not None and CUSTOM not in strategies:
        strategies.append(CUSTOM)
    for s in strategies:
        parse_strategy(s)  # unknown names fail before any work
    dup = sorted({s for s in strategies if strategies.count(s) > 1})
    if dup:
        raise EnsembleError(f"strategy listed more than once: {', '.join(dup)}")
    return strategies


def _choose(sweep: Sweep, strategies: list[str], members, crit: dict, stack: StackOptions,
            notes: list[str]) -> dict[str, dict]:
    chosen: dict[str, dict] = {}
    for s in strategies:
        sel = stack.members if s == STACK else s
        try:
            chosen[s] = {"members": select(sel, sweep, members=members if sel == CUSTOM else None, **crit)}
        except StrategyUnavailable as e:
            chosen[s] = {"unavailable": str(e)}
            notes.append(f"{s}: unavailable - {e}")
    return chosen


def _score(sweep: Sweep, strategy: str, pred: pl.DataFrame, set_name: str, notes: list[str]):
    """The long metrics of ``pred`` on a labelled set (None without labels); matching problems go to notes."""
    if set_name not in sweep.truth:
        return None
    ev = _evaluate(pred, sweep.truth[set_name], set_name, sweep)
    notes.extend(f"{strategy}: {line}" for line in ev.summary_lines()
                 if "no prediction" in line or "not in the truth" in line or "warning" in line)
    return ev.table


class _Scorer:
    """Ensemble predictions and metrics per (member set, evaluation set), computed once."""

    def __init__(self, sweep: Sweep, notes: list[str]):
        self.sweep, self.notes = sweep, notes
        self.cache: dict[tuple[tuple[str, ...], str], tuple[pl.DataFrame | None, pl.DataFrame | None]] = {}

    def __call__(self, strategy: str, mem: list[str], set_name: str):
        key = (tuple(sorted(mem)), set_name)
        if key not in self.cache:
            self.cache[key] = self._compute(strategy, mem, set_name)
        return self.cache[key]

    def _compute(self, strategy: str, mem: list[str], set_name: str):
        sw = self.sweep
        sp = sw.predictions[set_name]
        lacking = [m for m in mem if not sp.has_set[sw.index(m)]]
        if lacking:
            self.notes.append(f"{strategy} on {set_name}: n/a, no predictions from {', '.join(lacking)}")
            return None, None
        pred = ensemble_predictions(sw, mem, set_name)
        return pred, _score(sw, strategy, pred, set_name, self.notes)


def _composite_srcc(pred: pl.DataFrame, truth: pl.DataFrame, sweep: Sweep) -> float | None:
    """Utterance-level SRCC of the composite over clips labelled on every composite axis (a quick figure for
    the in-sample vs out-of-fold note; the reported metrics come from :func:`evaluate`)."""
    from scipy import stats

    comp = list(sweep.task.composite_axes)
    j = pred.select("clip_id", *comp).join(truth.select("clip_id", *comp), on="clip_id", suffix="_y").drop_nans()
    j = j.drop_nulls()
    if j.height < 2:
        return None
    p = j.select(comp).to_numpy().mean(axis=1)
    y = j.select([f"{a}_y" for a in comp]).to_numpy().mean(axis=1)
    return float(stats.spearmanr(p, y).statistic)


def _fit_stack(sweep: Sweep, chosen: dict[str, dict], opts: StackOptions, crit: dict,
               notes: list[str]) -> StackResult | None:
    """Fit the stack over its chosen members; unavailable (reason in ``chosen`` and notes) when it cannot be."""
    if "members" not in chosen[STACK]:
        return None
    try:
        res = fit_stack(sweep, chosen[STACK]["members"], opts)
    except StrategyUnavailable as e:
        chosen[STACK] = {"unavailable": str(e)}
        notes.append(f"{STACK}: unavailable - {e}")
        return None
    chosen[STACK]["stack"] = res.to_json()
    notes.extend(res.notes)
    kind, _ = parse_strategy(opts.members)
    ranked_on = {"dev": [crit["dev_set"]], "pam": [crit["pam_set"]], "submitted": [crit["dev_set"], crit["pam_set"]]}
    if opts.fit_set in ranked_on.get(kind, []):
        notes.append(f"{STACK}: members ({opts.members}) were chosen by ranking on {opts.fit_set}, the fitting set; "
                     "the out-of-fold figures do not undo that selection")
    truth = sweep.truth[opts.fit_set]
    oof = _composite_srcc(res.predictions[opts.fit_set], truth, sweep)
    ins = _composite_srcc(res.in_sample, truth, sweep)
    if oof is not None and ins is not None and np.isfinite([oof, ins]).all():
        notes.append(f"{STACK}: {opts.fit_set} composite utterance SRCC out-of-fold {oof:.3f} (reported); "
                     f"in-sample {ins:.3f} (not reported: the meta-model saw those labels)")
    return res


def _fit_label(strategy: str, stack: StackResult | None, set_name: str) -> str | None:
    if strategy != STACK or stack is None:
        return None
    fit = stack.options.fit_set
    return "out-of-fold" if set_name == fit else f"fitted on {fit}"


def evaluate_strategies(sweep: Sweep, strategies: list[str] | tuple[str, ...] = DEFAULT_STRATEGIES, *,
                        members: list[str] | None = None, dev_set: str = "dev", pam_set: str = "pam_dev",
                        metric: str = "SRCC", level: str = "utterance", axis: str = "composite",
                        top: int = 12, stack: StackOptions | None = None) -> EnsembleResult:
    """Select the members of every strategy and score each ensemble on every labelled set.

    ``stack`` configures the ``stack`` strategy (default :class:`StackOptions`); its row is marked with the
    fitting set (``fit_set``) and its metrics with ``fit`` (``out-of-fold`` on the fitting set).
    """
    strategies = _check_strategies(list(strategies), members)
    stack = stack or StackOptions()
    if STACK in strategies:
        stack.check()
    crit = dict(metric=metric, level=level, axis=axis, dev_set=dev_set, pam_set=pam_set, top=top)
    notes = list(sweep.notes)
    chosen = _choose(sweep, strategies, members, crit, stack, notes)
    stacked = _fit_stack(sweep, chosen, stack, crit, notes) if STACK in strategies else None
    rankings = {}
    for s in dict.fromkeys([dev_set, pam_set]):
        try:
            rankings[s] = rank(sweep, s, metric, level, axis)
        except StrategyUnavailable:
            pass

    scorer = _Scorer(sweep, notes)
    preds: dict[str, dict[str, pl.DataFrame]] = {}
    longs, rows = [], []
    for s in strategies:
        row: dict[str, object] = {"strategy": s}
        if "unavailable" in chosen[s]:
            row.update(n_members=0, members="", status=f"unavailable: {chosen[s]['unavailable']}", fit_set=None)
            row.update({c: None for c in table_columns(sweep.sets)})
            rows.append(row)
            continue
        mem = chosen[s]["members"]
        row.update(n_members=len(mem), members=",".join(mem), status="ok",
                   fit_set=stacked.options.fit_set if s == STACK else None)
        preds[s] = {}
        for set_name in sweep.sets:
            if s == STACK:
                pred = stacked.predictions.get(set_name)
                long = None if pred is None else _score(sweep, s, pred, set_name, notes)
            else:
                pred, long = scorer(s, mem, set_name)
            if pred is not None:
                preds[s][set_name] = pred
            if long is not None:
                longs.append(long.with_columns(pl.lit(s).alias("strategy"),
                                               pl.lit(_fit_label(s, stacked, set_name), pl.String).alias("fit")))
                row.update(_wide_row(long, set_name))
            else:
                row.update({c: None for c in table_columns([set_name])})
        rows.append(row)
    schema = {"strategy": pl.String, "n_members": pl.Int64, "members": pl.String, "status": pl.String,
              "fit_set": pl.String, **{c: pl.Float64 for c in table_columns(sweep.sets)}}
    # the "fit" column only when a fitted strategy ran: metrics.parquet of plain ensembles keeps its columns
    lead = ["strategy", "fit"] if STACK in strategies else ["strategy"]
    long_all = (pl.concat(longs).select(*lead, *LONG_SCHEMA) if longs else
                pl.DataFrame(schema={**{c: pl.String for c in lead}, **LONG_SCHEMA}))
    crit["stack"] = {k: v for k, v in stack.__dict__.items()} if STACK in strategies else None
    return EnsembleResult(pl.DataFrame(rows, schema=schema), long_all, preds, chosen, rankings, crit, notes, stacked)


__all__ = ["EnsembleResult", "ensemble_predictions", "evaluate_strategies", "table_columns"]
