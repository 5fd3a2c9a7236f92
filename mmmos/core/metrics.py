"""Challenge metrics for the four quality axes (PQ, PC, CE, CU) and their composite.

Per axis and for the composite (mean of the four axes per clip) the AudioMOS 2025 Track 2 metrics are
MSE, LCC (Pearson), SRCC (Spearman) and KTAU (Kendall tau-b), each at utterance level and at system
level (predictions and labels averaged per system id, equal weight per clip, then the same metrics over
the system means).

The metric functions are thin wrappers over numpy/scipy so the numbers equal scipy's exactly; what they
add is a defined answer for degenerate input: constant input or fewer than two pairs gives NaN with an
:class:`UndefinedMetricWarning` instead of an exception, and NaN/inf in the input is an error (the caller
decides which pairs to drop, and counts them).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy import stats

AXES: tuple[str, ...] = ("PQ", "PC", "CE", "CU")
COMPOSITE = "composite"
ALL_AXES: tuple[str, ...] = AXES + (COMPOSITE,)
METRICS: tuple[str, ...] = ("MSE", "LCC", "SRCC", "KTAU")
LEVELS: tuple[str, ...] = ("utterance", "system")

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


METRIC_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "MSE": mse,
    "LCC": lcc,
    "SRCC": srcc,
    "KTAU": ktau,
}


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
    return (
        df.group_by(system_col)
        .agg(*[pl.col(c).cast(pl.Float64).mean() for c in cols], pl.len().alias("n_clips"))
        .sort(system_col)
    )


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
        for metric in METRICS:
            value = METRIC_FUNCTIONS[metric](p, y)
            rows.append(dict(set=set_name, level=level, axis=axis, metric=metric, value=value, n=int(p.size)))
    return rows


def evaluate(pred: pl.DataFrame, truth: pl.DataFrame, set_name: str = "eval") -> Evaluation:
    """Score predictions against labels: 5 axes (4 + composite) × 4 metrics × 2 levels.

    ``pred`` needs ``clip_id, PQ, PC, CE, CU`` (0–10); ``truth`` needs the same and may have
    ``system``. Clips are joined on ``clip_id``; ids on one side only are returned in
    ``missing_in_pred``/``missing_in_truth``, not dropped silently. A prediction that is null/NaN or a
    duplicated id is an error. A null/NaN label leaves that clip out of that axis (and of the composite)
    and is counted in ``excluded_labels``. The composite is the per-clip mean of the four axes, for
    predictions and labels alike. System level uses the truth's ``system`` column; clips whose system is
    null are left out of it and counted; with no system ids at all the system rows are NaN with ``n = 0``.
    """
    _require_columns(pred, ["clip_id", *AXES], "predictions")
    _require_columns(truth, ["clip_id", *AXES], "truth")
    if pred["clip_id"].null_count() or truth["clip_id"].null_count():
        raise ValueError("clip_id must not be null (predictions or truth)")

    p = pred.select(
        pl.col("clip_id").cast(pl.String),
        *[pl.col(a).cast(pl.Float64).alias(f"pred_{a}") for a in AXES],
    )
    has_system_col = "system" in truth.columns
    t = truth.select(
        pl.col("clip_id").cast(pl.String),
        (pl.col("system").cast(pl.String) if has_system_col else pl.lit(None, dtype=pl.String)).alias("system"),
        *[pl.col(a).cast(pl.Float64).fill_nan(None).alias(f"true_{a}") for a in AXES],
    )
    _check_unique_ids(p["clip_id"], "predictions")
    _check_unique_ids(t["clip_id"], "truth")

    bad_pred = p.filter(pl.any_horizontal([pl.col(f"pred_{a}").is_null() | pl.col(f"pred_{a}").is_nan() for a in AXES]))
    if bad_pred.height:
        raise ValueError(
            f"predictions: {bad_pred.height} clips have a null/NaN score (first: {_first(bad_pred['clip_id'].to_list(), 5)})"
        )
    if all(t[f"true_{a}"].null_count() == t.height for a in AXES):
        raise ValueError("truth: no labels (every PQ/PC/CE/CU value is null or NaN)")

    pred_ids = set(p["clip_id"].to_list())
    truth_ids = set(t["clip_id"].to_list())
    missing_in_pred = tuple(i for i in t["clip_id"].to_list() if i not in pred_ids)
    missing_in_truth = tuple(i for i in p["clip_id"].to_list() if i not in truth_ids)

    joined = t.join(p, on="clip_id", how="inner", maintain_order="left")
    if joined.height == 0:
        raise ValueError(
            "predictions and truth share no clip ids "
            f"(predictions e.g. {_first(p['clip_id'].to_list(), 3)}; truth e.g. {_first(t['clip_id'].to_list(), 3)})"
        )
    # Plain arithmetic propagates nulls: a clip missing any label has no composite label.
    joined = joined.with_columns(
        (sum(pl.col(f"pred_{a}") for a in AXES) / len(AXES)).alias(f"pred_{COMPOSITE}"),
        (sum(pl.col(f"true_{a}") for a in AXES) / len(AXES)).alias(f"true_{COMPOSITE}"),
    )

    n_without_system = int(joined["system"].null_count())
    has_systems = n_without_system < joined.height
    with_system = joined.filter(pl.col("system").is_not_null())
    n_systems = int(with_system["system"].n_unique()) if has_systems else 0

    rows: list[dict[str, object]] = []
    notes: list[str] = []
    excluded: dict[str, int] = {}
    for axis in ALL_AXES:
        pc, tc = f"pred_{axis}", f"true_{axis}"
        valid = joined.filter(pl.col(tc).is_not_null())
        excluded[axis] = joined.height - valid.height
        rows += _metric_rows(set_name, "utterance", axis, valid[pc].to_numpy(), valid[tc].to_numpy(), notes)
    for axis in ALL_AXES:
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


def _axes_present(long_df: pl.DataFrame) -> list[str]:
    present = set(long_df["axis"].to_list())
    extra = [a for a in long_df["axis"].unique(maintain_order=True).to_list() if a not in ALL_AXES]
    return [a for a in ALL_AXES if a in present] + extra


def wide_table(long_df: pl.DataFrame) -> pl.DataFrame:
    """One row per (set, level): columns ``{axis}_{metric}`` (axes in PQ, PC, CE, CU, composite order,
    metrics in MSE, LCC, SRCC, KTAU order), then ``{axis}_n``."""
    _check_long(long_df)
    axes = _axes_present(long_df)
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


def format_markdown(long_df: pl.DataFrame, digits: int = 3) -> str:
    """Markdown tables, one per (set, level): rows = axes, columns = n and the four metrics.

    Cells with ``n == 0`` read ``n/a`` (e.g. system level without system ids); an undefined metric on
    real data (constant predictions) reads ``NaN``.
    """
    _check_long(long_df)
    axes = _axes_present(long_df)
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
