"""HDF5 backend: clips are appended in *part files* that are committed by rename.

    encoders/<key>/parts/part-<host>-<pid>-<n>.h5    datasets /clips/<clip_key> (T, dim),
                                                     gzip, chunked along time; attributes
                                                     clip_id, path, duration, n_frames
    encoders/<key>/parts/*.h5.tmp                    a part being written (never read)

HDF5 files are not crash-safe while open, so a writer fills a ``.tmp`` part and
renames it to ``.h5`` on ``commit()`` (every ``commit_every`` clips and on close).
A killed run loses at most the uncommitted clips, which the next run extracts
again; committed clips are always complete.  Several workers can write at once
(each to its own parts).  A clip found in two parts is read from the first.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import h5py
import numpy as np

from .store import ClipInfo, EncoderGroup, GroupWriter, chunk_frames, clip_key, pid_alive


class Group(EncoderGroup):
    def __init__(self, root, info):
        super().__init__(root, info)
        self._where: dict[str, tuple[Path, str]] = {}
        self._files: dict[Path, h5py.File] = {}

    def _scan(self) -> dict[str, ClipInfo]:
        out: dict[str, ClipInfo] = {}
        self._where = {}
        parts = self.root / "parts"
        if not parts.is_dir():
            return out
        for p in sorted(parts.glob("*.h5")):
            f = self._file(p)
            for k, ds in f["clips"].items():
                a = ds.attrs
                cid = str(a["clip_id"])
                if cid in out:
                    continue
                path = a.get("path")
                out[cid] = ClipInfo(cid, None if path in (None, "") else str(path), float(a["duration"]), int(a["n_frames"]))
                self._where[cid] = (p, k)
        return out

    def _file(self, p: Path) -> h5py.File:
        if p not in self._files:
            self._files[p] = h5py.File(p, "r")
        return self._files[p]

    def _read(self, clip_id, a=None, b=None) -> np.ndarray:
        p, k = self._where[clip_id]
        ds = self._file(p)["clips"][k]
        return ds[:] if a is None else ds[a:b]

    def refresh(self):
        for f in self._files.values():
            f.close()
        self._files = {}
        super().refresh()


class Writer(GroupWriter):
    def __init__(self, root, info, commit_every: int = 32):
        super().__init__(root, info)
        self.parts = root / "parts"
        self.parts.mkdir(parents=True, exist_ok=True)
        self.commit_every = commit_every
        self._f: h5py.File | None = None
        self._tmp: Path | None = None
        self._n = 0
        self._seq = 0
        host = socket.gethostname()
        for t in self.parts.glob(f"part-{host}-*.h5.tmp"):  # parts of dead runs on this host
            pid = int(t.name.split("-")[-2])
            if not pid_alive(pid):
                t.unlink(missing_ok=True)

    def _open(self) -> h5py.File:
        if self._f is None:
            while True:
                name = f"part-{socket.gethostname()}-{os.getpid()}-{self._seq:05d}.h5"
                self._seq += 1
                if not (self.parts / name).exists():
                    break
            self._tmp = self.parts / (name + ".tmp")
            self._f = h5py.File(self._tmp, "w")
            self._f.create_group("clips")
            self._n = 0
        return self._f

    def write(self, clip_id, frames, path, duration):
        data = self._check(clip_id, np.asarray(frames))
        f = self._open()
        key = clip_key(clip_id)
        if key in f["clips"]:
            return
        ds = f["clips"].create_dataset(key, data=data, chunks=(min(len(data), chunk_frames(data.shape[1], data.itemsize)), data.shape[1]),
                                       compression="gzip", compression_opts=1, shuffle=True)
        ds.attrs.update({"clip_id": clip_id, "path": path or "", "duration": float(duration), "n_frames": int(len(data))})
        self._n += 1
        if self._n >= self.commit_every:
            self.commit()

    def commit(self):
        if self._f is None:
            return
        self._f.flush()
        self._f.close()
        self._f = None
        final = self._tmp.with_suffix("")  # drop ".tmp"
        if self._n:
            os.replace(self._tmp, final)
        else:
            self._tmp.unlink(missing_ok=True)

