"""One loader per list format (Track 2 / combined CSV, AES JSON lines, plain CSV, audio folder)."""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import polars as pl

from mmmos.core.audio import AUDIO_EXTENSIONS
from mmmos.core.manifests.fields import (
    RangeCheck, check_field_count, csv_header, json_label, opt, parse_domain, parse_label, resolve, strip_placeholder,
)
from mmmos.core.manifests.table import ManifestError, Problem, to_frame
from mmmos.core.tasks import Task

_TRACK2_ID_RE = re.compile(r"^audiomos2025-track2-sys[0-9A-Za-z]+-utt[0-9A-Za-z]+$")


def _label_index(task: Task, fmt: str, lower: list[str]) -> dict[str, int]:
    """axis -> header position of its column in a list of format ``fmt``."""
    out: dict[str, int] = {}
    for i, name in enumerate(lower):
        axis = task.axis_of_header(fmt, name)
        if axis is not None and axis not in out:
            out[axis] = i
    return out


def load_track2(path: Path, data_root: Path | None, split: str | None, task: Task, check: RangeCheck) -> pl.DataFrame:
    rows: list[dict[str, Any]] = []
    it, names, lower = csv_header(path)
    for need in ("sample_id", "data_path"):
        if need not in lower:
            raise ManifestError(path, f"header lacks column {need!r}; got {','.join(names)}", 1)
    i_id, i_path = lower.index("sample_id"), lower.index("data_path")
    i_axes = _label_index(task, "track2", lower)
    for line, fields in it:
        check_field_count(path, line, fields, names)
        clip_id = opt(fields[i_id])
        if clip_id is None:
            raise ManifestError(path, "empty sample_id", line)
        abs_path, written = resolve(fields[i_path], path.parent, data_root)
        bare_id = strip_placeholder(clip_id)
        row: dict[str, Any] = {
            "clip_id": clip_id,
            "path": abs_path,
            # sample_id of a PAM row is its path, so it also serves when data_path is empty.
            "system": task.system_of(clip_id, written or bare_id),
            "domain": task.domain_of(bare_id, written),
            "split": split,
        }
        for axis, i in i_axes.items():
            row[axis] = check.add(line, names[i], parse_label(fields[i], path, line, axis))
        rows.append(row)
    return to_frame(rows, task)


def _json_labels(obj: dict, task: Task, where: Path, line: int, check: RangeCheck) -> dict[str, float | None]:
    """axis -> label of one JSON object; the axis's long title wins over other spellings present."""
    keys: dict[str, str] = {}
    for key in obj:
        axis = task.axis_of_header("jsonl", str(key))
        if axis is not None and (axis not in keys or str(key) == task.axis_titles.get(axis)):
            keys[axis] = key
    return {axis: check.add(line, key, json_label(obj.get(key), where, line, key)) for axis, key in keys.items()}


def load_jsonl(path: Path, data_root: Path | None, split: str | None, default_split: str | None, task: Task,
               check: RangeCheck) -> pl.DataFrame:
    rows: list[dict[str, Any]] = []
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
            abs_path, written = resolve(raw, path.parent, data_root)
            clip_id = explicit_id if explicit_id not in (None, "") else written
        if clip_id is None or clip_id == "":
            raise ManifestError(path, "object has neither data_path nor sample_id", line_no)
        clip_id = str(clip_id)
        system, domain_text, split_text = obj.get("system"), obj.get("domain"), obj.get("split")
        row: dict[str, Any] = {
            "clip_id": clip_id,
            "path": abs_path,
            "system": str(system) if system not in (None, "") else task.system_of(clip_id, written),
            "domain": parse_domain(str(domain_text), task, path, line_no) if domain_text
            else task.domain_of(clip_id, written),
            "split": split or opt(split_text if isinstance(split_text, str) else None) or default_split,
            **_json_labels(obj, task, path, line_no, check),
        }
        rows.append(row)
    return to_frame(rows, task)


def load_plain_csv(path: Path, data_root: Path | None, split: str | None, default_split: str | None, task: Task,
                   check: RangeCheck) -> pl.DataFrame:
    rows: list[dict[str, Any]] = []
    it, names, lower = csv_header(path)
    if "path" not in lower and "clip_id" not in lower:
        raise ManifestError(path, f"header lacks column 'path' (or 'clip_id'); got {','.join(names)}", 1)
    col = {n: lower.index(n) for n in ("path", "clip_id", "system", "domain", "split", "prompt") if n in lower}
    i_axes = _label_index(task, "csv", lower)

    def field(fields: list[str], name: str) -> str | None:
        return opt(fields[col[name]]) if name in col else None

    for line, fields in it:
        check_field_count(path, line, fields, names)
        raw = field(fields, "path")
        abs_path, written = resolve(raw, path.parent, data_root)
        clip_id = field(fields, "clip_id") or raw
        if clip_id is None:
            raise ManifestError(path, "row has neither a path nor a clip_id", line)
        row: dict[str, Any] = {
            "clip_id": clip_id,
            "path": abs_path,
            "system": field(fields, "system") or task.system_of(clip_id, written),
            "domain": parse_domain(field(fields, "domain"), task, path, line) or task.domain_of(clip_id, written),
            "split": split or field(fields, "split") or default_split,
            # "" (not null) for an empty prompt cell: the list says the prompt is empty (a problem row later)
            "prompt": fields[col["prompt"]].strip() if "prompt" in col else None,
        }
        for axis, i in i_axes.items():
            row[axis] = check.add(line, names[i], parse_label(fields[i], path, line, axis))
        rows.append(row)
    return to_frame(rows, task)


def _escaped(name: str) -> str:
    """A file name as valid text: bytes that are not UTF-8 shown as ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _is_text(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.walk keeps undecodable bytes as lone surrogates
        return False
    return True


def scan_folder(folder: Path) -> tuple[list[tuple[str, str]], list[Problem]]:
    """(relative POSIX name, absolute path) of every audio file below ``folder``, sorted, and one
    ``bad_file_name`` :class:`Problem` per file whose name is not valid UTF-8 (such a name cannot be a clip id)."""
    found: list[tuple[str, str]] = []
    problems: list[Problem] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(AUDIO_EXTENSIONS):
                continue
            full = os.path.join(dirpath, name)
            rel = Path(os.path.relpath(full, folder)).as_posix()
            if _is_text(full):
                found.append((rel, os.path.normpath(os.path.abspath(full))))
            else:
                problems.append(Problem("bad_file_name", -1, _escaped(rel),
                                        f"file name is not valid UTF-8: {_escaped(full)} (rename it to score it)",
                                        path=_escaped(os.path.abspath(full))))
    found.sort()
    problems.sort(key=lambda p: p.clip_id or "")
    return found, problems


def load_folder(folder: Path, split: str | None, task: Task, problems: list[Problem] | None) -> pl.DataFrame:
    found, bad = scan_folder(folder)
    if not found and not bad:
        raise ManifestError(folder, f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    if problems is not None:
        problems.extend(bad)
    else:
        for p in bad:  # nobody asked for the list: at least say so
            warnings.warn(f"{folder}: skipped {p.clip_id}: {p.message}", stacklevel=3)
    rows = [{"clip_id": rel, "path": full, "system": task.system_of(rel, rel), "domain": task.domain_of(rel, rel),
             "split": split} for rel, full in found]
    return to_frame(rows, task)
