"""Read MusicEval (AudioMOS 2025 Track 1) lists and prompt tables into one table of clips with prompts.

Files (SPEC section 9):

* ``sets/{train,dev}_mos_list.txt`` - no header, ``<name>.wav,<overall>,<textual>`` per line; every label a
  multiple of 0.2 on [1, 5] (the mean of 5 integer ratings). Anything else is a :class:`MusicEvalError`
  naming the file and line.
* ``eval_list.txt`` - one clip id (no ``.wav``) per line; no labels.
* ``prompt_info.txt`` - tab-separated, header with ``id`` and ``text`` (other columns ignored), keyed by
  prompt id (``P044``).
* ``demo_prompt_info.txt`` - same layout, keyed by the full file name with ``.wav``; it holds the prompts of
  the systems in :data:`~mmmos.core.tasks.track1.DEMO_PROMPT_SYSTEMS`.
* a plain CSV for one's own clips: header ``path,prompt`` plus optional label columns (``MI``/``TA`` or
  ``overall``/``textual``) and ``system``, ``clip_id``; labels only need to lie in [1, 5].

Every reader returns :class:`MusicEvalSet`: a polars table ``clip_id, path, system, prompt_id, prompt,
<task axes>`` and a list of :class:`~mmmos.core.manifests.Problem` rows. ``clip_id`` is the name without
``.wav`` (as in ``eval_list.txt`` and the answer file). A clip whose prompt cannot be found, or whose prompt
is empty, stays in the table with a null prompt and is reported as a problem naming the clip and the table
searched; callers decide whether to drop it. Repeated clip ids are errors (a repeated clip would be trained
or scored twice).
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from mmmos.core.manifests.table import ManifestError, Problem
from mmmos.core.tasks import Task, get_task
from mmmos.core.tasks.track1 import DEMO_PROMPT_SYSTEMS, TRACK1, clip_name, prompt_id_of

PROMPT_INFO = "prompt_info.txt"
DEMO_PROMPT_INFO = "demo_prompt_info.txt"
EVAL_LIST_FILE = "eval_list.txt"
SPLITS = ("train", "dev")
KEY_COLUMNS = ("clip_id", "path", "system", "prompt_id", "prompt")
_STEP = 0.2  # labels are means of 5 integer ratings


class MusicEvalError(ManifestError):
    """A MusicEval file is missing or malformed; the message names the file (and line).

    A :class:`~mmmos.core.manifests.ManifestError` (so a ``UserError`` and a ``ValueError``): whoever loads
    lists catches one kind of error whatever the format."""


@dataclass
class MusicEvalSet:
    """Clips with prompts (``table``) and the rows that need attention (``problems``)."""

    table: pl.DataFrame
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class PromptTables:
    """Prompt texts: by prompt id (``prompt_info.txt``) and by file name (``demo_prompt_info.txt``)."""

    by_prompt: dict[str, str]
    by_file: dict[str, str]
    prompt_source: str = PROMPT_INFO
    file_source: str = DEMO_PROMPT_INFO


# ---------------------------------------------------------------------------------------------
# low-level readers
# ---------------------------------------------------------------------------------------------
def _lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, text) of the non-blank lines of a UTF-8 file (BOM tolerated)."""
    if not path.is_file():
        raise MusicEvalError(path, "file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise MusicEvalError(path, f"not UTF-8 text ({e})") from None
    return [(i, ln.rstrip("\r")) for i, ln in enumerate(text.split("\n"), 1) if ln.strip()]


def _label(text: str, path: Path, line: int, column: str, lo: float, hi: float, step: float | None) -> float:
    """A finite label in [lo, hi]; with ``step``, also a multiple of it (to 1e-6)."""
    try:
        value = float(text.strip())
    except ValueError:
        raise MusicEvalError(path, f"{column} is not a number: {text.strip()!r}", line) from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise MusicEvalError(path, f"{column} {text.strip()!r} is outside [{lo:g}, {hi:g}]", line)
    if step is not None and abs(value / step - round(value / step)) > 1e-6:
        raise MusicEvalError(path, f"{column} {text.strip()!r} is not a multiple of {step:g} (mean of 5 ratings)", line)
    return value


def _check_new(seen: dict[str, int], cid: str, path: Path, line: int) -> None:
    if cid in seen:
        raise MusicEvalError(path, f"clip {cid!r} repeats line {seen[cid]}", line)
    seen[cid] = line


def read_mos_list(path: str | os.PathLike, wav_dir: str | os.PathLike | None = None,
                  task: str | Task = TRACK1, check_labels: bool = True) -> list[dict]:
    """Rows ``{clip_id, path, <axes>}`` of a ``*_mos_list.txt``; paths are ``wav_dir/<name>.wav``.

    ``wav_dir`` defaults to ``<list folder>/../wav`` (the MusicEval-phase1 layout). Without ``check_labels``
    a label need only be a number (extraction does not read labels).
    """
    t, p = get_task(task), Path(path)
    wav = Path(wav_dir) if wav_dir is not None else p.parent.parent / "wav"
    columns = [next(h for h, a in t.label_columns["musiceval"].items() if a == axis) for axis in t.axes]
    rows, seen = [], {}
    for line, text in _lines(p):
        fields = [f.strip() for f in text.split(",")]
        if len(fields) != 1 + t.n_axes:
            raise MusicEvalError(p, f"expected {1 + t.n_axes} fields (name.wav,{','.join(columns)}), got {len(fields)}",
                                 line)
        name = fields[0]
        cid = clip_name(name)
        if not cid or not name.lower().endswith(".wav"):
            raise MusicEvalError(p, f"first field must be a .wav file name, got {name!r}", line)
        _check_new(seen, cid, p, line)
        row = {"clip_id": cid, "path": os.path.abspath(wav / name)}
        for axis, col, value in zip(t.axes, columns, fields[1:]):
            row[axis] = (_label(value, p, line, col, t.lo, t.hi, _STEP) if check_labels
                         else _label(value, p, line, col, -math.inf, math.inf, None))
        rows.append(row)
    return rows


def read_eval_list(path: str | os.PathLike, wav_dir: str | os.PathLike | None = None) -> list[dict]:
    """Rows ``{clip_id, path}`` of ``eval_list.txt`` (one id per line; a ``.wav`` suffix is tolerated)."""
    p = Path(path)
    wav = Path(wav_dir) if wav_dir is not None else p.parent / "wav"
    rows, seen = [], {}
    for line, text in _lines(p):
        name = text.strip()
        if "," in name or "\t" in name:
            raise MusicEvalError(p, f"expected one clip id per line, got {name!r}", line)
        cid = clip_name(name)
        _check_new(seen, cid, p, line)
        rows.append({"clip_id": cid, "path": os.path.abspath(wav / f"{cid}.wav")})
    return rows


def read_prompt_table(path: str | os.PathLike) -> dict[str, str]:
    """``{id: text}`` of a tab-separated prompt table whose header names ``id`` and ``text``.

    The text is stripped (an empty text is kept as ``""``; the lookup reports it). An id that repeats with a
    different text is an error.
    """
    p = Path(path)
    lines = _lines(p)
    if not lines:
        raise MusicEvalError(p, "empty prompt table (needs a header with id and text)")
    header = [h.strip().lower() for h in lines[0][1].split("\t")]
    if "id" not in header or "text" not in header:
        raise MusicEvalError(p, f"header must name 'id' and 'text' (tab-separated), got {lines[0][1]!r}", lines[0][0])
    i_id, i_text = header.index("id"), header.index("text")
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    for line, text in lines[1:]:
        fields = text.split("\t")
        if len(fields) <= max(i_id, i_text):
            raise MusicEvalError(p, f"expected {len(header)} tab-separated fields, got {len(fields)}", line)
        key = fields[i_id].strip()
        # A tab inside the prompt of a table whose last column is the text: keep the whole remainder.
        last = i_text == len(header) - 1
        value = ("\t".join(fields[i_text:]) if last else fields[i_text]).strip()
        if not key:
            raise MusicEvalError(p, "empty id", line)
        if key in out and out[key] != value:
            raise MusicEvalError(p, f"id {key!r} repeats line {seen[key]} with a different text", line)
        out[key], seen[key] = value, seen.get(key, line)
    return out


def read_prompt_tables(root: str | os.PathLike) -> PromptTables:
    """Both prompt tables of a MusicEval folder (``root`` or ``root/sets``); a missing demo table is empty."""
    base = Path(root)
    found = {n: next((d / n for d in (base, base / "sets") if (d / n).is_file()), None)
             for n in (PROMPT_INFO, DEMO_PROMPT_INFO)}
    if found[PROMPT_INFO] is None:
        raise MusicEvalError(base / PROMPT_INFO, "prompt table not found (looked in the folder and sets/)")
    demo = found[DEMO_PROMPT_INFO]
    return PromptTables(read_prompt_table(found[PROMPT_INFO]), read_prompt_table(demo) if demo else {},
                        str(found[PROMPT_INFO]), str(demo or base / DEMO_PROMPT_INFO))


# ---------------------------------------------------------------------------------------------
# prompts and the table
# ---------------------------------------------------------------------------------------------
def lookup_prompt(clip_id: str, system: str | None, tables: PromptTables) -> tuple[str | None, str | None, Problem | None]:
    """(prompt id, prompt text, problem) for one clip: demo systems by file name, the others by prompt id."""
    pid = prompt_id_of(clip_id)
    if system in DEMO_PROMPT_SYSTEMS:
        key, table, source = f"{clip_id}.wav", tables.by_file, tables.file_source
    else:
        key, table, source = pid, tables.by_prompt, tables.prompt_source
    if key is None:
        return pid, None, Problem("no_prompt_id", -1, clip_id, f"clip {clip_id} has no prompt id (S###_P###)")
    if key not in table:
        return pid, None, Problem("missing_prompt", -1, clip_id,
                                  f"clip {clip_id}: prompt {key!r} not found in {source}", source)
    text = table[key]
    if not text:
        return pid, None, Problem("empty_prompt", -1, clip_id, f"clip {clip_id}: prompt {key!r} is empty in {source}",
                                  source)
    return pid, text, None


def to_table(rows: list[dict], task: str | Task = TRACK1) -> pl.DataFrame:
    """The clip table of ``rows`` (absent keys are null): :data:`KEY_COLUMNS` then the task's axes."""
    t = get_task(task)
    schema = {**{c: pl.String for c in KEY_COLUMNS}, **{a: pl.Float64 for a in t.axes}}
    return pl.DataFrame({c: [r.get(c) for r in rows] for c in schema}, schema=schema)


def attach_prompts(rows: list[dict], tables: PromptTables, task: str | Task = TRACK1) -> MusicEvalSet:
    """Fill ``system``, ``prompt_id`` and ``prompt`` of each row; unresolved prompts become problems."""
    t = get_task(task)
    problems = []
    for i, row in enumerate(rows):
        row["system"] = row.get("system") or t.system_of(row["clip_id"], row.get("path"))
        row["prompt_id"], row["prompt"], problem = lookup_prompt(row["clip_id"], row["system"], tables)
        if problem is not None:
            problems.append(Problem(problem.kind, i, problem.clip_id, problem.message, problem.path))
    return MusicEvalSet(to_table(rows, t), problems)


def load_musiceval(root: str | os.PathLike, split: str, wav_dir: str | os.PathLike | None = None,
                   task: str | Task = TRACK1) -> MusicEvalSet:
    """The ``train``/``dev`` MOS list or the ``eval`` list of a MusicEval folder, with prompts attached.

    ``root`` holds ``sets/`` (MOS lists), ``eval_list.txt`` (root or ``sets/``), the prompt tables (root or
    ``sets/``) and ``wav/`` (unless ``wav_dir`` is given).
    """
    base = Path(root)
    wav = Path(wav_dir) if wav_dir is not None else base / "wav"
    if split in SPLITS:
        rows = read_mos_list(base / "sets" / f"{split}_mos_list.txt", wav, task)
    elif split == "eval":
        listed = next((d / EVAL_LIST_FILE for d in (base, base / "sets") if (d / EVAL_LIST_FILE).is_file()),
                      base / EVAL_LIST_FILE)
        rows = read_eval_list(listed, wav)
    else:
        raise MusicEvalError(base, f"unknown split {split!r}; choose one of train, dev, eval")
    return attach_prompts(rows, read_prompt_tables(base), task)


def read_prompt_csv(path: str | os.PathLike, data_root: str | os.PathLike | None = None,
                    task: str | Task = TRACK1) -> MusicEvalSet:
    """A plain CSV ``path,prompt[,<labels>][,system][,clip_id]`` (see the module doc) as a :class:`MusicEvalSet`.

    Relative paths resolve against ``data_root``, else the CSV's folder. ``clip_id`` defaults to the file name
    without ``.wav``; ``system`` to the task's rule. An empty prompt is a problem row.
    """
    t, p = get_task(task), Path(path)
    lines = _lines(p)
    reader = list(csv.reader([text for _, text in lines]))
    if not reader:
        raise MusicEvalError(p, "empty CSV (needs a header with path and prompt)")
    shown = [h.strip() for h in reader[0]]  # as written, for messages
    header = [h.lower() for h in shown]
    if "path" not in header or "prompt" not in header:
        raise MusicEvalError(p, f"header must name 'path' and 'prompt', got {lines[0][1]!r}", lines[0][0])
    axes = {i: t.axis_of_header("csv", h) for i, h in enumerate(header) if t.axis_of_header("csv", h)}
    root = Path(data_root) if data_root is not None else p.parent
    rows, problems, seen = [], [], {}
    for (line, _), fields in zip(lines[1:], reader[1:]):
        if len(fields) != len(header):
            raise MusicEvalError(p, f"expected {len(header)} fields, got {len(fields)}", line)
        rec = dict(zip(header, (f.strip() for f in fields)))
        if not rec["path"]:
            raise MusicEvalError(p, "empty path", line)
        cid = rec.get("clip_id") or clip_name(rec["path"])
        _check_new(seen, cid, p, line)
        row = {"clip_id": cid, "path": os.path.normpath(os.path.join(os.path.abspath(root), rec["path"])),
               "system": rec.get("system") or t.system_of(cid, rec["path"]), "prompt_id": None,
               "prompt": rec["prompt"] or None}
        for i, axis in axes.items():
            row[axis] = _label(fields[i], p, line, shown[i], t.lo, t.hi, None) if fields[i].strip() else None
        if row["prompt"] is None:
            problems.append(Problem("empty_prompt", len(rows), cid, f"clip {cid}: empty prompt in {p}", str(p)))
        rows.append(row)
    return MusicEvalSet(to_table(rows, t), problems)


__all__ = [
    "DEMO_PROMPT_INFO", "EVAL_LIST_FILE", "KEY_COLUMNS", "MusicEvalError", "MusicEvalSet", "PROMPT_INFO", "PromptTables",
    "attach_prompts", "load_musiceval", "lookup_prompt", "read_eval_list", "read_mos_list", "read_prompt_csv",
    "read_prompt_table", "read_prompt_tables", "to_table",
]
