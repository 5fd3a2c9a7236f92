""":func:`load_manifest`: pick the format of a list (or folder) and load it for a task."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import polars as pl

from mmmos.core.manifests.fields import RangeCheck, opt
from mmmos.core.manifests.formats import load_folder, load_jsonl, load_plain_csv, load_track2
from mmmos.core.manifests.inference import infer_split
from mmmos.core.manifests.prompted import EVAL_LIST_FORMAT, MUSICEVAL, attach_prompts, load_eval_list, load_mos_list
from mmmos.core.manifests.table import ManifestError, Problem
from mmmos.core.tasks import Task, get_task

FORMATS = ("auto", "track2", "combined", "jsonl", "csv", "folder", MUSICEVAL, EVAL_LIST_FORMAT)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _headerless_format(fields: list[str]) -> str | None:
    """``musiceval`` for a ``name.wav,<number>,...`` line, ``eval_list`` for one bare id, else None."""
    fields = [f.strip() for f in fields]
    if len(fields) >= 2 and fields[0].lower().endswith(".wav") and all(_is_number(f) for f in fields[1:]):
        return MUSICEVAL
    if len(fields) == 1 and fields[0] and "\t" not in fields[0] and " " not in fields[0]:
        return EVAL_LIST_FORMAT
    return None


def detect_format(path: Path) -> str:
    """The format of ``path`` from its extension, else from its first line."""
    if path.is_dir():
        return "folder"
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    try:
        with open(path, encoding="utf-8-sig") as f:
            head = f.read(65536)
    except UnicodeDecodeError as e:
        raise ManifestError(path, f"not UTF-8 text ({e})") from e
    except OSError as e:
        raise ManifestError(path, f"cannot read ({e.strerror or e})") from e
    stripped = head.lstrip()
    if not stripped:
        raise ManifestError(path, "empty file")
    if stripped.startswith("{"):
        return "jsonl"
    header = next(csv.reader(io.StringIO(stripped)), [])
    lower = [h.strip().lower() for h in header]
    if "sample_id" in lower and "data_path" in lower:
        return "track2"
    if "path" in lower or "clip_id" in lower:  # a label table keyed by clip id needs no paths
        return "csv"
    headerless = _headerless_format(header)
    if headerless is not None:
        return headerless
    raise ManifestError(
        path,
        "unrecognised manifest: expected a header with sample_id,data_path (Track 2 list) or "
        f"path or clip_id (plain CSV), JSON lines, or a MusicEval list (name.wav,overall,textual or one id a "
        f"line); got {','.join(h.strip() for h in header)!r}"
        " (answer files have no header: use read_answer_file)",
        1,
    )


def load_manifest(
    path: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    split: str | None = None,
    fmt: str = "auto",
    *,
    task: str | Task | None = None,
    check_labels: bool = True,
    problems: list[Problem] | None = None,
    prompts: str | os.PathLike | None = None,
    prompt: str | None = None,
) -> pl.DataFrame:
    """Load a manifest file or audio folder into the task's manifest table (:func:`columns`).

    ``fmt``: "auto" (by extension/content), "track2" (= "combined"), "jsonl", "csv" or "folder".
    ``task`` (default track2) gives the label columns, the system/domain rules and the score range.
    With ``check_labels`` a label outside the task's range is a :class:`ManifestError` naming the file,
    column and first bad lines.  Files of a folder whose names are not valid UTF-8 are left out of the
    table and appended to ``problems`` (a warning when no list is given), so callers can report them.
    Raises :class:`ManifestError` for a missing or malformed manifest.

    Track 1 (a task with prompts, see :mod:`mmmos.core.manifests.prompted`): also ``musiceval``
    (``*_mos_list.txt``; labels must be multiples of 0.2 in 1-5) and ``eval_list``; the ``prompt`` column is
    filled from the list, the ``prompt`` text, or the prompt tables (``prompts``: their folder); clips without
    a usable prompt keep a null prompt and go to ``problems`` (a warning when no list is given).
    """
    p = Path(path)
    t = get_task(task)
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if not p.exists():
        raise ManifestError(p, "manifest not found")
    root = Path(data_root) if data_root is not None else None
    explicit, from_name = opt(split), infer_split(p)
    if fmt == "auto":
        fmt = detect_format(p)
    df = _load(p, root, explicit, from_name, fmt, t, check_labels, problems)
    return attach_prompts(df, t, p, root, prompts=Path(prompts) if prompts is not None else None, prompt=prompt,
                          problems=problems)


def _load(p: Path, root: Path | None, explicit: str | None, from_name: str | None, fmt: str, t: Task,
          check_labels: bool, problems: list[Problem] | None) -> pl.DataFrame:
    if fmt == "folder":
        if not p.is_dir():
            raise ManifestError(p, "fmt='folder' needs a directory")
        return load_folder(p, explicit or from_name, t, problems)
    if not p.is_file():
        raise ManifestError(p, f"fmt={fmt!r} needs a file, got a directory")
    check = RangeCheck(t, p, enabled=check_labels)
    try:
        if fmt in ("track2", "combined"):
            df = load_track2(p, root, explicit or from_name, t, check)
        elif fmt == "jsonl":
            df = load_jsonl(p, root, explicit, from_name, t, check)
        elif fmt == MUSICEVAL:
            df = load_mos_list(p, root, explicit or from_name, t, check_labels)
        elif fmt == EVAL_LIST_FORMAT:
            df = load_eval_list(p, root, explicit or from_name, t)
        else:
            df = load_plain_csv(p, root, explicit, from_name, t, check)
    except OSError as e:  # unreadable (permissions, a vanished file): the user's to fix
        raise ManifestError(p, f"cannot read ({e.strerror or e})") from e
    check.raise_if_any()
    return df
