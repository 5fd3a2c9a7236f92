"""Output tables of ``mmmos predict``: one row per clip (optionally per window), CSV / JSONL / Parquet.

Columns: ``path, clip_id, <task axes>, duration, n_windows, error``; with ``per_window`` each clip's row is
followed by one row per window with ``window_start``, ``window_end`` (seconds) and ``weight`` set (null on
clip rows).  A row with ``error`` set has no scores.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from mmmos.core.tasks import get_task

from .errors import PredictorError

OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def results_table(results: Sequence, per_window: bool = False, axes: Sequence[str] | None = None):
    """A polars table of :class:`ClipResult` s (see the module doc); ``axes`` default to the default task's."""
    import polars as pl

    axes = list(axes if axes is not None else get_task().axes)
    rows = []
    for r in results:
        base = {"path": r.path, "clip_id": r.clip_id}
        sc = r.scores if r.scores is not None else [None] * len(axes)
        row = {**base, **{a: (float(v) if v is not None else None) for a, v in zip(axes, sc)},
               "duration": r.duration, "n_windows": len(r.windows) if r.error is None else None, "error": r.error}
        if per_window:
            row.update(window_start=None, window_end=None, weight=None)
        rows.append(row)
        if per_window:
            for s, e, w, ws in r.windows:
                rows.append({**base, **{a: float(v) for a, v in zip(axes, ws)}, "duration": r.duration,
                             "n_windows": None, "error": None, "window_start": s, "window_end": e, "weight": w})
    schema = {"path": pl.Utf8, "clip_id": pl.Utf8, **{a: pl.Float64 for a in axes}, "duration": pl.Float64,
              "n_windows": pl.Int64, "error": pl.Utf8}
    if per_window:
        schema.update(window_start=pl.Float64, window_end=pl.Float64, weight=pl.Float64)
    df = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    order = ["path", "clip_id"] + (["window_start", "window_end", "weight"] if per_window else []) + \
        axes + ["duration", "n_windows", "error"]
    return df.select(order)


def output_format(path: str | None) -> str:
    """"csv", "jsonl" or "parquet" from an output file name (None: CSV to stdout)."""
    if path is None:
        return "csv"
    fmt = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise PredictorError(f"--out {path}: unknown output format; use a .csv, .jsonl or .parquet file name")
    return fmt


def write_table(df, path: str | None) -> None:
    """Write ``df`` as CSV/JSONL/Parquet by extension; CSV to stdout when ``path`` is None."""
    fmt = output_format(path)
    if path is None:
        sys.stdout.write(df.write_csv())
        sys.stdout.flush()
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        df.write_csv(path)
    elif fmt == "jsonl":
        df.write_ndjson(path)
    else:
        df.write_parquet(path)


__all__ = ["OUTPUT_FORMATS", "output_format", "results_table", "write_table"]
