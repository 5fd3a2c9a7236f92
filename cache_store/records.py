"""What the cache stores about encoders and clips, and how a clip's integrity is checked.

Shared by the store and both backends (which import this module, never each other or ``store``).

A clip written by this version carries, besides ``clip_id, path, duration, n_frames``:

* ``source``       - the :class:`mmmos.core.sources.SourceId` JSON of the audio it came from;
* ``frames_crc32`` - crc32 of the stored frames (little-endian bytes, C order), checked on every full read;
* ``meta_crc32``   - crc32 of the other attributes (canonical JSON), checked when the clip list is scanned.

Clips written before these existed have none of them: they read as before and count as *unverified*.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmmos.core.errors import UserError
from mmmos.core.sources import SourceId

FORMAT = "mmmos-cache"
VERSION = 1
DAMAGE_FILE = "damaged.json"  # per encoder folder: damage found by readers/verify, cleared by repairs


class CacheError(UserError, RuntimeError):
    """A cache problem the user can act on (missing store/encoder, refused frames, wrong backend)."""


class DamagedClipError(CacheError):
    """A clip's stored frames or metadata fail their checks; ``mmmos extract`` re-extracts it."""

    def __init__(self, damage: "Damage"):
        self.damage = damage
        super().__init__(damage.describe())


@dataclass(frozen=True)
class Damage:
    """One damaged clip (``clip_id`` None when even its id is unreadable) or unreadable file."""

    encoder: str
    clip_id: str | None
    key: str | None  # clip_key of the clip, when known
    file: str
    reason: str

    def describe(self) -> str:
        who = f"clip {self.clip_id!r}" if self.clip_id is not None else f"clip folder/key {self.key!r}" \
            if self.key else "unknown clips"
        return (f"damaged cache entry: encoder {self.encoder}, {who}, file {self.file}: {self.reason} "
                f"(`mmmos extract` over the same manifest re-extracts it)")

    def to_json(self) -> dict:
        return {"encoder": self.encoder, "clip_id": self.clip_id, "key": self.key, "file": self.file,
                "reason": self.reason}


@dataclass(frozen=True)
class EncoderInfo:
    key: str  # folder name, "<name>-<idhash>"
    name: str
    sample_rate: int
    frame_rate: float
    dim: int
    dtype: str
    identity: dict

    @classmethod
    def from_json(cls, key: str, d: dict) -> "EncoderInfo":
        return cls(key=key, name=d["name"], sample_rate=int(d["sample_rate"]), frame_rate=float(d["frame_rate"]),
                   dim=int(d["dim"]), dtype=d.get("dtype", "float16"), identity=d)


@dataclass(frozen=True)
class ClipInfo:
    clip_id: str
    path: str | None
    duration: float
    n_frames: int
    source: SourceId | None = None  # None: written before sources were recorded (unverified)
    frames_crc32: int | None = None
    # how the frames were computed: {"device", "batch_size", "threads", "precision"} (None: not recorded).  The
    # batch policy changes frames only at the store's rounding (README "Reliability"), so it is recorded per clip
    # rather than splitting the cache by it.
    computed: dict | None = None


def clip_key(clip_id: str) -> str:
    """Filesystem/HDF5-safe, unique name for a clip id (ids may hold '/', ',', spaces, NUL)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", clip_id).strip("._")[-48:]
    return f"{safe}-{hashlib.sha1(clip_id.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"


def identity_key(identity: dict) -> str:
    ident = {k: v for k, v in identity.items() if k != "weights"}  # a moved file is the same encoder
    blob = json.dumps(ident, sort_keys=True, default=str).encode()
    return f"{identity['name']}-{hashlib.sha256(blob).hexdigest()[:12]}"


def chunk_frames(dim: int, itemsize: int = 2, target_bytes: int = 1 << 20) -> int:
    """Time-chunk length giving ~1 MiB chunks (a power of two, at least 16 frames)."""
    n = max(16, target_bytes // max(1, dim * itemsize))
    return 1 << (int(n).bit_length() - 1)


def frames_crc32(frames: np.ndarray) -> int:
    """crc32 of the frames as stored: little-endian, C order."""
    x = np.ascontiguousarray(frames, dtype=frames.dtype.newbyteorder("<"))
    return zlib.crc32(memoryview(x).cast("B"))


def _canonical(attrs: dict) -> bytes:
    body = {k: v for k, v in attrs.items() if k != "meta_crc32"}
    return json.dumps(body, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode()


def clip_attributes(clip_id: str, path: str | None, duration: float, frames: np.ndarray,
                    source: SourceId | dict | None, computed: dict | None = None) -> dict:
    """The attributes a backend stores with a clip, sealed by ``meta_crc32``."""
    src = source.to_json() if isinstance(source, SourceId) else source
    attrs = {"clip_id": clip_id, "path": path, "duration": float(duration), "n_frames": int(frames.shape[0]),
             "source": src, "frames_crc32": frames_crc32(frames)}
    if computed:
        attrs["computed"] = dict(computed)
    attrs["meta_crc32"] = zlib.crc32(_canonical(attrs))
    return attrs


def clip_from_attributes(attrs: dict, key: str, dim: int, shape: tuple | None) -> ClipInfo:
    """A :class:`ClipInfo` from stored attributes; raises ``ValueError`` naming what does not check out."""
    if "meta_crc32" in attrs and zlib.crc32(_canonical(attrs)) != int(attrs["meta_crc32"]):
        raise ValueError("clip metadata was altered (meta_crc32 mismatch)")
    cid = attrs["clip_id"]
    if not isinstance(cid, str) or clip_key(cid) != key:
        raise ValueError(f"metadata names clip {cid!r}, which does not belong under key {key!r}")
    info = ClipInfo(cid, None if attrs.get("path") in (None, "") else str(attrs["path"]), float(attrs["duration"]),
                    int(attrs["n_frames"]), SourceId.from_json(attrs.get("source")),
                    None if attrs.get("frames_crc32") is None else int(attrs["frames_crc32"]),
                    attrs.get("computed") if isinstance(attrs.get("computed"), dict) else None)
    if shape is not None and (len(shape) != 2 or int(shape[0]) != info.n_frames or int(shape[1]) != dim):
        raise ValueError(f"stored shape {tuple(shape)} does not match n_frames {info.n_frames} x dim {dim}")
    return info


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(text):x}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


__all__ = ["DAMAGE_FILE", "FORMAT", "VERSION", "CacheError", "ClipInfo", "Damage", "DamagedClipError", "EncoderInfo",
           "atomic_write_text", "chunk_frames", "clip_attributes", "clip_from_attributes", "clip_key", "frames_crc32",
           "identity_key"]
