"""Official system-level truth: a table of per-system means (MusicEval's ``system_mos_phase1.csv``:
``SYS,overall,textual``) that replaces the clip-label means at system level.

The official system means are computed by the organisers from all ratings, so they need not equal the mean of
the released clip labels over the clips one scores (SPEC section 9: "the official file where given"). With such
a table, :func:`evaluate_with_system_truth` keeps the utterance level from the clip labels (when given) and
scores the system level as: each system's prediction = the exact mean of its clips' predictions (systems from
the clip labels' ``system`` column, else from the task's id rule), against the official value. Systems on one
side only are left out and counted in the notes. The composite system label is the mean of the official axes.

The table is recognised by its header (:func:`is_system_table`): a ``SYS``/``system`` column and the task's
axes under their short or list-header names, nothing else.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import polars as pl

from mmmos.core.metrics import COMPOSITE, Evaluation, _metric_rows, system_means
from mmmos.core.tasks import Task, get_task
from mmmos.core.truth import TruthFileError, TruthFileMissing, _axis_columns, _find_column, _read_csv_text, _read_text

SYSTEM_COLUMNS = ("SYS", "system", "system_id")


def _header(path: Path) -> list[str]:
    text = _read_text(path)
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    return [h.strip().strip('"') for h in first.split(",")]


def is_system_table(path: str | Path, task: str | Task | None = None) -> bool:
    """True when ``path`` is a CSV whose header is a system column plus exactly the task's axes."""
    tk = get_task(task)
    path = Path(path)
    if not path.is_file() or path.suffix.lower() in (".parquet", ".jsonl", ".json"):
        return False
    try:
        cols = _header(path)
    except (TruthFileError, TruthFileMissing):
        return False
    lower = [c.lower() for c in cols]
    if len(cols) != tk.n_axes + 1 or not any(s.lower() in lower for s in SYSTEM_COLUMNS):
        return False
    df = pl.DataFrame({c: [] for c in dict.fromkeys(cols)}, schema={c: pl.String for c in dict.fromkeys(cols)})
    try:
        _axis_columns(df, path, tk)
    except TruthFileError:
        return False
    return True


def read_system_truth(path: str | Path, task: str | Task | None = None) -> pl.DataFrame:
    """``system, <axes>`` (Float64, finite, one row per system) from an official system table."""
    tk = get_task(task)
    path = Path(path)
    df = _read_csv_text(path, _read_text(path), "not a readable CSV")
    sys_col = _find_column(df, SYSTEM_COLUMNS)
    if sys_col is None:
        raise TruthFileError(f"{path}: no system column (one of {list(SYSTEM_COLUMNS)}); columns are {df.columns}")
    cols = _axis_columns(df, path, tk)
    out = df.select(pl.col(sys_col).str.strip_chars().alias("system"),
                    *[pl.col(c).str.strip_chars().cast(pl.Float64, strict=False).alias(a) for a, c in cols.items()])
    if out.height == 0:
        raise TruthFileError(f"{path}: no rows")
    for a in tk.axes:
        bad = out.filter(out[a].is_null() | ~out[a].is_finite().fill_null(False))
        if bad.height:
            raise TruthFileError(f"{path}: column {cols[a]!r} has {bad.height} missing or non-numeric values "
                                 f"(first: system {bad['system'][0]!r})")
    if out["system"].null_count() or (out["system"] == "").any():
        raise TruthFileError(f"{path}: a row has an empty system id")
    dup = out["system"].filter(out["system"].is_duplicated())
    if dup.len():
        raise TruthFileError(f"{path}: system {dup[0]!r} occurs more than once")
    return out


def _systems_of(pred: pl.DataFrame, truth: pl.DataFrame | None, tk: Task) -> pl.DataFrame:
    """``pred`` with a ``system`` column: the clip labels' when given, else the task's id rule."""
    if truth is not None:
        return pred.join(truth.select("clip_id", "system"), on="clip_id", how="left")
    return pred.with_columns(pl.Series("system", [tk.system_of(c, None) for c in pred["clip_id"].to_list()],
                                       dtype=pl.String))


def evaluate_with_system_truth(pred: pl.DataFrame, truth: pl.DataFrame | None, systems: pl.DataFrame,
                               set_name: str = "eval", task: str | Task | None = None,
                               source: str = "system table") -> Evaluation:
    """:func:`mmmos.core.metrics.evaluate` with the system level scored against ``systems`` (official means).

    ``truth`` (clip labels) may be None: the utterance level is then not available (NaN, ``n = 0``)."""
    from mmmos.core.metrics import LONG_SCHEMA, METRICS, evaluate

    tk = get_task(task)
    if truth is not None:
        base = evaluate(pred, truth, set_name=set_name, task=tk)
    else:
        rows = [dict(set=set_name, level="utterance", axis=a, metric=m, value=math.nan, n=0)
                for a in tk.all_axes for m in METRICS]
        base = Evaluation(table=pl.DataFrame(rows, schema=LONG_SCHEMA), set_name=set_name, n_pred=pred.height,
                          n_truth=0, n_matched=0, missing_in_pred=(), missing_in_truth=(),
                          excluded_labels={a: 0 for a in tk.all_axes}, has_systems=True, n_systems=0,
                          n_without_system=0, notes=())
    p = _systems_of(pred.select("clip_id", *[pl.col(a).cast(pl.Float64) for a in tk.axes]), truth, tk)
    n_without = int(p["system"].null_count())
    p = p.filter(pl.col("system").is_not_null())
    means = system_means(p.rename({a: f"pred_{a}" for a in tk.axes}), [f"pred_{a}" for a in tk.axes], [])
    off = systems.rename({a: f"true_{a}" for a in tk.axes})
    joined = means.join(off, on="system", how="inner").sort("system")
    only_pred = sorted(set(means["system"].to_list()) - set(off["system"].to_list()))
    only_off = sorted(set(off["system"].to_list()) - set(means["system"].to_list()))
    notes = list(base.notes)
    if only_pred:
        notes.append(f"{len(only_pred)} predicted systems are not in {source} (left out: {', '.join(only_pred[:5])})")
    if only_off:
        notes.append(f"{len(only_off)} systems of {source} have no predictions ({', '.join(only_off[:5])})")
    if n_without:
        notes.append(f"{n_without} predicted clips have no system id (left out of the system level)")
    if joined.height == 0:
        raise TruthFileError(f"{source}: no system in common with the predictions "
                             f"(predictions e.g. {means['system'].to_list()[:3]})")
    comp = tk.composite_axes
    joined = joined.with_columns((sum(pl.col(f"pred_{a}") for a in comp) / len(comp)).alias(f"pred_{COMPOSITE}"),
                                 (sum(pl.col(f"true_{a}") for a in comp) / len(comp)).alias(f"true_{COMPOSITE}"))
    rows: list[dict] = []
    for axis in tk.all_axes:
        rows += _metric_rows(set_name, "system", axis, joined[f"pred_{axis}"].to_numpy(),
                             joined[f"true_{axis}"].to_numpy(), notes)
    table = pl.concat([base.table.filter(pl.col("level") != "system"), pl.DataFrame(rows, schema=LONG_SCHEMA)])
    notes.append(f"system level: official means of {source} ({joined.height} systems), not clip-label means")
    return replace(base, table=table, has_systems=True, n_systems=joined.height, n_without_system=n_without,
                   notes=tuple(notes))


__all__ = ["SYSTEM_COLUMNS", "evaluate_with_system_truth", "is_system_table", "read_system_truth"]
