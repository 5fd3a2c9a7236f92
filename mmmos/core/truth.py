"""Score tables from files: labels (truth) and predictions, as ``clip_id, [system,] <task axes>``.

Ground-floor reading shared by the scorer (``mmmos score``), the ensemble stage and the report.

* :func:`read_truth` - labels. Manifests (Track 2 and combined lists, AES rating JSONL, plain CSV with a
  ``path`` column) go through :func:`mmmos.core.manifests.load_manifest`, which also derives system ids.
  Tables keyed by ``clip_id`` (Parquet, or a CSV with ``clip_id`` and no ``path``/``data_path`` column, as
  the toolkit writes them) are read as they are, with their ``system`` column if any. Labels may be null.
* :func:`read_predictions` - predictions: Parquet by extension; otherwise an answer file (first non-blank
  line = id + one number per axis, no header) or a headed CSV (an id column ``clip_id``/``wavID``/
  ``sample_id`` plus the axes under their short or long names). Scores must be finite.

Every problem with a file (missing, damaged, wrong columns, bad values) is a :class:`TruthFileError` (a
:class:`~mmmos.core.errors.UserError`) whose one-line message starts with the file's path.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from mmmos.core.errors import UserError
from mmmos.core.tasks import Task, get_task

ID_COLUMNS: tuple[str, ...] = ("clip_id", "wavID", "sample_id")
"""Accepted names (case-insensitive) of the clip id column in headed tables."""

_HEADER_FORMAT = "csv"  # the task's label_columns entry used to recognise headed-table columns


class TruthFileError(UserError, ValueError):
    """A label or prediction file is unreadable or malformed (message: ``<path>: <what>``)."""


class TruthFileMissing(UserError, FileNotFoundError):
    """A label or prediction file does not exist."""


# ---------------------------------------------------------------------------------------------
# text helpers
# ---------------------------------------------------------------------------------------------
def _read_text(path: Path) -> str:
    if not path.is_file():
        raise TruthFileMissing(f"{path}: no such file")
    try:
        return path.read_text(encoding="utf-8-sig")  # tolerate a UTF-8 BOM
    except UnicodeDecodeError as e:
        raise TruthFileError(f"{path}: not UTF-8 text ({e})") from None


def _first_content_line(text: str) -> str | None:
    for line in text.splitlines():
        if line.strip():
            return line
    return None


def is_answer_line(line: str, n_axes: int | None = None) -> bool:
    """True when ``line`` is data: an id followed by one number per axis (so not a header)."""
    n = n_axes or get_task().n_axes
    parts = line.rsplit(",", n)  # from the right: the id may be a quoted path with commas
    if len(parts) != n + 1 or not parts[0].strip().strip('"'):
        return False
    try:
        [float(x) for x in parts[1:]]
    except ValueError:
        return False
    return True


def is_answer_text(text: str, n_axes: int | None = None) -> bool:
    """True when the first non-blank line is data (id and numbers), i.e. there is no header."""
    first = _first_content_line(text)
    return first is not None and is_answer_line(first, n_axes)


def _read_parquet(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise TruthFileMissing(f"{path}: no such file")
    try:
        return pl.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - polars raises several types for a damaged file
        raise TruthFileError(f"{path}: not a readable Parquet file ({type(e).__name__}: {_one_line(e)})") from None


def _read_csv_text(path: Path, text: str, what: str) -> pl.DataFrame:
    try:
        return pl.read_csv(io.BytesIO(text.encode("utf-8")), infer_schema=False)
    except pl.exceptions.PolarsError as e:
        raise TruthFileError(f"{path}: {what} ({_one_line(e)})") from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]


# ---------------------------------------------------------------------------------------------
# column standardisation
# ---------------------------------------------------------------------------------------------
def _find_column(df: pl.DataFrame, names: Sequence[str]) -> str | None:
    lower = {c.lower(): c for c in df.columns}
    for n in names:
        if n.lower() in lower:
            return lower[n.lower()]
    return None


def _axis_columns(df: pl.DataFrame, path: Path, task: Task) -> dict[str, str]:
    """axis -> the table's column holding it (the short name first, then the task's header names)."""
    out: dict[str, str] = {}
    for axis in task.axes:
        col = _find_column(df, [axis])
        if col is None:
            col = next((c for c in df.columns if task.axis_of_header(_HEADER_FORMAT, c) == axis), None)
        if col is None:
            names = [axis, *(h for h, a in task.label_columns.get(_HEADER_FORMAT, {}).items()
                             if a == axis and h != axis.lower())]
            raise TruthFileError(f"{path}: no {axis} column (one of {names}); columns are {df.columns}")
        out[axis] = col
    return out


def _check_values(out: pl.DataFrame, path: Path, axis: str, labels_may_be_null: bool) -> pl.DataFrame:
    raw = out[axis]
    values = raw.cast(pl.Float64, strict=False)
    unparsable = out.filter(values.is_null() & raw.is_not_null())
    if unparsable.height:
        bad = unparsable.select("clip_id", axis).row(0)
        raise TruthFileError(f"{path}: column {axis!r} has {unparsable.height} non-numeric values "
                             f"(e.g. {bad[0]!r}: {bad[1]!r})")
    out = out.with_columns(values.alias(axis))
    if not labels_may_be_null:
        bad_mask = out[axis].is_null() | ~out[axis].is_finite().fill_null(False)
        if bad_mask.any():
            first = out.filter(bad_mask)["clip_id"][0]
            raise TruthFileError(f"{path}: column {axis!r} has {int(bad_mask.sum())} missing or non-finite "
                                 f"scores (first: {first!r})")
    return out


def standardise(df: pl.DataFrame, path: Path, task: Task, *, labels_may_be_null: bool,
                keep_system: bool) -> pl.DataFrame:
    """Select and type ``clip_id, [system,] <axes>`` from a headed table; strict checks naming ``path``."""
    id_col = _find_column(df, ID_COLUMNS)
    if id_col is None:
        raise TruthFileError(f"{path}: no clip id column (one of {list(ID_COLUMNS)}); columns are {df.columns}")
    axis_cols = _axis_columns(df, path, task)
    if df.height == 0:
        raise TruthFileError(f"{path}: no rows")
    if df[id_col].null_count():
        raise TruthFileError(f"{path}: {df[id_col].null_count()} rows have an empty clip id")
    out = df.select(
        pl.col(id_col).cast(pl.String).alias("clip_id"),
        *([pl.col("system").cast(pl.String)] if keep_system and "system" in df.columns else []),
        *[pl.col(c).alias(a) for a, c in axis_cols.items()],
    )
    for axis in task.axes:
        out = _check_values(out, path, axis, labels_may_be_null)
    dup = out["clip_id"].filter(out["clip_id"].is_duplicated()).unique(maintain_order=True)
    if dup.len():
        raise TruthFileError(f"{path}: {dup.len()} clip ids occur more than once (first: {dup[0]!r})")
    return out


# ---------------------------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------------------------
def read_answer(path: str | Path, task: str | Task | None = None) -> pl.DataFrame:
    """A challenge answer file (no header) as ``clip_id, <axes>``; a malformed file is a TruthFileError."""
    from mmmos.core.manifests import read_answer_file

    path = Path(path)
    if not path.is_file():
        raise TruthFileMissing(f"{path}: no such file")
    try:
        df = read_answer_file(path, task=task)
    except UserError:
        raise
    except (ValueError, OSError) as e:  # ManifestError names the file and line
        msg = _one_line(e)
        raise TruthFileError(msg if str(path) in msg else f"{path}: {msg}") from None
    return df.select("clip_id", *get_task(task).axes)


def read_predictions(path: str | Path, task: str | Task | None = None) -> pl.DataFrame:
    """Read predictions as ``clip_id, <axes>`` (Float64); see the module doc for the formats."""
    tk = get_task(task)
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        return standardise(_read_parquet(path), path, tk, labels_may_be_null=False, keep_system=False)
    text = _read_text(path)
    if _first_content_line(text) is None:
        raise TruthFileError(f"{path}: empty prediction file")
    if is_answer_text(text, tk.n_axes):
        return read_answer(path, tk)
    bad_row = _bad_first_answer_row(text, tk)
    if bad_row is not None:  # an answer file whose first row has a bad value: not a header
        raise TruthFileError(f"{path}: line 1 is an answer row ({tk.n_axes + 1} fields, like the rest) but "
                             f"{bad_row} is not a number; expected `id,{','.join(tk.axes)}` with numbers")
    df = _read_csv_text(path, text, "not an answer file and not a readable CSV")
    return standardise(df, path, tk, labels_may_be_null=False, keep_system=False)


def _bad_first_answer_row(text: str, tk: Task) -> str | None:
    """The non-numeric value (quoted) when the first line is an answer row with a bad value - it has the answer
    file's field count, names no column a header would, and the next line is an answer row - else None."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2 or not is_answer_line(lines[1], tk.n_axes):
        return None
    parts = lines[0].rsplit(",", tk.n_axes)
    if len(parts) != tk.n_axes + 1:
        return None
    names = {c.lower() for c in ID_COLUMNS} | {a.lower() for a in tk.axes}
    if any(p.strip().strip('"').lower() in names for p in parts):
        return None  # a header after all
    for v in parts[1:]:
        try:
            float(v)
        except ValueError:
            return repr(v.strip())
    return None


def _is_clip_table(path: Path) -> bool:
    """A headed CSV keyed by clip_id that is not a manifest (no path/data_path column)."""
    first = _first_content_line(_read_text(path)) or ""
    header = [h.strip().strip('"').lower() for h in first.split(",")]
    return "clip_id" in header and "path" not in header and "data_path" not in header


def read_truth(path: str | Path, data_root: str | Path | None = None,
               task: str | Task | None = None) -> pl.DataFrame:
    """Read labels as ``clip_id, system, <axes>`` (labels and system may be null); see the module doc."""
    from mmmos.core.manifests import load_manifest

    tk = get_task(task)
    path = Path(path)
    if not path.exists():
        raise TruthFileMissing(f"{path}: no such file")
    if path.suffix.lower() == ".parquet":
        df = _read_parquet(path)
    elif path.is_file() and path.suffix.lower() not in (".jsonl", ".ndjson", ".json") and _is_clip_table(path):
        df = _read_csv_text(path, _read_text(path), "not a readable CSV")
    else:
        try:
            df = load_manifest(path, data_root=data_root, task=tk)
        except UserError:
            raise
        except (ValueError, OSError) as e:  # ManifestError names the file (and line)
            msg = _one_line(e)
            raise TruthFileError(msg if str(path) in msg else f"{path}: {msg}") from None
    out = standardise(df, path, tk, labels_may_be_null=True, keep_system=True)
    if "system" not in out.columns:
        out = out.with_columns(pl.lit(None, dtype=pl.String).alias("system"))
    return out.select("clip_id", "system", *tk.axes)


__all__ = ["ID_COLUMNS", "TruthFileError", "TruthFileMissing", "is_answer_line", "is_answer_text", "read_answer",
           "read_predictions", "read_truth", "standardise"]
