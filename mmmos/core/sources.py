"""What identifies a clip's source audio, so cached frames are reused only for the same audio.

A :class:`SourceId` records the file's resolved path, size, modification time (ns) and the sha256 of its bytes.
Reuse is decided on the **content hash**: a file replaced by another at the same path (or a clip id pointing
at another file) never matches, while a file that was only moved or touched still does. We hash the file bytes
rather than the decoded audio because deciding to skip a clip must not cost a decode (the bytes hash of a
10-s clip takes about a millisecond); a re-encoded file with identical samples counts as changed, which only
costs a re-extraction.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class SourceId:
    path: str
    size: int
    mtime_ns: int
    sha256: str

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict | None) -> "SourceId | None":
        if not d or "sha256" not in d:
            return None
        return cls(str(d.get("path", "")), int(d.get("size", -1)), int(d.get("mtime_ns", -1)), str(d["sha256"]))


def file_sha256(path: str | os.PathLike, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(path: str | os.PathLike) -> SourceId:
    """The :class:`SourceId` of the file at ``path`` (raises OSError when it cannot be read)."""
    p = Path(path)
    st = p.stat()
    return SourceId(str(p.resolve()), int(st.st_size), int(st.st_mtime_ns), file_sha256(p))


def same_source(recorded: SourceId | dict | None, current: SourceId) -> bool:
    """True when ``recorded`` (a SourceId or its JSON) holds the same bytes as ``current``."""
    rec = recorded if isinstance(recorded, SourceId) or recorded is None else SourceId.from_json(recorded)
    return rec is not None and rec.sha256 == current.sha256 and rec.size == current.size


__all__ = ["SourceId", "file_sha256", "fingerprint", "same_source"]
