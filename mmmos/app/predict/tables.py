"""Output tables of ``mmmos predict``: one row per clip (optionally per window), CSV / JSONL / Parquet.

Columns: ``path, clip_id, [prompt], <task axes>, [<axis>_p00..], duration, n_windows, error``: ``prompt`` for a
task that declares a prompt input, the bin probabilities with ``distribution`` (predictors that compute them).
With ``per_window`` each clip's row is followed by one row per window with ``window_start``, ``window_end``
(seconds) and ``weight`` set (null on clip rows).  A row with ``error`` set has no scores.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from mmmos.core.outputs import check_output_file, replace_whole
from mmmos.core.tasks import get_task

from .errors import PredictorError
from .inputs import EXTRA_INPUTS

OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def results_table(results: Sequence, per_window: bool = False, axes: Sequence[str] | None = None, *,
                  inputs: Sequence[str] = ("audio",), distribution: bool = False):
    """A polars table of :class:`~.base.ClipResult` s (see the module doc); ``axes`` default to the default task's,
    ``inputs`` (the task's declared inputs) add their columns, ``distribution`` the bin columns."""
    import polars as pl

    axes = list(axes if axes is not None else get_task().axes)
    given = [i for i in inputs if i in EXTRA_INPUTS]
    k = next((r.dists.shape[1] for r in results if r.dists is not None), 0) if distribution else 0
    bins = [f"{a}_p{b:02d}" for a in axes for b in range(k)]
    rows = []
    for r in results:
        base = {"path": r.path, "clip_id": r.clip_id, **{c: getattr(r, c) for c in given}}
        sc = r.scores if r.scores is not None else [None] * len(axes)
        flat = r.dists.reshape(-1) if r.dists is not None else [None] * len(bins)
        row = {**base, **_floats(axes, sc), **_floats(bins, flat),
               "duration": r.duration, "n_windows": r.n_windows if r.error is None else None, "error": r.error}
        if per_window:
            row.update(window_start=None, window_end=None, weight=None)
        rows.append(row)
        if per_window:
            for s, e, w, ws in r.windows:
                rows.append({**base, **_floats(axes, ws), **dict.fromkeys(bins), "duration": r.duration,
                             "n_windows": None, "error": None, "window_start": s, "window_end": e, "weight": w})
    schema = {"path": pl.Utf8, "clip_id": pl.Utf8, **{c: pl.Utf8 for c in given}, **{a: pl.Float64 for a in axes},
              **{c: pl.Float64 for c in bins}, "duration": pl.Float64, "n_windows": pl.Int64, "error": pl.Utf8}
    if per_window:
        schema.update(window_start=pl.Float64, window_end=pl.Float64, weight=pl.Float64)
    df = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    order = ["path", "clip_id", *given] + (["window_start", "window_end", "weight"] if per_window else []) + \
        axes + bins + ["duration", "n_windows", "error"]
    return df.select(order)


def prompted_table(results: Sequence, axes: Sequence[str], distribution: bool = False):
    """:func:`results_table` of (audio, prompt) results (the Track 1 table's old name and signature)."""
    return results_table(results, False, axes, inputs=("audio", "prompt"), distribution=distribution)


def _floats(columns: Sequence[str], values) -> dict:
    return {c: (float(v) if v is not None else None) for c, v in zip(columns, values)}


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
    check_output_file(path)
    writers = {"csv": df.write_csv, "jsonl": df.write_ndjson}
    replace_whole(path, writers.get(fmt, df.write_parquet))


__all__ = ["OUTPUT_FORMATS", "output_format", "prompted_table", "results_table", "write_table"]
