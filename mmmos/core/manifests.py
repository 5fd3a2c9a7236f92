"""Read clip lists ("manifests") in every supported format into one table.

Every loader returns a polars DataFrame with exactly the columns :data:`COLUMNS`::

    clip_id  str           key of the clip (never null; repeats are reported, not dropped)
    path     str | null    absolute path of the audio file; null when the manifest has none
    system   str | null    system (generator / source corpus) id
    domain   str | null    "speech" | "music" | "sound"
    split    str | null    e.g. "train" / "dev" / "test"
    PQ PC CE CU  Float64 | null   labels on 0-10 (means of ratings); null when absent

Formats (:func:`load_manifest` picks one from the extension/content, or ``fmt=``):

* ``track2`` - AudioMOS 2025 Track 2 lists and the MMMOS ``combined_{train,dev}.csv``:
  header ``sample_id,data_path,Production_Quality,Production_Complexity,
  Content_Enjoyment,Content_Usefulness`` (labels optional), UTF-8 BOM allowed, quoted
  paths with commas/spaces.  ``clip_id`` = ``sample_id``.
* ``jsonl`` - AES rating files: one JSON object a line with ``data_path`` and, per axis
  (long or short name), a list of ratings (label = their mean) or one number.
  A ``data_path`` that is a Track 2 id (``audiomos2025-track2-sysXXXXX-uttYYYYY``) gives
  ``clip_id`` = the id and ``path`` = null.  Otherwise ``clip_id`` = ``sample_id``/``clip_id``
  key if present, else ``data_path`` with the ``/your_path/`` placeholder removed.
* ``csv`` - a plain CSV for users' own data: header with ``path`` and optionally
  ``PQ,PC,CE,CU,system,clip_id,domain,split`` (any order, case-insensitive; other
  columns are ignored).  ``clip_id`` defaults to the path as written.
* ``folder`` - every audio file (wav/flac/mp3/ogg/opus/aiff) below a directory, found
  recursively, sorted; names starting with "." are skipped; ``clip_id`` = the path
  relative to the folder (POSIX separators).

Paths: a leading ``/your_path/`` placeholder is replaced by ``data_root``; other relative
paths resolve against ``data_root`` if given, else the manifest's own directory;
absolute paths stay as they are.  Without ``data_root`` the placeholder resolves
against the manifest's directory too.

System: the manifest's ``system`` field when it has one; else the ``sys...`` token of a
Track 2 id (clip id, then file name); else, for AES-PAM paths
``PAM/human_eval/{audio,music}/<system>/<file>``, the parent folder; else null.

Domain: the manifest's ``domain`` field when it has one (``audio`` is read as ``sound``;
any other value than speech/music/sound is an error); else from the path (PAM music ->
music, PAM audio -> sound; EARS, LibriTTS, Common Voice/cv-corpus -> speech; MUSDB18,
MusicCaps -> music; AudioSet -> sound; case-insensitive, the keyword nearest the file
wins); else null.

Split: the ``split`` argument for every row if given; else the manifest's ``split``
field; else a ``train``/``dev``/``test`` token of the manifest's file name
(``val``/``valid``/``validation`` -> dev, ``eval`` -> test); else null.

Blank lines (and CSV rows whose fields are all empty) carry nothing and are skipped.
Bad input: a malformed row (wrong field count, non-numeric label, invalid JSON, a row
with no id at all) raises :class:`ManifestError` naming the file and line.  Rows that
are well-formed but doubtful are *kept* and reported by :func:`validate_manifest`:
rows without a path, duplicated clip ids, missing files (optional), labels outside 0-10.
Duplicated clip ids are kept by the loader (nothing is dropped silently); callers that
need unique ids use :func:`drop_duplicate_ids`, which keeps the first occurrence and
returns a :class:`Problem` for each row it removed.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import polars as pl

from mmmos.core.audio import AUDIO_EXTENSIONS

__all__ = [
    "AXES",
    "AXIS_LONG_NAMES",
    "COLUMNS",
    "SCHEMA",
    "ManifestError",
    "Problem",
    "drop_duplicate_ids",
    "empty_manifest",
    "infer_domain",
    "infer_split",
    "infer_system",
    "load_manifest",
    "read_answer_file",
    "validate_manifest",
    "write_answer_file",
]

AXES: tuple[str, ...] = ("PQ", "PC", "CE", "CU")
AXIS_LONG_NAMES: dict[str, str] = {
    "PQ": "Production_Quality",
    "PC": "Production_Complexity",
    "CE": "Content_Enjoyment",
    "CU": "Content_Usefulness",
}
COLUMNS: tuple[str, ...] = ("clip_id", "path", "system", "domain", "split", *AXES)
SCHEMA: dict[str, Any] = {
    "clip_id": pl.String,
    "path": pl.String,
    "system": pl.String,
    "domain": pl.String,
    "split": pl.String,
    **{a: pl.Float64 for a in AXES},
}

PLACEHOLDER = "/your_path/"
FORMATS = ("auto", "track2", "combined", "jsonl", "csv", "folder")
DOMAINS = ("speech", "music", "sound")

# Header name (lower case) -> axis, for both the long AES names and the short ones.
_AXIS_HEADER = {**{a.lower(): a for a in AXES}, **{v.lower(): k for k, v in AXIS_LONG_NAMES.items()}}
_PLACEHOLDER_RE = re.compile(r"^/?your_path/")
_TRACK2_ID_RE = re.compile(r"^audiomos2025-track2-sys[0-9A-Za-z]+-utt[0-9A-Za-z]+$")
_SYS_TOKEN_RE = re.compile(r"(?:^|-)(sys[0-9A-Za-z]+)-utt[0-9A-Za-z]+")
_PAM_RE = re.compile(r"(?:^|/)pam/human_eval/(audio|music)/([^/]+)/[^/]+$", re.IGNORECASE)
_DOMAIN_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), d)
    for p, d in (
        (r"(?<![a-z0-9])ears(?![a-z])", "speech"),  # not "years", "hearsay"
        (r"(?<![a-z0-9])libri-?tts", "speech"),
        (r"(?<![a-z0-9])(?:common[ _-]?voice|cv-corpus)", "speech"),
        (r"(?<![a-z0-9])musdb", "music"),
        (r"(?<![a-z0-9])music-?caps", "music"),
        (r"(?<![a-z0-9])audio-?set", "sound"),
    )
)
_SPLIT_TOKENS = {
    "train": "train", "training": "train",
    "dev": "dev", "val": "dev", "valid": "dev", "validation": "dev",
    "test": "test", "eval": "test",
}
_DOMAIN_ALIASES = {"speech": "speech", "music": "music", "sound": "sound", "audio": "sound"}


class ManifestError(ValueError):
    """A manifest (or answer file) is malformed; the message names the file and line."""

    def __init__(self, path: str | os.PathLike, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Problem:
    """One doubtful row of a manifest table, found by :func:`validate_manifest`.

    ``kind`` is one of ``no_clip_id``, ``no_path``, ``duplicate_id``, ``missing_file``,
    ``label_out_of_range``, ``missing_label``; ``row`` is the 0-based row index.
    """

    kind: str
    row: int
    clip_id: str | None
    message: str

    def __str__(self) -> str:
        return f"row {self.row} ({self.clip_id}): {self.kind}: {self.message}"


# --------------------------------------------------------------------------- inference


def _norm_slashes(p: str) -> str:
    return p.replace("\\", "/")


def infer_system(clip_id: str | None, path: str | None) -> str | None:
    """System id from a Track 2 id's ``sys...`` token, else from an AES-PAM path, else None."""
    for text in (clip_id, path):
        if text:
            name = _norm_slashes(text).rsplit("/", 1)[-1]
            m = _SYS_TOKEN_RE.search(name)
            if m:
                return m.group(1)
    for text in (path, clip_id):
        if text:
            m = _PAM_RE.search(_norm_slashes(text))
            if m:
                return m.group(2)
    return None


def infer_domain(path: str | None) -> str | None:
    """"speech" / "music" / "sound" from dataset names in ``path`` (see module doc), else None."""
    if not path:
        return None
    p = _norm_slashes(path)
    m = _PAM_RE.search(p)
    if m:
        return "music" if m.group(1).lower() == "music" else "sound"
    best: tuple[int, str] | None = None
    for pattern, domain in _DOMAIN_PATTERNS:
        for hit in pattern.finditer(p):
            # The keyword nearest the file name wins: it names the corpus, outer folders may not.
            if best is None or hit.start() > best[0]:
                best = (hit.start(), domain)
    return best[1] if best else None


def infer_split(path: str | os.PathLike) -> str | None:
    """``train``/``dev``/``test`` from tokens of a file (or folder) name, else None if none/ambiguous."""
    stem = Path(path).name.lower()
    for ext in (".csv", ".jsonl", ".json", ".ndjson", ".txt"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    found = {_SPLIT_TOKENS[t] for t in re.split(r"[^a-z0-9]+", stem) if t in _SPLIT_TOKENS}
    return found.pop() if len(found) == 1 else None


# --------------------------------------------------------------------------- helpers


def empty_manifest() -> pl.DataFrame:
    """A manifest table with no rows."""
    return pl.DataFrame({c: [] for c in COLUMNS}, schema=SCHEMA)


def _to_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    data = {c: [r.get(c) for r in rows] for c in COLUMNS}
    return pl.DataFrame(data, schema=SCHEMA)


def _strip_placeholder(raw: str) -> str:
    """``/your_path/a/b.wav`` -> ``a/b.wav``; other strings unchanged."""
    m = _PLACEHOLDER_RE.match(raw)
    return raw[m.end():] if m else raw


def _resolve(raw: str | None, base_dir: Path, data_root: Path | None) -> tuple[str | None, str | None]:
    """(absolute path or None, path as written minus placeholder - used for inference)."""
    if raw is None or not raw.strip():
        return None, None
    raw = raw.strip()
    rel = _strip_placeholder(raw)
    if os.path.isabs(rel):
        return os.path.normpath(rel), rel
    root = data_root if data_root is not None else base_dir
    return os.path.normpath(os.path.join(os.path.abspath(root), rel)), rel


def _parse_label(text: str | None, where: Path, line: int, name: str) -> float | None:
    if text is None:
        return None
    text = text.strip()
    if text == "" or text.lower() in ("nan", "na", "null", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ManifestError(where, f"label {name} is not a number: {text!r}", line) from None
    if not math.isfinite(value):
        raise ManifestError(where, f"label {name} is not finite: {text!r}", line)
    return value


def _parse_domain(text: str | None, where: Path, line: int) -> str | None:
    if text is None or not text.strip():
        return None
    d = _DOMAIN_ALIASES.get(text.strip().lower())
    if d is None:
        raise ManifestError(where, f"unknown domain {text.strip()!r} (expected one of {', '.join(DOMAINS)})", line)
    return d


def _opt(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return text or None


def _csv_rows(path: Path) -> Iterable[tuple[int, list[str]]]:
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


def _check_field_count(path: Path, line: int, fields: list[str], header: list[str]) -> None:
    if len(fields) != len(header):
        raise ManifestError(
            path, f"expected {len(header)} fields ({','.join(header)}), got {len(fields)}", line
        )


# --------------------------------------------------------------------------- loaders


def _header(path: Path):
    """The CSV rows iterator past the header, the header names and their lower-case forms."""
    it = iter(_csv_rows(path))
    try:
        _, header = next(it)
    except StopIteration:
        raise ManifestError(path, "empty file (no header)") from None
    names = [h.strip() for h in header]
    return it, names, [n.lower() for n in names]


def _load_track2(path: Path, data_root: Path | None, split: str | None) -> pl.DataFrame:
    rows: list[dict[str, Any]] = []
    it, names, lower = _header(path)
    for need in ("sample_id", "data_path"):
        if need not in lower:
            raise ManifestError(path, f"header lacks column {need!r}; got {','.join(names)}", 1)
    i_id, i_path = lower.index("sample_id"), lower.index("data_path")
    i_axes = {_AXIS_HEADER[n]: i for i, n in enumerate(lower) if n in _AXIS_HEADER}
    base = path.parent
    for line, fields in it:
        _check_field_count(path, line, fields, names)
        clip_id = _opt(fields[i_id])
        if clip_id is None:
            raise ManifestError(path, "empty sample_id", line)
        abs_path, written = _resolve(fields[i_path], base, data_root)
        row: dict[str, Any] = {
            "clip_id": clip_id,
            "path": abs_path,
            # sample_id of a PAM row is its path, so it also serves when data_path is empty.
            "system": infer_system(clip_id, written or _strip_placeholder(clip_id)),
            "domain": infer_domain(written) or infer_domain(_strip_placeholder(clip_id)),
            "split": split,
        }
        for axis, i in i_axes.items():
            row[axis] = _parse_label(fields[i], path, line, axis)
        rows.append(row)
    return _to_frame(rows)


def _json_label(value: Any, where: Path, line: int, name: str) -> float | None:
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


def _load_jsonl(
    path: Path, data_root: Path | None, split: str | None, default_split: str | None
) -> pl.DataFrame:
    rows: list[dict[str, Any]] = []
    base = path.parent
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = list(f)
    except UnicodeDecodeError as e:
        raise ManifestError(path, f"not UTF-8 text ({e})") from e
    for line_no, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(path, f"invalid JSON ({e.msg})", line_no) from None
        if not isinstance(obj, dict):
            raise ManifestError(path, f"expected a JSON object, got {type(obj).__name__}", line_no)
        raw = obj.get("data_path", obj.get("path"))
        if raw is not None and not isinstance(raw, str):
            raise ManifestError(path, f"data_path must be a string, got {raw!r}", line_no)
        explicit_id = obj.get("sample_id", obj.get("clip_id"))
        if raw is not None and _TRACK2_ID_RE.match(raw.strip()):
            clip_id, abs_path, written = raw.strip(), None, None
        else:
            abs_path, written = _resolve(raw, base, data_root)
            clip_id = explicit_id if explicit_id not in (None, "") else written
        if clip_id is None or clip_id == "":
            raise ManifestError(path, "object has neither data_path nor sample_id", line_no)
        clip_id = str(clip_id)
        system = obj.get("system")
        domain_text = obj.get("domain")
        row: dict[str, Any] = {
            "clip_id": clip_id,
            "path": abs_path,
            "system": str(system) if system not in (None, "") else infer_system(clip_id, written),
            "domain": _parse_domain(str(domain_text), path, line_no) if domain_text else infer_domain(written),
            "split": split
            or _opt(obj.get("split") if isinstance(obj.get("split"), str) else None)
            or default_split,
        }
        for axis in AXES:
            key = AXIS_LONG_NAMES[axis] if AXIS_LONG_NAMES[axis] in obj else axis
            row[axis] = _json_label(obj.get(key), path, line_no, key)
        rows.append(row)
    return _to_frame(rows)


def _load_plain_csv(
    path: Path, data_root: Path | None, split: str | None, default_split: str | None
) -> pl.DataFrame:
    rows: list[dict[str, Any]] = []
    it, names, lower = _header(path)
    if "path" not in lower and "clip_id" not in lower:
        raise ManifestError(path, f"header lacks column 'path' (or 'clip_id'); got {','.join(names)}", 1)
    col = {n: lower.index(n) for n in ("path", "clip_id", "system", "domain", "split") if n in lower}
    i_axes = {_AXIS_HEADER[n]: i for i, n in enumerate(lower) if n in _AXIS_HEADER}
    base = path.parent

    def field(fields: list[str], name: str) -> str | None:
        return _opt(fields[col[name]]) if name in col else None

    for line, fields in it:
        _check_field_count(path, line, fields, names)
        raw = field(fields, "path")
        abs_path, written = _resolve(raw, base, data_root)
        clip_id = field(fields, "clip_id") or raw
        if clip_id is None:
            raise ManifestError(path, "row has neither a path nor a clip_id", line)
        row: dict[str, Any] = {
            "clip_id": clip_id,
            "path": abs_path,
            "system": field(fields, "system") or infer_system(clip_id, written),
            "domain": _parse_domain(field(fields, "domain"), path, line) or infer_domain(written),
            "split": split or field(fields, "split") or default_split,
        }
        for axis, i in i_axes.items():
            row[axis] = _parse_label(fields[i], path, line, axis)
        rows.append(row)
    return _to_frame(rows)


def _load_folder(folder: Path, split: str | None) -> pl.DataFrame:
    found: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(AUDIO_EXTENSIONS):
                continue
            full = os.path.join(dirpath, name)
            found.append((Path(os.path.relpath(full, folder)).as_posix(), os.path.abspath(full)))
    if not found:
        raise ManifestError(folder, f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    found.sort()
    rows = [
        {
            "clip_id": rel,
            "path": os.path.normpath(full),
            "system": infer_system(rel, rel),
            "domain": infer_domain(rel),
            "split": split,
        }
        for rel, full in found
    ]
    return _to_frame(rows)


def _detect_format(path: Path) -> str:
    if path.is_dir():
        return "folder"
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    try:
        with open(path, encoding="utf-8-sig") as f:
            head = f.read(65536)
    except UnicodeDecodeError as e:
        raise ManifestError(path, f"not UTF-8 text ({e})") from e
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
    raise ManifestError(
        path,
        "unrecognised manifest: expected a header with sample_id,data_path (Track 2 list) or "
        f"path or clip_id (plain CSV), or JSON lines; got {','.join(h.strip() for h in header)!r}"
        " (answer files have no header: use read_answer_file)",
        1,
    )


def load_manifest(
    path: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    split: str | None = None,
    fmt: str = "auto",
) -> pl.DataFrame:
    """Load a manifest file or audio folder into a table with columns :data:`COLUMNS`.

    ``fmt``: "auto" (by extension/content), "track2" (= "combined"), "jsonl", "csv" or
    "folder".  See the module docstring for path, system, domain and split rules.
    Raises :class:`ManifestError` for a missing or malformed manifest.
    """
    p = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if not p.exists():
        raise ManifestError(p, "manifest not found")
    root = Path(data_root) if data_root is not None else None
    explicit = _opt(split)
    from_name = infer_split(p)
    if fmt == "auto":
        fmt = _detect_format(p)
    if fmt == "folder":
        if not p.is_dir():
            raise ManifestError(p, "fmt='folder' needs a directory")
        return _load_folder(p, explicit or from_name)
    if not p.is_file():
        raise ManifestError(p, f"fmt={fmt!r} needs a file, got a directory")
    if fmt in ("track2", "combined"):
        return _load_track2(p, root, explicit or from_name)
    if fmt == "jsonl":
        return _load_jsonl(p, root, explicit, from_name)
    return _load_plain_csv(p, root, explicit, from_name)


# --------------------------------------------------------------------------- validation


def validate_manifest(
    df: pl.DataFrame,
    *,
    require_paths: bool = True,
    check_files: bool = False,
    require_labels: bool = False,
) -> list[Problem]:
    """List doubtful rows: empty ids, rows without a path (if ``require_paths``), duplicate ids
    (every occurrence after the first), files that do not exist (if ``check_files``),
    labels outside 0-10, and null labels (if ``require_labels``).  Problems are ordered by row.
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"not a manifest table: missing columns {missing}")
    problems: list[Problem] = []
    first_row: dict[str, int] = {}
    cols = {c: df.get_column(c).to_list() for c in COLUMNS}
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
        for axis in AXES:
            v = cols[axis][i]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                if require_labels:
                    problems.append(Problem("missing_label", i, cid, f"{axis} label is missing"))
            elif not 0.0 <= v <= 10.0:
                problems.append(Problem("label_out_of_range", i, cid, f"{axis} = {v} is outside 0-10"))
    return problems


def drop_duplicate_ids(df: pl.DataFrame) -> tuple[pl.DataFrame, list[Problem]]:
    """Keep the first row of each clip_id; return the table and one Problem per removed row."""
    problems = [p for p in validate_manifest(df, require_paths=False) if p.kind == "duplicate_id"]
    if not problems:
        return df, []
    drop = {p.row for p in problems}
    keep = [i for i in range(df.height) if i not in drop]
    return df[keep], problems


# --------------------------------------------------------------------------- answer files


def read_answer_file(path: str | os.PathLike) -> pl.DataFrame:
    """Read a challenge answer file ``wavID,PQ,PC,CE,CU`` (no header) into clip_id + axes.

    A header line ``wavID,PQ,PC,CE,CU`` on line 1 is tolerated.  Wrong field counts,
    non-numbers, non-finite values and repeated ids raise :class:`ManifestError`.
    """
    p = Path(path)
    if not p.is_file():
        raise ManifestError(p, "answer file not found")
    ids: list[str] = []
    values: dict[str, list[float]] = {a: [] for a in AXES}
    seen: dict[str, int] = {}
    for line, fields in _csv_rows(p):
        fields = [f.strip() for f in fields]
        if line == 1 and [f.upper() for f in fields[1:]] == list(AXES):
            continue
        if len(fields) != 1 + len(AXES):
            raise ManifestError(p, f"expected 5 fields (wavID,PQ,PC,CE,CU), got {len(fields)}", line)
        cid = fields[0]
        if not cid:
            raise ManifestError(p, "empty wavID", line)
        if cid in seen:
            raise ManifestError(p, f"wavID {cid!r} repeats line {seen[cid]}", line)
        seen[cid] = line
        ids.append(cid)
        for axis, text in zip(AXES, fields[1:]):
            v = _parse_label(text, p, line, axis)
            if v is None:
                raise ManifestError(p, f"{axis} value is missing", line)
            values[axis].append(v)
    return pl.DataFrame(
        {"clip_id": ids, **values}, schema={"clip_id": pl.String, **{a: pl.Float64 for a in AXES}}
    )


def write_answer_file(df: pl.DataFrame, path: str | os.PathLike) -> None:
    """Write ``clip_id`` + PQ,PC,CE,CU as a challenge answer file (no header, shortest exact floats).

    Refuses (ValueError) missing columns, null/non-finite scores, and ids containing a
    comma, quote or line break (the format cannot quote them).  Written atomically.
    """
    need = ["clip_id", *AXES]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"cannot write answer file {path}: missing columns {missing}")
    lines: list[str] = []
    ids = df.get_column("clip_id").to_list()
    vals = [df.get_column(a).cast(pl.Float64).to_list() for a in AXES]
    for i, cid in enumerate(ids):
        if cid is None or cid == "" or any(ch in str(cid) for ch in ',"\r\n'):
            raise ValueError(f"cannot write answer file {path}: bad clip_id {cid!r} in row {i}")
        row = [vals[k][i] for k in range(len(AXES))]
        if any(v is None or not math.isfinite(v) for v in row):
            raise ValueError(f"cannot write answer file {path}: missing/non-finite score for {cid!r}")
        lines.append(",".join([str(cid), *(repr(float(v)) for v in row)]))
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write("".join(line + "\n" for line in lines))
    os.replace(tmp, p)
