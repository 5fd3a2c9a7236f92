"""What a row does not say outright: its system and domain (the task's rules) and the list's split (file name)."""
from __future__ import annotations

import os
import re
from pathlib import Path

from mmmos.core.tasks import Task, get_task

_SPLIT_TOKENS = {
    "train": "train", "training": "train",
    "dev": "dev", "val": "dev", "valid": "dev", "validation": "dev",
    "test": "test", "eval": "test",
}


def infer_system(clip_id: str | None, path: str | None, task: str | Task | None = None) -> str | None:
    """System id of a clip by the task's rule (track2: the ``sys...`` token, else the AES-PAM folder), else None."""
    return get_task(task).system_of(clip_id, path)


def infer_domain(path: str | None, clip_id: str | None = None, task: str | Task | None = None) -> str | None:
    """Domain of a clip by the task's rule (track2: the official id's token, else dataset names in the path)."""
    return get_task(task).domain_of(clip_id, path)


def infer_split(path: str | os.PathLike) -> str | None:
    """``train``/``dev``/``test`` from tokens of a file (or folder) name, else None if none/ambiguous."""
    stem = Path(path).name.lower()
    for ext in (".csv", ".jsonl", ".json", ".ndjson", ".txt"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    found = {_SPLIT_TOKENS[t] for t in re.split(r"[^a-z0-9]+", stem) if t in _SPLIT_TOKENS}
    return found.pop() if len(found) == 1 else None
