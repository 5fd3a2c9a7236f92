"""Zarr v3 backend: one compressed array per clip, committed by a directory rename.

    encoders/<key>/zarr.json                 group (attributes = encoder identity)
    encoders/<key>/clips/<clip_key>/         array (T, dim), chunks (chunk_frames, dim), zstd + crc32c per chunk;
                                             attributes clip_id, path, duration, n_frames, source,
                                             frames_crc32, meta_crc32 (see records.py)
    encoders/<key>/_staging/                 clips being written (never read)
    encoders/<key>/claims/, .lock, damaged.json   writer coordination and recorded damage (see group.py)

A clip is written in full under ``_staging`` and then renamed into ``clips/``; a rename is atomic, so a
killed process leaves each clip complete or absent.  Every chunk is written (also all-zero ones), so a
missing chunk file is damage, not a fill value.  The folders are plain Zarr v3 groups:
``zarr.open_group(root)`` works for other tools.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import socket
import uuid
from pathlib import Path

import numpy as np
import zarr

from .group import EncoderGroup, GroupWriter
from .locking import pid_alive
from .records import ClipInfo, Damage, chunk_frames, clip_attributes, clip_from_attributes, clip_key

_GROUP_META = {"zarr_format": 3, "node_type": "group", "attributes": {}}


def _ensure_group(path: Path, attributes: dict | None = None) -> None:
    meta = path / "zarr.json"
    if not meta.is_file():
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / f".zarr.json.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        tmp.write_text(json.dumps({**_GROUP_META, "attributes": attributes or {}}, default=str))
        os.replace(tmp, meta)


def _chunk_paths(folder: Path, meta: dict, a: int | None, b: int | None) -> list[Path]:
    """Chunk files holding rows ``[a, b)`` of a 2-D array with the default chunk key encoding."""
    shape, chunks = meta["shape"], meta["chunk_grid"]["configuration"]["chunk_shape"]
    sep = meta.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/")
    a, b = (0, shape[0]) if a is None else (a, b)
    rows = range(a // chunks[0], math.ceil(b / chunks[0]))
    cols = range(math.ceil(shape[1] / chunks[1]))
    return [folder / sep.join(["c", str(i), str(j)]) for i in rows for j in cols]


class Group(EncoderGroup):
    def __init__(self, root, info):
        super().__init__(root, info)
        self._arrays: dict[str, zarr.Array] = {}
        self._keys: dict[str, str] = {}
        self._meta: dict[str, dict] = {}

    def _scan(self) -> tuple[dict[str, ClipInfo], list[Damage]]:
        out: dict[str, ClipInfo] = {}
        damage: list[Damage] = []
        self._keys, self._meta, self._arrays = {}, {}, {}
        clips = self.root / "clips"
        if not clips.is_dir():
            return out, damage
        with os.scandir(clips) as it:
            for e in it:
                if not e.is_dir() or e.name.startswith("."):
                    continue
                meta_file = Path(e.path) / "zarr.json"
                try:
                    meta = json.loads(meta_file.read_text())
                    info = clip_from_attributes(meta["attributes"], e.name, self.info.dim, meta.get("shape"))
                except Exception as ex:  # noqa: BLE001 - one bad clip stays one bad clip
                    reason = "metadata file missing" if not meta_file.exists() else \
                        f"unreadable metadata ({type(ex).__name__}: {ex})"
                    cid = _guess_id(meta_file)
                    damage.append(Damage(self.info.key, cid, e.name, str(meta_file), reason))
                    continue
                out[info.clip_id] = info
                self._keys[info.clip_id] = e.name
                self._meta[info.clip_id] = meta
        return out, damage

    def _location(self, clip_id: str) -> str:
        return str(self.root / "clips" / self._keys.get(clip_id, clip_key(clip_id)))

    def _missing(self, clip_id, a=None, b=None):
        meta = self._meta.get(clip_id)
        if meta is None:
            return "not listed"
        gone = [p for p in _chunk_paths(Path(self._location(clip_id)), meta, a, b) if not p.is_file()]
        return f"chunk file(s) missing: {', '.join(str(p) for p in gone[:3])}" if gone else None

    def _array(self, clip_id: str) -> zarr.Array:
        arr = self._arrays.get(clip_id)
        if arr is None:
            arr = zarr.open_array(self._location(clip_id), mode="r")
            self._arrays[clip_id] = arr
        return arr

    def _read(self, clip_id, a=None, b=None) -> np.ndarray:
        arr = self._array(clip_id)
        return arr[:] if a is None else arr[a:b]


def _guess_id(meta_file: Path) -> str | None:
    """The clip id a damaged metadata file still shows, if its JSON parses."""
    try:
        cid = json.loads(meta_file.read_text())["attributes"]["clip_id"]
        return cid if isinstance(cid, str) and clip_key(cid) == meta_file.parent.name else None
    except Exception:  # noqa: BLE001
        return None


class Writer(GroupWriter):
    def __init__(self, root, info):
        super().__init__(root, info)
        _ensure_group(root, {"encoder": info.identity})
        _ensure_group(root / "clips")
        self.staging = root / "_staging"
        self.staging.mkdir(exist_ok=True)
        self._clean_staging()

    def _clean_staging(self) -> None:
        """Remove half-written clips left by dead processes of this host (others may be live workers)."""
        host = socket.gethostname()
        for d in self.staging.iterdir():
            parts = d.name.rsplit("~", 2)
            if len(parts) == 3 and parts[1] == host and not pid_alive(int(parts[2].split(".")[0])):
                shutil.rmtree(d, ignore_errors=True)

    def _fresh_keys(self, keys):
        out = set()
        for k in keys:
            try:
                if (self.root / "clips" / k / "zarr.json").stat().st_mtime >= self.t_open:
                    out.add(k)
            except OSError:
                pass
        return out

    def _valid(self, final: Path, key: str) -> bool:
        try:
            meta = json.loads((final / "zarr.json").read_text())
            clip_from_attributes(meta["attributes"], key, self.info.dim, meta.get("shape"))
            return all(p.is_file() for p in _chunk_paths(final, meta, None, None))
        except Exception:  # noqa: BLE001
            return False

    def write(self, clip_id, frames, path, duration, source=None, replace=False) -> bool:
        """Store one clip; returns False when a valid copy was already there (and ``replace`` is off)."""
        data = self._check(clip_id, np.asarray(frames))
        key = clip_key(clip_id)
        final = self.root / "clips" / key
        stamp = f"{socket.gethostname()}~{os.getpid()}.{uuid.uuid4().hex[:8]}"
        tmp = self.staging / f"{key}~{stamp}"
        arr = zarr.create_array(
            str(tmp), shape=data.shape, dtype=data.dtype, chunks=(chunk_frames(data.shape[1], data.itemsize), data.shape[1]),
            compressors=[zarr.codecs.ZstdCodec(level=0), zarr.codecs.Crc32cCodec()],
            config={"write_empty_chunks": True},  # a missing chunk must mean damage, never "all zeros"
            attributes=clip_attributes(clip_id, path, duration, data, source, self.computed))
        arr[:] = data
        if final.exists():
            if not replace and self._valid(final, key):  # written meanwhile by another worker
                shutil.rmtree(tmp, ignore_errors=True)
                return False
            old = self.staging / f"{key}~old~{stamp}"  # damaged, stale or half-deleted: swap it out
            os.rename(final, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not final.exists():
                raise
            return False
        self._committed_now([clip_id])
        return True
