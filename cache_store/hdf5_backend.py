"""HDF5 backend: clips are appended in *part files* that are committed by rename.

    encoders/<key>/parts/part-<host>-<pid>-<n>.h5    datasets /clips/<clip_key> (T, dim), gzip + Fletcher-32
                                                     checksums, chunked along time; attribute ``mmmos_clip``
                                                     (JSON: clip_id, path, duration, n_frames, source,
                                                     frames_crc32, meta_crc32) and legacy plain attributes
    encoders/<key>/parts/part-....h5.index.json      sidecar: commit time and the clips of the part, so a part
                                                     that no longer opens still names the clips it held
    encoders/<key>/parts/*.h5.tmp                    a part being written (never read)
    encoders/<key>/parts/*.h5.damaged                an unreadable part set aside by a writer after repair

HDF5 files are not crash-safe while open, so a writer fills a ``.tmp`` part and renames it to ``.h5`` on
``commit()`` (every ``commit_every`` clips and on close).  A killed run loses at most the uncommitted
clips, which the next run extracts again.  Several writers can work at once (each to its own parts; clip
claims keep them from writing a clip twice).  When a clip is in several parts (a repair), the most
recently committed valid copy is read.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import h5py
import numpy as np

from mmmos.core.interrupts import shielded

from .group import EncoderGroup, GroupWriter
from .locking import folder_lock, pid_alive
from .records import (ClipInfo, Damage, atomic_write_text, chunk_frames, clip_attributes, clip_from_attributes,
                      clip_key)

SIDECAR = ".index.json"


def _sidecar(part: Path) -> dict | None:
    try:
        return json.loads((part.parent / (part.name + SIDECAR)).read_text())
    except (OSError, ValueError):
        return None


def _attrs(ds) -> dict:
    a = ds.attrs
    if "mmmos_clip" in a:
        return json.loads(str(a["mmmos_clip"]))
    return {"clip_id": str(a["clip_id"]), "path": a.get("path"), "duration": a["duration"],
            "n_frames": a["n_frames"]}  # parts written before integrity attributes existed


def _complete_clips(f: h5py.File) -> list[str]:
    """Clip ids of an open part's complete datasets (metadata written); deletes any dataset without it."""
    out = []
    for k in list(f["clips"]):
        a = f["clips"][k].attrs
        if "mmmos_clip" in a:
            out.append(json.loads(str(a["mmmos_clip"]))["clip_id"])
        else:
            del f["clips"][k]
    return out


class Group(EncoderGroup):
    def __init__(self, root, info):
        super().__init__(root, info)
        self._where: dict[str, tuple[Path, str]] = {}
        self._files: dict[Path, h5py.File] = {}
        self.unreadable_parts: dict[Path, set[str] | None] = {}  # part -> clip keys it held (None: unknown)

    def _ordered_parts(self) -> list[Path]:
        """Parts oldest commit first, so a later copy of a clip (a repair) overrides an earlier one."""
        parts = self.root / "parts"
        if not parts.is_dir():
            return []
        found = [(int((_sidecar(p) or {}).get("committed_ns", 0)), p.name, p) for p in parts.glob("*.h5")]
        return [p for _, _, p in sorted(found)]

    def _scan(self) -> tuple[dict[str, ClipInfo], list[Damage]]:
        self.refresh_files()
        out: dict[str, ClipInfo] = {}
        bad: dict[str, Damage] = {}  # by key; dropped when a valid copy exists
        self._where, self.unreadable_parts = {}, {}
        for p in self._ordered_parts():
            names = (_sidecar(p) or {}).get("clips")
            try:
                items = list(self._file(p)["clips"].items())
            except Exception as e:  # noqa: BLE001 - a bad part loses only its own clips
                self.unreadable_parts[p] = set(names) if names is not None else None
                reason = f"part file unreadable ({type(e).__name__}: {e})"
                for k, cid in (names or {}).items():
                    bad[k] = Damage(self.info.key, cid, k, str(p), reason)
                if names is None:
                    bad[f"part:{p.name}"] = Damage(self.info.key, None, None, str(p), reason + "; clips unknown")
                continue
            for k, ds in items:
                try:
                    info = clip_from_attributes(_attrs(ds), k, self.info.dim, ds.shape)
                except Exception as e:  # noqa: BLE001
                    cid = (names or {}).get(k)
                    bad[k] = Damage(self.info.key, cid, k, str(p), f"unreadable metadata ({type(e).__name__}: {e})")
                    continue
                out[info.clip_id] = info
                self._where[info.clip_id] = (p, k)
        present = {clip_key(c) for c in out}
        return out, [d for k, d in bad.items() if k not in present]

    def _file(self, p: Path | str) -> h5py.File:
        p = Path(p)
        if p not in self._files:
            self._files[p] = h5py.File(p, "r")
        return self._files[p]

    def _location(self, clip_id: str) -> str:
        return str(self._where[clip_id][0]) if clip_id in self._where else str(self.root / "parts")

    def _read(self, clip_id, a=None, b=None) -> np.ndarray:
        p, k = self._where[clip_id]
        ds = self._file(p)["clips"][k]
        return ds[:] if a is None else ds[a:b]

    def refresh_files(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}

    def refresh(self):
        self.refresh_files()
        super().refresh()


class Writer(GroupWriter):
    def __init__(self, root, info, commit_every: int = 32):
        super().__init__(root, info)
        self.parts = root / "parts"
        self.parts.mkdir(parents=True, exist_ok=True)
        self.commit_every = commit_every
        self._f: h5py.File | None = None
        self._tmp: Path | None = None
        self._pending: list[str] = []
        self._seq = 0
        self._mine: set[str] = set()
        host = socket.gethostname()
        for t in self.parts.glob(f"part-{host}-*.h5.tmp"):  # parts of dead runs on this host
            pid = int(t.name.split("-")[-2])
            if not pid_alive(pid):
                t.unlink(missing_ok=True)
        with folder_lock(self.root):  # a sidecar is written just before its part's rename, under the same lock
            for s in self.parts.glob("*.h5" + SIDECAR):
                part = s.with_name(s.name[: -len(SIDECAR)])
                if not part.exists() and not part.with_name(part.name + ".tmp").exists():
                    s.unlink(missing_ok=True)  # its part never landed: it must not name clips as committed

    def _open(self) -> h5py.File:
        if self._f is None:
            while True:
                name = f"part-{socket.gethostname()}-{os.getpid()}-{self._seq:05d}.h5"
                self._seq += 1
                if not (self.parts / name).exists() and not (self.parts / (name + ".tmp")).exists():
                    break
            self._tmp = self.parts / (name + ".tmp")
            self._f = h5py.File(self._tmp, "w")
            self._f.create_group("clips")
            self._pending = []
        return self._f

    def _fresh_keys(self, keys):
        out = set()
        for s in self.parts.glob("*.h5" + SIDECAR):
            if s.name[: -len(SIDECAR)] in self._mine:
                continue
            try:
                if s.stat().st_mtime < self.t_open:
                    continue
                out |= keys & set(json.loads(s.read_text()).get("clips", {}))
            except (OSError, ValueError):
                continue
        return out

    def write(self, clip_id, frames, path, duration, source=None, replace=False) -> bool:
        """Add one clip to the open part (durable at the next commit); a repair simply adds a newer copy."""
        data = self._check(clip_id, np.asarray(frames))
        f = self._open()
        key = clip_key(clip_id)
        if key in f["clips"]:
            return False
        attrs = clip_attributes(clip_id, path, duration, data, source, self.computed)
        try:
            ds = f["clips"].create_dataset(
                key, data=data, chunks=(min(len(data), chunk_frames(data.shape[1], data.itemsize)), data.shape[1]),
                compression="gzip", compression_opts=1, shuffle=True, fletcher32=True)
            ds.attrs["mmmos_clip"] = json.dumps(attrs, ensure_ascii=True)
            ds.attrs.update({"path": path or "", "duration": float(duration), "n_frames": int(len(data))})
            if "\x00" not in clip_id:  # HDF5 strings cannot hold NUL; the JSON attribute above can
                ds.attrs["clip_id"] = clip_id
        except BaseException:
            if key in f["clips"]:  # never leave a dataset without its metadata
                del f["clips"][key]
            raise
        self._pending.append(clip_id)
        if len(self._pending) >= self.commit_every:
            self.commit()
        return True

    def commit(self):
        if self._f is None:
            return
        with shielded():  # the sidecar and the part's rename land together or not at all
            # the part's own datasets, not our list, say what it holds: an interrupt between a dataset's creation
            # and the list's update must neither hide a clip from the sidecar nor commit one without metadata
            pending = _complete_clips(self._f)
            self._f.flush()
            self._f.close()
            self._f = None
            self._pending = []
            if not pending:
                self._tmp.unlink(missing_ok=True)
                return
            final = self._tmp.with_suffix("")  # drop ".tmp"
            with folder_lock(self.root):  # claimers see either our claims or the committed part
                atomic_write_text(self.parts / (final.name + SIDECAR), json.dumps(
                    {"committed_ns": time.time_ns(), "clips": {clip_key(c): c for c in pending}},
                    ensure_ascii=True))
                os.replace(self._tmp, final)
                self._mine.add(final.name)
            self._committed_now(pending)

    def close(self):
        super().close()
        self.set_aside_unreadable()

    def set_aside_unreadable(self) -> list[Path]:
        """Rename unreadable parts whose clips all have valid copies elsewhere (or are unknown) to ``*.damaged``."""
        g = Group(self.root, self.info)
        g.index  # noqa: B018 - scan
        present = {clip_key(c) for c in g.index}
        moved = []
        for p, keys in g.unreadable_parts.items():
            if keys is None or keys <= present:
                os.replace(p, p.with_name(p.name + ".damaged"))
                moved.append(p)
        g.refresh_files()
        return moved
