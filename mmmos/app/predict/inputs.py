"""What ``mmmos predict`` scores: files, folders (recursive) and manifests expanded to :class:`InputItem`.

A folder gives its audio files (clip id = path relative to the folder, sorted); a file whose name is not
valid UTF-8 becomes an item with an ``error`` (it cannot be named in a UTF-8 table), the rest proceed.  A
``.csv``, ``.tsv``, ``.json``, ``.jsonl`` or ``.ndjson`` file is read with ``load_manifest``; anything else
(a missing path too) is taken as an audio file whose clip id is the path as written, so a bad one becomes
an error row.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mmmos.core.audio import AUDIO_EXTENSIONS

from .errors import PredictorError

MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")


@dataclass(frozen=True)
class InputItem:
    """One clip to score: its id, its audio path (None: a manifest row without one), or why it cannot be."""

    clip_id: str
    path: str | None
    error: str | None = None


def as_item(x: InputItem | tuple[str, str | None]) -> InputItem:
    if isinstance(x, InputItem):
        return x
    cid, path = x
    return InputItem(str(cid), None if path is None else str(path))


def printable(name: str) -> str:
    """``name`` with bytes that are not UTF-8 shown as U+FFFD (for tables and messages)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:  # os.fsdecode keeps undecodable bytes as lone surrogates
        return False


def folder_items(folder: Path) -> list[InputItem]:
    """The audio files under ``folder`` (hidden files and folders skipped), sorted by relative path."""
    found: list[InputItem] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(AUDIO_EXTENSIONS):
                continue
            full = os.path.normpath(os.path.abspath(os.path.join(dirpath, name)))
            rel = Path(os.path.relpath(full, os.path.abspath(folder))).as_posix()
            if _is_utf8(full):
                found.append(InputItem(rel, full))
            else:
                found.append(InputItem(printable(rel), printable(full),
                                       error=f"{printable(full)}: the file name is not valid UTF-8; rename the file"))
    if not found:
        raise PredictorError(f"{folder}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    return sorted(found, key=lambda it: it.clip_id)


def _manifest_items(p: Path, data_root: str | None) -> list[InputItem]:
    from mmmos.core.manifests import ManifestError, load_manifest

    try:
        df = load_manifest(p, data_root=data_root)
    except ManifestError as e:
        raise PredictorError(str(e)) from e
    ids, paths = df["clip_id"].to_list(), df["path"].to_list()
    return [InputItem(str(c), str(q) if q else None) for c, q in zip(ids, paths)]


def expand_inputs(inputs: Sequence[str], data_root: str | None = None) -> list[InputItem]:
    """Items from files, folders (recursive) and manifests, in input order (see the module doc)."""
    items: list[InputItem] = []
    for inp in inputs:
        p = Path(inp)
        if p.is_dir():
            items.extend(folder_items(p))
        elif p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
            items.extend(_manifest_items(p, data_root))
        elif _is_utf8(str(inp)):
            items.append(InputItem(str(inp), str(inp)))
        else:
            items.append(InputItem(printable(str(inp)), printable(str(inp)),
                                   error=f"{printable(str(inp))}: the file name is not valid UTF-8; rename the file"))
    return items


__all__ = ["InputItem", "MANIFEST_SUFFIXES", "as_item", "expand_inputs", "folder_items", "printable"]
