"""Field-level reading shared by the loaders: CSV records, paths, labels, domains, the label-range check."""
from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from mmmos.core.manifests.table import ManifestError
from mmmos.core.tasks import Task

PLACEHOLDER = "/your_path/"
_PLACEHOLDER_RE = re.compile(r"^/?your_path/")
_NULL_TEXT = ("", "nan", "na", "null", "none")
_SHOW_BAD = 5  # out-of-range rows quoted in the error message


def opt(text: str | None) -> str | None:
    """Stripped text, or None when empty."""
    if text is None:
        return None
    text = text.strip()
    return text or None


def strip_placeholder(raw: str) -> str:
    """``/your_path/a/b.wav`` -> ``a/b.wav``; other strings unchanged."""
    m = _PLACEHOLDER_RE.match(raw)
    return raw[m.end():] if m else raw


def resolve(raw: str | None, base_dir: Path, data_root: Path | None) -> tuple[str | None, str | None]:
    """(absolute path or None, path as written minus placeholder - used for inference)."""
    if raw is None or not raw.strip():
        return None, None
    rel = strip_placeholder(raw.strip())
    if os.path.isabs(rel):
        return os.path.normpath(rel), rel
    root = data_root if data_root is not None else base_dir
    return os.path.normpath(os.path.join(os.path.abspath(root), rel)), rel


def parse_label(text: str | None, where: Path, line: int, name: str) -> float | None:
    """A label field as a float; None when empty/NaN-like; ManifestError when not a finite number."""
    if text is None or text.strip().lower() in _NULL_TEXT:
        return None
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        raise ManifestError(where, f"label {name} is not a number: {text!r}", line) from None
    if not math.isfinite(value):
        raise ManifestError(where, f"label {name} is not finite: {text!r}", line)
    return value


def json_label(value: object, where: Path, line: int, name: str) -> float | None:
    """A JSON label: one number or a list of ratings (their mean); None when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ManifestError(where, f"{name}: expected ratings, got a boolean", line)
    if isinstance(value, (int, float)):
        ratings = [value]
    elif isinstance(value, list):
        if not value:
            raise ManifestError(where, f"{name}: empty list of ratings", line)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ManifestError(where, f"{name}: ratings must be numbers, got {value!r}", line)
        ratings = value
    else:
        raise ManifestError(where, f"{name}: expected a list of ratings or a number, got {value!r}", line)
    mean = float(np.mean(np.asarray(ratings, dtype=np.float64)))
    if not math.isfinite(mean):
        raise ManifestError(where, f"{name}: ratings are not finite: {value!r}", line)
    return mean


def parse_domain(text: str | None, task: Task, where: Path, line: int) -> str | None:
    """A ``domain`` field by the task's vocabulary; None when empty; ManifestError when unknown."""
    if text is None or not text.strip():
        return None
    domain = task.domain_named(text)
    if domain is None:
        raise ManifestError(where, f"unknown domain {text.strip()!r} (expected one of {', '.join(task.domains)})", line)
    return domain


def csv_rows(path: Path) -> Iterable[tuple[int, list[str]]]:
    """(line number, fields) for each non-blank record; line = where the record ends."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            try:
                for fields in reader:
                    if not fields or all(not x.strip() for x in fields):
                        continue
                    yield reader.line_num, fields
            except csv.Error as e:
                raise ManifestError(path, f"malformed CSV ({e})", reader.line_num) from e
    except UnicodeDecodeError as e:
        raise ManifestError(path, f"not UTF-8 text ({e})") from e


def csv_header(path: Path) -> tuple[Iterator[tuple[int, list[str]]], list[str], list[str]]:
    """The CSV rows iterator past the header, the header names and their lower-case forms."""
    it = iter(csv_rows(path))
    try:
        _, header = next(it)
    except StopIteration:
        raise ManifestError(path, "empty file (no header)") from None
    names = [h.strip() for h in header]
    return it, names, [n.lower() for n in names]


def check_field_count(path: Path, line: int, fields: list[str], header: list[str]) -> None:
    if len(fields) != len(header):
        raise ManifestError(path, f"expected {len(header)} fields ({','.join(header)}), got {len(fields)}", line)


class RangeCheck:
    """Collects labels outside the task's score range while a list loads; :meth:`raise_if_any` reports them.

    A label on another scale (0-100 read as 0-10, or negative) would otherwise be trained on silently.
    """

    def __init__(self, task: Task, path: Path, enabled: bool = True):
        self.task, self.path, self.enabled = task, path, enabled
        self.bad: dict[str, list[tuple[int, float]]] = {}

    def add(self, line: int, column: str, value: float | None) -> float | None:
        if self.enabled and value is not None and not self.task.in_range(value):
            self.bad.setdefault(column, []).append((line, value))
        return value

    def raise_if_any(self) -> None:
        if not self.bad:
            return
        column, rows = next(iter(self.bad.items()))
        shown = ", ".join(f"line {line}: {value:g}" for line, value in rows[:_SHOW_BAD])
        more = f" and {len(rows) - _SHOW_BAD} more" if len(rows) > _SHOW_BAD else ""
        others = f"; also in {', '.join(list(self.bad)[1:])}" if len(self.bad) > 1 else ""
        lo, hi = self.task.score_range
        raise ManifestError(
            self.path, f"column {column}: labels outside the task's range {lo:g}-{hi:g} ({shown}{more}){others}; "
            f"rescale them to {lo:g}-{hi:g} (task {self.task.name})")
