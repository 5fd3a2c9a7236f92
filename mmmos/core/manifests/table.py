"""The manifest table: its columns (the task's axes are the label columns), errors and doubtful-row records."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import polars as pl

from mmmos.core.errors import UserError
from mmmos.core.tasks import Task, get_task

#: The columns every manifest has before the task's label columns.
KEY_COLUMNS: tuple[str, ...] = ("clip_id", "path", "system", "domain", "split")
#: The text prompt of a clip (Track 1); after the label columns, null for tasks without prompts.
PROMPT_COLUMN = "prompt"


class ManifestError(UserError, ValueError):
    """A manifest (or answer file) is malformed; the message names the file and line."""

    def __init__(self, path: str | os.PathLike, message: str, line: int | None = None):
        self.path = os.fsdecode(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Problem:
    """One doubtful row of a manifest, found by :func:`validate_manifest` or by a loader.

    ``kind`` is one of ``no_clip_id``, ``no_path``, ``duplicate_id``, ``missing_file``, ``label_out_of_range``,
    ``missing_label``, ``missing_prompt``, ``empty_prompt``, ``no_prompt_id`` (table rows; ``row`` is the
    0-based row index) or ``bad_file_name`` (a file a folder scan
    could not list: ``row`` is -1, ``clip_id`` the name with undecodable bytes escaped, ``path`` likewise).
    """

    kind: str
    row: int
    clip_id: str | None
    message: str
    path: str | None = None

    def __str__(self) -> str:
        return f"row {self.row} ({self.clip_id}): {self.kind}: {self.message}"


def columns(task: str | Task | None = None) -> tuple[str, ...]:
    """The manifest columns for ``task``: :data:`KEY_COLUMNS`, the task's axes, then ``prompt``."""
    return (*KEY_COLUMNS, *get_task(task).axes, PROMPT_COLUMN)


def schema(task: str | Task | None = None) -> dict[str, Any]:
    """Column -> polars dtype for ``task``'s manifest table."""
    return {**{c: pl.String for c in KEY_COLUMNS}, **{a: pl.Float64 for a in get_task(task).axes},
            PROMPT_COLUMN: pl.String}


def empty_manifest(task: str | Task | None = None) -> pl.DataFrame:
    """A manifest table with no rows."""
    sch = schema(task)
    return pl.DataFrame({c: [] for c in sch}, schema=sch)


def to_frame(rows: list[dict[str, Any]], task: Task) -> pl.DataFrame:
    """The manifest table of ``rows`` (dicts keyed by column; absent keys are null)."""
    sch = schema(task)
    return pl.DataFrame({c: [r.get(c) for r in rows] for c in sch}, schema=sch)


# The default task's layout under the names callers imported before tasks existed.
AXES: tuple[str, ...] = get_task().axes
COLUMNS: tuple[str, ...] = columns()
SCHEMA: dict[str, Any] = schema()
