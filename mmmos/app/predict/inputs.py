"""What ``mmmos predict`` scores: files, folders (recursive) and manifests expanded to :class:`InputItem`.

One item type for every task: a clip id, an audio path and, for a task that declares a prompt input
(:attr:`Task.inputs`), the prompt.  A folder gives its audio files (clip id = path relative to the folder,
sorted); a file whose name is not valid UTF-8 becomes an item with an ``error`` (it cannot be named in a UTF-8
table), the rest proceed.  A ``.csv``, ``.tsv``, ``.json``, ``.jsonl`` or ``.ndjson`` file (and, for a prompted
task, a MusicEval ``.txt`` list) is read with ``load_manifest``, whose rows bring their prompts; anything else
(a missing path too) is taken as an audio file whose clip id is the path as written, so a bad one becomes
an error row.  Files and folders get the prompt given (``--prompt``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mmmos.core.audio import AUDIO_EXTENSIONS
from mmmos.core.tasks import Task

from .errors import PredictorError

MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")

#: inputs a task may declare beside its audio -> the error row of an item that lacks it; each is a field of
#: :class:`InputItem` and a column of the output table (:func:`.tables.results_table`)
EXTRA_INPUTS = {"prompt": "no prompt for this clip (give it a prompt column, the prompt tables (--prompts DIR) "
                          "or --prompt TEXT, the one text every such clip is then scored against)"}


@dataclass(frozen=True)
class InputItem:
    """One clip to score: its id, its audio path (None: a manifest row without one), its prompt (tasks with
    a prompt input), or why it cannot be scored.  ``PromptedItem`` is the same type (its old name)."""

    clip_id: str
    path: str | None
    prompt: str | None = None
    error: str | None = None


def as_item(x: InputItem | tuple) -> InputItem:
    """``x`` as an item: an item as is, or a ``(clip_id, path)`` / ``(clip_id, path, prompt)`` tuple."""
    if isinstance(x, InputItem):
        return x
    cid, path, *prompt = x
    return InputItem(str(cid), None if path is None else str(path), *prompt)


def missing_input(item: InputItem, inputs: Sequence[str]) -> str | None:
    """Why ``item`` lacks one of the declared ``inputs`` beside audio (None: it has them all)."""
    for name in inputs:
        if name in EXTRA_INPUTS and not str(getattr(item, name) or "").strip():
            return EXTRA_INPUTS[name]
    return None


def printable(name: str) -> str:
    """``name`` with bytes that are not UTF-8 shown as U+FFFD (for tables and messages)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:  # os.fsdecode keeps undecodable bytes as lone surrogates
        return False


def _file_item(clip_id: str, path: str, prompt: str | None) -> InputItem:
    if _is_utf8(path):
        return InputItem(clip_id, path, prompt)
    return InputItem(printable(clip_id), printable(path), prompt,
                     error=f"{printable(path)}: the file name is not valid UTF-8; rename the file")


def folder_items(folder: Path, prompt: str | None = None) -> list[InputItem]:
    """The audio files under ``folder`` (hidden files and folders skipped), sorted by relative path."""
    found: list[InputItem] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(AUDIO_EXTENSIONS):
                continue
            full = os.path.normpath(os.path.abspath(os.path.join(dirpath, name)))
            found.append(_file_item(Path(os.path.relpath(full, os.path.abspath(folder))).as_posix(), full, prompt))
    if not found:
        raise PredictorError(f"{folder}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    return sorted(found, key=lambda it: it.clip_id)


def _prompted(task: Task | None) -> bool:
    return task is not None and "prompt" in task.inputs


def _manifest_items(p: Path, data_root: str | None, task: Task | None, prompt: str | None,
                    prompts: str | None) -> list[InputItem]:
    from mmmos.core.manifests import ManifestError, load_manifest

    # a prompted task's lists carry ratings predict does not read (not checked) and rows whose prompt is
    # missing (left null: they become error rows, not warnings)
    problems: list = []
    options = (dict(task=task, check_labels=False, problems=problems, prompts=prompts, prompt=prompt)
               if _prompted(task) else {})
    try:
        df = load_manifest(p, data_root=data_root, **options)
    except ManifestError as e:
        raise PredictorError(str(e)) from e
    texts = df["prompt"].to_list() if "prompt" in df.columns else [prompt] * df.height
    # a row's own reason (its prompt id absent from the table, its text empty) is its error, not the generic one
    why = {pr.clip_id: pr.message for pr in problems if pr.clip_id is not None}
    return [InputItem(str(c), str(q) if q else None, t, error=None if t else why.get(str(c))) for c, q, t in
            zip(df["clip_id"].to_list(), df["path"].to_list(), texts)]


def expand_inputs(inputs: Sequence[str], data_root: str | None = None, *, task: Task | None = None,
                  prompt: str | None = None, prompts: str | None = None) -> list[InputItem]:
    """Items from files, folders (recursive) and manifests, in input order (see the module doc).  ``task``
    (default: audio alone) decides what the items need: with a prompt input, ``.txt`` lists are manifests and
    ``prompts`` is the folder of their prompt tables; ``prompt`` fills files, folders and rows without one."""
    lists = MANIFEST_SUFFIXES + ((".txt",) if _prompted(task) else ())  # MusicEval lists
    items: list[InputItem] = []
    for inp in inputs:
        p = Path(inp)
        if p.is_dir():
            items.extend(folder_items(p, prompt))
        elif p.is_file() and p.suffix.lower() in lists:
            items.extend(_manifest_items(p, data_root, task, prompt, prompts))
        else:
            items.append(_file_item(str(inp), str(inp), prompt))
    return items


__all__ = ["EXTRA_INPUTS", "InputItem", "MANIFEST_SUFFIXES", "as_item", "expand_inputs", "folder_items",
           "missing_input", "printable"]
