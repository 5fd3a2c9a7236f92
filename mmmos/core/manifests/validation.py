"""Doubtful rows of a loaded manifest table: reported, not dropped (except by :func:`drop_duplicate_ids`)."""
from __future__ import annotations

import math
import os

import polars as pl

from mmmos.core.manifests.table import KEY_COLUMNS, Problem
from mmmos.core.tasks import Task, get_task


def validate_manifest(
    df: pl.DataFrame,
    *,
    require_paths: bool = True,
    check_files: bool = False,
    require_labels: bool = False,
    task: str | Task | None = None,
) -> list[Problem]:
    """List doubtful rows: empty ids, rows without a path (if ``require_paths``), duplicate ids
    (every occurrence after the first), files that do not exist (if ``check_files``), labels outside
    the task's range, and null labels (if ``require_labels``).  Problems are ordered by row.
    """
    t = get_task(task)
    needed = (*KEY_COLUMNS, *t.axes)  # the prompt column is optional (tables built before it existed)
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"not a manifest table: missing columns {missing}")
    problems: list[Problem] = []
    first_row: dict[str, int] = {}
    cols = {c: df.get_column(c).to_list() for c in needed}
    for i in range(df.height):
        cid = cols["clip_id"][i]
        if cid is None or cid == "":
            problems.append(Problem("no_clip_id", i, cid, "row has no clip_id"))
        elif cid in first_row:
            problems.append(Problem("duplicate_id", i, cid, f"clip_id already used by row {first_row[cid]}"))
        else:
            first_row[cid] = i
        p = cols["path"][i]
        if p is None or p == "":
            if require_paths:
                problems.append(Problem("no_path", i, cid, "row has no audio path"))
        elif check_files and not os.path.isfile(p):
            problems.append(Problem("missing_file", i, cid, f"audio file not found: {p}"))
        for axis in t.axes:
            v = cols[axis][i]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                if require_labels:
                    problems.append(Problem("missing_label", i, cid, f"{axis} label is missing"))
            elif not t.in_range(v):
                problems.append(Problem("label_out_of_range", i, cid, f"{axis} = {v} is outside {t.lo:g}-{t.hi:g}"))
    return problems


def drop_duplicate_ids(df: pl.DataFrame, task: str | Task | None = None) -> tuple[pl.DataFrame, list[Problem]]:
    """Keep the first row of each clip_id; return the table and one Problem per removed row."""
    problems = [p for p in validate_manifest(df, require_paths=False, task=task) if p.kind == "duplicate_id"]
    if not problems:
        return df, []
    drop = {p.row for p in problems}
    keep = [i for i in range(df.height) if i not in drop]
    return df[keep], problems
