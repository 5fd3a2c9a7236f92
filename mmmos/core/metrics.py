"""Challenge metrics for a task's axes and their composite, and the metric vocabulary.

Per axis and for the composite (mean of the task's composite axes per clip) the metrics of
:data:`METRIC_REGISTRY` (MSE, LCC = Pearson, SRCC = Spearman, KTAU = Kendall tau-b) are computed at
utterance level and at system level (predictions and labels averaged per system id, equal weight per
clip, then the same metrics over the system means). Every consumer (ranking, Table III/IV, report,
scoring) takes metric names and directions from the registry; adding a metric is one line there.

Results do not depend on row order: clips are scored in clip-id order and system means are exact
(``math.fsum``) sums over each system's clips, so equal system means compare equal and identical inputs
give bit-identical metrics however their rows are shuffled.

The metric functions are thin wrappers over numpy/scipy so the numbers equal scipy's exactly; what they
add is a defined answer for degenerate input: constant input or fewer than two pairs gives NaN with an
:class:`UndefinedMetricWarning` instead of an exception, and NaN/inf in the input is an error (the caller
decides which pairs to drop, and counts them).

Length (~530 lines): the metric functions, the registry and the long-form evaluation that uses both; the
evaluation's matching/exclusion rules only make sense beside the functions whose input they guard.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy import stats

from mmmos.core.errors import UserError
from mmmos.core.tasks import COMPOSITE, Task, get_task

_DEFAULT_TASK = get_task()
#: The default task's axes (compatibility aliases; new code asks ``get_task(name).axes``).
AXES: tuple[str, ...] = _DEFAULT_TASK.axes
ALL_AXES: tuple[str, ...] = _DEFAULT_TASK.all_axes
LEVELS: tuple[str, ...] = ("utterance", "system")
#: Short level names used in wide table columns (``{set}/utt_SRCC``).
LEVEL_SHORT: dict[str, str] = {"utterance": "utt", "system": "sys"}

#: Columns of the long-form metrics table returned by :func:`evaluate`.
LONG_COLUMNS: tuple[str, ...] = ("set", "level", "axis", "metric", "value", "n")
LONG_SCHEMA: dict[str, pl.DataType] = {
    "set": pl.String(),
    "level": pl.String(),
    "axis": pl.String(),
    "metric": pl.String(),
    "value": pl.Float64(),
    "n": pl.Int64(),
}


class UndefinedMetricWarning(RuntimeWarning):
    """A metric was asked for on input where it is undefined (constant input, too few pairs)."""


# ---------------------------------------------------------------------------------------------
# Metric functions on 1-D vectors
# ---------------------------------------------------------------------------------------------


def _as_pair(p: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``p`` and ``y`` as float64 1-D arrays of equal length, or raise ``ValueError``."""
    pa = np.asarray(p, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if pa.ndim != 1 or ya.ndim != 1:
        raise ValueError(f"{name}: expected 1-D vectors, got shapes {pa.shape} and {ya.shape}")
    if pa.shape != ya.shape:
        raise ValueError(f"{name}: predictions and labels differ in length ({pa.size} vs {ya.size})")
    if not (np.isfinite(pa).all() and np.isfinite(ya).all()):
        raise ValueError(f"{name}: input contains NaN or inf; drop those pairs before computing metrics")
    return pa, ya


def undefined_reason(p: np.ndarray, y: np.ndarray, *, correlation: bool = True) -> str | None:
    """Why a metric is undefined on ``(p, y)``, or ``None`` when it is defined.

    MSE needs one pair; the correlations need two pairs and neither vector constant.
    """
    n = int(np.asarray(p).size)
    if not correlation:
        return "no pairs" if n == 0 else None
    if n < 2:
        return f"needs at least 2 pairs, got {n}"
    pa, ya = np.asarray(p), np.asarray(y)
    if np.all(pa == pa[0]):
        return f"predictions are constant (all {pa[0]:g})"
    if np.all(ya == ya[0]):
        return f"labels are constant (all {ya[0]:g})"
    return None


def _undefined(name: str, reason: str) -> float:
    warnings.warn(f"{name} is undefined: {reason}; returning NaN", UndefinedMetricWarning, stacklevel=3)
    return math.nan


def mse(p: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Mean squared error ``mean((p - y)**2)``; NaN (with a warning) for empty input."""
    pa, ya = _as_pair(p, y, "MSE")
    reason = undefined_reason(pa, ya, correlation=False)
    if reason:
        return _undefined("MSE", reason)
    return float(np.mean((pa - ya) ** 2))


def lcc(p: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Pearson's linear correlation (``scipy.stats.pearsonr``); NaN with a warning when undefined."""
    pa, ya = _as_pair(p, y, "LCC")
    reason = undefined_reason(pa, ya)
    if reason:
        return _undefined("LCC", reason)
    return float(stats.pearsonr(pa, ya).statistic)


def srcc(p: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation (``scipy.stats.spearmanr``, average ranks for ties)."""
    pa, ya = _as_pair(p, y, "SRCC")
    reason = undefined_reason(pa, ya)
    if reason:
        return _undefined("SRCC", reason)
    return float(stats.spearmanr(pa, ya).statistic)


def ktau(p: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Kendall's tau-b (``scipy.stats.kendalltau``, variant ``"b"``: ties corrected on both sides)."""
    pa, ya = _as_pair(p, y, "KTAU")
    reason = undefined_reason(pa, ya)
    if reason:
        return _undefined("KTAU", reason)
    return float(stats.kendalltau(pa, ya, variant="b").statistic)


# ---------------------------------------------------------------------------------------------
# The metric vocabulary
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One metric: its name (table/column spelling), function and direction."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    higher_is_better: bool
    description: str = ""

    def best(self, values: Sequence[float]) -> float:
        """The best of ``values`` in this metric's direction (NaN/None ignored; NaN when none is left)."""
        ok = [v for v in values if v is not None and not math.isnan(v)]
        if not ok:
            return math.nan
        return max(ok) if self.higher_is_better else min(ok)

    def sort_key(self, value: float | None) -> tuple[bool, float]:
        """Sort key putting the best value first and NaN/None last."""
        bad = value is None or math.isnan(value)
        return (bad, 0.0 if bad else (-value if self.higher_is_better else value))


#: name -> metric, in table order. Adding a metric is one line here.
METRIC_REGISTRY: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("MSE", mse, higher_is_better=False, description="mean squared error"),
        Metric("LCC", lcc, higher_is_better=True, description="Pearson linear correlation"),
        Metric("SRCC", srcc, higher_is_better=True, description="Spearman rank correlation"),
        Metric("KTAU", ktau, higher_is_better=True, description="Kendall tau-b"),
    )
}
METRICS: tuple[str, ...] = tuple(METRIC_REGISTRY)
METRIC_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {n: m.fn for n, m in METRIC_REGISTRY.items()}


class UnknownMetricError(UserError, ValueError):
    """A metric or level name that is not in the vocabulary."""


def get_metric(name: str) -> Metric:
    """The registered metric ``name``; :class:`UnknownMetricError` listing the valid names otherwise."""
    try:
        return METRIC_REGISTRY[name]
    except KeyError:
        raise UnknownMetricError(f"unknown metric {name!r}; valid: {', '.join(METRICS)}") from None


def higher_is_better(name: str) -> bool:
    return get_metric(name).higher_is_better


def metric_of_column(column: str) -> Metric | None:
    """The metric a wide-table column ``..._{METRIC}`` holds (e.g. ``dev/utt_MSE``), or None."""
    tail = column.rsplit("_", 1)[-1]
    return METRIC_REGISTRY.get(tail)


# ---------------------------------------------------------------------------------------------
# System-level aggregation
# ---------------------------------------------------------------------------------------------


def system_means(
    df: pl.DataFrame,
    pred_cols: Sequence[str],
    label_cols: Sequence[str],
    system_col: str = "system",
) -> pl.DataFrame:
    """Average prediction and label columns per system, every clip weighing the same.

    Returns one row per system, sorted by system id, with ``system_col``, the averaged ``pred_cols``
    and ``label_cols`` and ``n_clips``. Null system ids and null/NaN values are errors: the caller
    filters (and counts) such clips first, so no clip is dropped here without anyone knowing.
    """
    cols = list(pred_cols) + list(label_cols)
    if len(set(cols)) != len(cols) or system_col in cols:
        raise ValueError(f"system_means: column names must be distinct, got pred={list(pred_cols)} labels={list(label_cols)}")
    missing = [c for c in [system_col, *cols] if c not in df.columns]
    if missing:
        raise ValueError(f"system_means: missing columns {missing} (have {df.columns})")
    n_null_sys = df[system_col].null_count()
    if n_null_sys:
        raise ValueError(f"system_means: {n_null_sys} rows have no system id; filter them first")
    for c in cols:
        values = df[c].cast(pl.Float64)
        bad = values.null_count() + int(values.is_nan().sum() or 0)
        if bad:
            raise ValueError(f"system_means: column {c!r} has {bad} null/NaN values; filter them first")
    return _exact_group_means(df, system_col, cols)


def _exact_group_means(df: pl.DataFrame, key: str, cols: list[str]) -> pl.DataFrame:
    """Per ``key`` value (sorted), the exact mean of each column: ``math.fsum`` of its values / count.

    ``fsum`` is correctly rounded, so the result does not depend on the order of the rows: two systems
    whose clips hold the same values get bit-identical means (a running float sum would differ in the
    last bit with the row order and break ties in SRCC/KTAU at random).
    """
    keys = df[key].to_numpy()
    groups, inverse = np.unique(keys, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    parts = np.split(order, bounds) if len(order) else []
    out: dict[str, object] = {key: groups.tolist()}
    for c in cols:
        values = df[c].cast(pl.Float64).to_numpy()
        out[c] = [math.fsum(values[idx]) / len(idx) for idx in parts]
    out["n_clips"] = [len(idx) for idx in parts]
    schema = {key: df[key].dtype, **{c: pl.Float64 for c in cols}, "n_clips": pl.UInt32}
    return pl.DataFrame(out, schema=schema)


# ---------------------------------------------------------------------------------------------
# Evaluation of a prediction table against a truth table
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """Result of :func:`evaluate`: the long metrics table and what was matched, missing or excluded.

    ``table`` has columns ``set, level, axis, metric, value, n`` (``n`` = clips at utterance level,
    systems at system level; ``n == 0`` with ``value`` NaN means "not available", e.g. no system ids).
    """

    table: pl.DataFrame
    set_name: str
    n_pred: int
    n_truth: int
    n_matched: int
    missing_in_pred: tuple[str, ...]
    """Truth clip ids with no prediction (in truth order)."""
    missing_in_truth: tuple[str, ...]
    """Predicted clip ids absent from the truth (in prediction order)."""
    excluded_labels: dict[str, int]
    """Per axis (and composite): matched clips left out because their label is null/NaN."""
    has_systems: bool
    n_systems: int
    n_without_system: int
    """Matched clips with a null system id (left out of the system level; all of them when no ids)."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    """Warnings raised while computing (constant input, too few systems), with their context."""

    def summary_lines(self, max_ids: int = 5) -> list[str]:
        """Human-readable lines on matching, missing ids, exclusions and the system level."""
        lines = [
            f"[{self.set_name}] clips: truth {self.n_truth}, predictions {self.n_pred}, matched {self.n_matched}"
        ]
        if self.missing_in_pred:
            lines.append(
                f"[{self.set_name}] {len(self.missing_in_pred)} truth clips have no prediction "
                f"(first: {_first(self.missing_in_pred, max_ids)})"
            )
        if self.missing_in_truth:
            lines.append(
                f"[{self.set_name}] {len(self.missing_in_truth)} predicted clips are not in the truth "
                f"(first: {_first(self.missing_in_truth, max_ids)})"
            )
        excl = {a: k for a, k in self.excluded_labels.items() if k}
        if excl:
            lines.append(
                f"[{self.set_name}] clips left out for a missing label: "
                + ", ".join(f"{a} {k}" for a, k in excl.items())
            )
        if not self.has_systems:
            lines.append(f"[{self.set_name}] system level: n/a (the truth has no system ids)")
        else:
            msg = f"[{self.set_name}] system level: {self.n_systems} systems"
            if self.n_without_system:
                msg += f"; {self.n_without_system} clips without a system id left out of it"
            lines.append(msg)
        lines.extend(f"[{self.set_name}] warning: {n}" for n in self.notes)
        return lines


def _first(ids: Sequence[str], k: int) -> str:
    shown = ", ".join(ids[:k])
    return shown + (", …" if len(ids) > k else "")


def _require_columns(df: pl.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing columns {missing} (have {df.columns})")


def _check_unique_ids(ids: pl.Series, what: str) -> None:
    dup = ids.filter(ids.is_duplicated()).unique(maintain_order=True)
    if dup.len():
        raise ValueError(f"{what}: {dup.len()} clip ids occur more than once (first: {_first(dup.to_list(), 5)})")


def _metric_rows(
    set_name: str, level: str, axis: str, p: np.ndarray, y: np.ndarray, notes: list[str]
) -> list[dict[str, object]]:
    """The four metric rows for one (level, axis); one combined warning when correlations are undefined."""
    reason = undefined_reason(p, y)
    if reason:
        note = f"{level} level, {axis}: LCC/SRCC/KTAU undefined, {reason}; reported as NaN"
        notes.append(note)
        warnings.warn(f"[{set_name}] {note}", UndefinedMetricWarning, stacklevel=3)
    rows = []
    with warnings.catch_warnings():
        # Already reported once above, with context; the per-function warnings would repeat it.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for metric in METRIC_REGISTRY.values():
            value = metric.fn(p, y)
            rows.append(dict(set=set_name, level=level, axis=axis, metric=metric.name, value=value, n=int(p.size)))
    return rows


def evaluate(pred: pl.DataFrame, truth: pl.DataFrame, set_name: str = "eval",
             task: str | Task | None = None) -> Evaluation:
    """Score predictions against labels: (task axes + composite) × registered metrics × 2 levels.

    ``pred`` needs ``clip_id`` and the task's axes (default task ``track2``); ``truth`` needs the same and may have
    ``system``. Clips are joined on ``clip_id``; ids on one side only are returned in
    ``missing_in_pred``/``missing_in_truth``, not dropped silently. A prediction that is null/NaN or a
    duplicated id is an error. A null/NaN label leaves that clip out of that axis (and of the composite)
    and is counted in ``excluded_labels``. The composite is the per-clip mean of the task's composite axes, for
    predictions and labels alike. System level uses the truth's ``system`` column; clips whose system is
    null are left out of it and counted; with no system ids at all the system rows are NaN with ``n = 0``.
    Matched clips are scored in clip-id order, so the result does not depend on either table's row order.
    """
    tk = get_task(task)
    axes, comp = tk.axes, tk.composite_axes
    _require_columns(pred, ["clip_id", *axes], "predictions")
    _require_columns(truth, ["clip_id", *axes], "truth")
    if pred["clip_id"].null_count() or truth["clip_id"].null_count():
        raise ValueError("clip_id must not be null (predictions or truth)")

    p = pred.select(
        pl.col("clip_id").cast(pl.String),
        *[pl.col(a).cast(pl.Float64).alias(f"pred_{a}") for a in axes],
    )
    has_system_col = "system" in truth.columns
    t = truth.select(
        pl.col("clip_id").cast(pl.String),
        (pl.col("system").cast(pl.String) if has_system_col else pl.lit(None, dtype=pl.String)).alias("system"),
        *[pl.col(a).cast(pl.Float64).fill_nan(None).alias(f"true_{a}") for a in axes],
    )
    _check_unique_ids(p["clip_id"], "predictions")
    _check_unique_ids(t["clip_id"], "truth")

    bad_pred = p.filter(pl.any_horizontal([pl.col(f"pred_{a}").is_null() | pl.col(f"pred_{a}").is_nan() for a in axes]))
    if bad_pred.height:
        raise ValueError(
            f"predictions: {bad_pred.height} clips have a null/NaN score (first: {_first(bad_pred['clip_id'].to_list(), 5)})"
        )
    if all(t[f"true_{a}"].null_count() == t.height for a in axes):
        raise ValueError(f"truth: no labels (every {'/'.join(axes)} value is null or NaN)")

    pred_ids = set(p["clip_id"].to_list())
    truth_ids = set(t["clip_id"].to_list())
    missing_in_pred = tuple(i for i in t["clip_id"].to_list() if i not in pred_ids)
    missing_in_truth = tuple(i for i in p["clip_id"].to_list() if i not in truth_ids)

    # clip-id order: float sums (LCC, MSE) then see the same sequence whatever the input order
    joined = t.join(p, on="clip_id", how="inner").sort("clip_id")
    if joined.height == 0:
        raise ValueError(
            "predictions and truth share no clip ids "
            f"(predictions e.g. {_first(p['clip_id'].to_list(), 3)}; truth e.g. {_first(t['clip_id'].to_list(), 3)})"
        )
    # Plain arithmetic propagates nulls: a clip missing any label has no composite label.
    joined = joined.with_columns(
        (sum(pl.col(f"pred_{a}") for a in comp) / len(comp)).alias(f"pred_{COMPOSITE}"),
        (sum(pl.col(f"true_{a}") for a in comp) / len(comp)).alias(f"true_{COMPOSITE}"),
    )

    n_without_system = int(joined["system"].null_count())
    has_systems = n_without_system < joined.height
    with_system = joined.filter(pl.col("system").is_not_null())
    n_systems = int(with_system["system"].n_unique()) if has_systems else 0

    rows: list[dict[str, object]] = []
    notes: list[str] = []
    excluded: dict[str, int] = {}
    for axis in tk.all_axes:
        pc, tc = f"pred_{axis}", f"true_{axis}"
        valid = joined.filter(pl.col(tc).is_not_null())
        excluded[axis] = joined.height - valid.height
        rows += _metric_rows(set_name, "utterance", axis, valid[pc].to_numpy(), valid[tc].to_numpy(), notes)
    for axis in tk.all_axes:
        pc, tc = f"pred_{axis}", f"true_{axis}"
        if not has_systems:
            rows += [
                dict(set=set_name, level="system", axis=axis, metric=m, value=math.nan, n=0) for m in METRICS
            ]
            continue
        valid = with_system.filter(pl.col(tc).is_not_null())
        means = system_means(valid, [pc], [tc])
        rows += _metric_rows(set_name, "system", axis, means[pc].to_numpy(), means[tc].to_numpy(), notes)

    table = pl.DataFrame(rows, schema=LONG_SCHEMA)
    return Evaluation(
        table=table,
        set_name=set_name,
        n_pred=p.height,
        n_truth=t.height,
        n_matched=joined.height,
        missing_in_pred=missing_in_pred,
        missing_in_truth=missing_in_truth,
        excluded_labels=excluded,
        has_systems=has_systems,
        n_systems=n_systems,
        n_without_system=n_without_system,
        notes=tuple(notes),
    )


# ---------------------------------------------------------------------------------------------
# Presentation
# ---------------------------------------------------------------------------------------------


def _check_long(long_df: pl.DataFrame) -> None:
    _require_columns(long_df, LONG_COLUMNS, "metrics table")


def _groups(long_df: pl.DataFrame) -> list[tuple[str, str]]:
    """(set, level) pairs in order of first appearance."""
    keys = long_df.select("set", "level").unique(maintain_order=True)
    return list(zip(keys["set"].to_list(), keys["level"].to_list()))


def _axes_present(long_df: pl.DataFrame, task: str | Task | None = None) -> list[str]:
    """The axes in the table: the task's order first, then any others in order of appearance."""
    order = get_task(task).all_axes
    present = set(long_df["axis"].to_list())
    extra = [a for a in long_df["axis"].unique(maintain_order=True).to_list() if a not in order]
    return [a for a in order if a in present] + extra


def wide_table(long_df: pl.DataFrame, task: str | Task | None = None) -> pl.DataFrame:
    """One row per (set, level): columns ``{axis}_{metric}`` (axes in the task's order then composite,
    metrics in registry order), then ``{axis}_n``."""
    _check_long(long_df)
    axes = _axes_present(long_df, task)
    out = []
    for set_name, level in _groups(long_df):
        part = long_df.filter((pl.col("set") == set_name) & (pl.col("level") == level))
        row: dict[str, object] = {"set": set_name, "level": level}
        lookup = {(a, m): (v, n) for a, m, v, n in part.select("axis", "metric", "value", "n").iter_rows()}
        for a in axes:
            for m in METRICS:
                row[f"{a}_{m}"] = lookup.get((a, m), (None, None))[0]
        for a in axes:
            ns = [lookup[(a, m)][1] for m in METRICS if (a, m) in lookup]
            row[f"{a}_n"] = max(ns) if ns else None
        out.append(row)
    schema: dict[str, pl.DataType] = {"set": pl.String(), "level": pl.String()}
    schema |= {f"{a}_{m}": pl.Float64() for a in axes for m in METRICS}
    schema |= {f"{a}_n": pl.Int64() for a in axes}
    return pl.DataFrame(out, schema=schema)


def _fmt(value: float | None, n: int | None, digits: int) -> str:
    if n is None or n == 0 or value is None:
        return "n/a"
    if math.isnan(value):
        return "NaN"
    return f"{value:.{digits}f}"


def format_markdown(long_df: pl.DataFrame, digits: int = 3, task: str | Task | None = None) -> str:
    """Markdown tables, one per (set, level): rows = axes, columns = n and the four metrics.

    Cells with ``n == 0`` read ``n/a`` (e.g. system level without system ids); an undefined metric on
    real data (constant predictions) reads ``NaN``.
    """
    _check_long(long_df)
    axes = _axes_present(long_df, task)
    blocks = []
    for set_name, level in _groups(long_df):
        part = long_df.filter((pl.col("set") == set_name) & (pl.col("level") == level))
        lookup = {(a, m): (v, n) for a, m, v, n in part.select("axis", "metric", "value", "n").iter_rows()}
        lines = [
            f"**{set_name} — {level} level**",
            "",
            "| axis | n | " + " | ".join(METRICS) + " |",
            "| --- | ---: | " + " | ".join("---:" for _ in METRICS) + " |",
        ]
        for a in axes:
            cells = [lookup.get((a, m), (None, None)) for m in METRICS]
            ns = [n for _, n in cells if n is not None]
            n_txt = str(max(ns)) if ns and max(ns) > 0 else "n/a"
            lines.append(f"| {a} | {n_txt} | " + " | ".join(_fmt(v, n, digits) for v, n in cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
