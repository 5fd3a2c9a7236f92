"""Zarr v3 backend: one compressed array per clip, committed by a directory rename.

    encoders/<key>/zarr.json                 group (attributes = encoder identity)
    encoders/<key>/clips/<clip_key>/         array (T, dim), chunks (chunk_frames, dim), zstd;
                                             attributes clip_id, path, duration, n_frames
    encoders/<key>/_staging/                 clips being written (never read)

A clip is written in full under ``_staging`` and then renamed into ``clips/``; a
rename is atomic, so a killed process leaves each clip complete or absent.  The
folders are plain Zarr v3 groups: ``zarr.open_group(root)`` works for other tools.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from pathlib import Path

import numpy as np
import zarr

from .store import ClipInfo, EncoderGroup, GroupWriter, chunk_frames, clip_key, pid_alive

_GROUP_META = {"zarr_format": 3, "node_type": "group", "attributes": {}}


def _ensure_group(path: Path, attributes: dict | None = None) -> None:
    meta = path / "zarr.json"
    if not meta.is_file():
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / f".zarr.json.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        tmp.write_text(json.dumps({**_GROUP_META, "attributes": attributes or {}}, default=str))
        os.replace(tmp, meta)


class Group(EncoderGroup):
    def __init__(self, root, info):
        super().__init__(root, info)
        self._arrays: dict[str, zarr.Array] = {}
        self._keys: dict[str, str] = {}

    def _scan(self) -> dict[str, ClipInfo]:
        out: dict[str, ClipInfo] = {}
        self._keys = {}
        clips = self.root / "clips"
        if not clips.is_dir():
            return out
        with os.scandir(clips) as it:
            for e in it:
                meta = Path(e.path) / "zarr.json"
                if not e.is_dir() or not meta.is_file():
                    continue
                a = json.loads(meta.read_text())["attributes"]
                out[a["clip_id"]] = ClipInfo(a["clip_id"], a.get("path"), float(a["duration"]), int(a["n_frames"]))
                self._keys[a["clip_id"]] = e.name
        return out

    def _array(self, clip_id: str) -> zarr.Array:
        arr = self._arrays.get(clip_id)
        if arr is None:
            arr = zarr.open_array(str(self.root / "clips" / self._keys[clip_id]), mode="r")
            self._arrays[clip_id] = arr
        return arr

    def _read(self, clip_id, a=None, b=None) -> np.ndarray:
        arr = self._array(clip_id)
        return arr[:] if a is None else arr[a:b]


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

    def write(self, clip_id, frames, path, duration):
        data = self._check(clip_id, np.asarray(frames))
        key = clip_key(clip_id)
        final = self.root / "clips" / key
        tmp = self.staging / f"{key}~{socket.gethostname()}~{os.getpid()}.{uuid.uuid4().hex[:8]}"
        zarr.create_array(
            str(tmp), shape=data.shape, dtype=data.dtype, chunks=(chunk_frames(data.shape[1], data.itemsize), data.shape[1]),
            attributes={"clip_id": clip_id, "path": path, "duration": float(duration), "n_frames": int(data.shape[0])},
        )[:] = data
        if final.exists():  # written meanwhile by another worker: same identity, same frames
            shutil.rmtree(tmp, ignore_errors=True)
            return
        try:
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not final.exists():
                raise

