"""The embedding cache: one API over two backends (Zarr v3 default, HDF5).

On-disk layout (both backends)::

    <root>/mmmos_store.json               {"format": "mmmos-cache", "version": 1, "backend": ...}
    <root>/encoders/<name>-<idhash>/      one folder per encoder *identity*
        encoder.json                      name, weights + sha256, sample/frame rate, dim, dtype,
                                          config (model config, chunking policy), code version
        ... backend data (see zarr_backend.py / hdf5_backend.py)

A clip's frames are a ``(T, dim)`` array (fp16 by default) with attributes
``clip_id, path, duration, n_frames``.  The identity hash covers everything that
changes the frames, so a changed encoder, weights file or config lands in a new
folder and is never mixed with old frames.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .timing import crop_mean, frame_range

FORMAT = "mmmos-cache"
VERSION = 1
BACKENDS = ("zarr", "hdf5")


class CacheError(RuntimeError):
    pass


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


def clip_key(clip_id: str) -> str:
    """Filesystem/HDF5-safe, unique name for a clip id (ids may hold '/', ',', spaces)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", clip_id).strip("._")[-48:]
    return f"{safe}-{hashlib.sha1(clip_id.encode()).hexdigest()[:12]}"


def identity_key(identity: dict) -> str:
    ident = {k: v for k, v in identity.items() if k != "weights"}  # a moved file is the same encoder
    blob = json.dumps(ident, sort_keys=True, default=str).encode()
    return f"{identity['name']}-{hashlib.sha256(blob).hexdigest()[:12]}"


class EncoderGroup:
    """Read access to one encoder's frames.  Backends implement ``_index`` and ``_read``."""

    def __init__(self, root: Path, info: EncoderInfo):
        self.root = root
        self.info = info
        self._idx: dict[str, ClipInfo] | None = None

    # backend hooks
    def _scan(self) -> dict[str, ClipInfo]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _read(self, clip_id: str, a: int | None = None, b: int | None = None) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    # public API
    def refresh(self) -> None:
        self._idx = None

    @property
    def index(self) -> dict[str, ClipInfo]:
        if self._idx is None:
            self._idx = self._scan()
        return self._idx

    def clip_ids(self) -> list[str]:
        return sorted(self.index)

    def __contains__(self, clip_id: str) -> bool:
        return clip_id in self.index

    def __len__(self) -> int:
        return len(self.index)

    def clip(self, clip_id: str) -> ClipInfo:
        try:
            return self.index[clip_id]
        except KeyError:
            raise KeyError(f"clip {clip_id!r} is not in the {self.info.name} cache at {self.root}") from None

    def read(self, clip_id: str) -> np.ndarray:
        """All frames of a clip, ``(T, dim)`` in the stored dtype."""
        self.clip(clip_id)
        return self._read(clip_id)

    def read_crop(self, clip_id: str, t0: float, duration: float) -> np.ndarray:
        """Frames covering ``[t0, t0 + duration)`` seconds (see ``timing.frame_range``)."""
        a, b = frame_range(t0, duration, self.info.frame_rate, self.clip(clip_id).n_frames)
        return self._read(clip_id, a, b)

    def pooled(self, clip_id: str, t0: float | None = None, duration: float | None = None) -> np.ndarray:
        """float32 mean over the valid frames of the whole clip or of a crop."""
        if t0 is None:
            x = self.read(clip_id)
            return crop_mean(x, 0, len(x))
        x = self.read_crop(clip_id, t0, duration if duration is not None else float("inf"))
        return crop_mean(x, 0, len(x))

    def iter_frames(self, clip_ids: Iterable[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
        for cid in (self.clip_ids() if clip_ids is None else clip_ids):
            yield cid, self.read(cid)


class GroupWriter:
    """Adds clips to one encoder group.  Each clip becomes visible atomically."""

    def __init__(self, root: Path, info: EncoderInfo):
        self.root = root
        self.info = info

    def write(self, clip_id: str, frames: np.ndarray, path: str | None, duration: float) -> None:  # pragma: no cover
        raise NotImplementedError

    def commit(self) -> None:
        """Make everything written so far durable and visible (no-op where each write already is)."""

    def close(self) -> None:
        self.commit()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check(self, clip_id: str, frames: np.ndarray) -> np.ndarray:
        if frames.ndim != 2 or frames.shape[1] != self.info.dim:
            raise CacheError(f"clip {clip_id!r}: frames of shape {frames.shape}, expected (T, {self.info.dim})")
        if frames.shape[0] == 0:
            raise CacheError(f"clip {clip_id!r}: no frames to store")
        if not np.isfinite(frames).all():
            raise CacheError(f"clip {clip_id!r}: non-finite values in the {self.info.name} frames")
        with np.errstate(over="ignore"):  # overflow is checked just below
            out = frames.astype(self.info.dtype, copy=False)
        if not np.isfinite(out).all():
            raise CacheError(f"clip {clip_id!r}: {self.info.name} frames overflow {self.info.dtype}; "
                             f"extract with --dtype float32")
        return out


def chunk_frames(dim: int, itemsize: int = 2, target_bytes: int = 1 << 20) -> int:
    """Time-chunk length giving ~1 MiB chunks (a power of two, at least 16 frames)."""
    n = max(16, target_bytes // max(1, dim * itemsize))
    return 1 << (int(n).bit_length() - 1)


class CacheStore:
    """Open with :func:`open_store`.  ``store.group("wavlm")`` gives an :class:`EncoderGroup`."""

    def __init__(self, root: Path, backend: str):
        self.root = root
        self.backend = backend
        self._groups: dict[str, EncoderGroup] = {}

    def _backend(self):
        if self.backend == "zarr":
            from . import zarr_backend as m
        else:
            from . import hdf5_backend as m
        return m

    def encoders(self) -> list[EncoderInfo]:
        out = []
        enc_dir = self.root / "encoders"
        if enc_dir.is_dir():
            for d in sorted(enc_dir.iterdir()):
                f = d / "encoder.json"
                if f.is_file():
                    out.append(EncoderInfo.from_json(d.name, json.loads(f.read_text())))
        return out

    def find(self, name_or_key: str) -> EncoderInfo:
        """Resolve an encoder name (or exact identity key) to the one identity stored for it."""
        infos = self.encoders()
        exact = [i for i in infos if i.key == name_or_key]
        if exact:
            return exact[0]
        named = [i for i in infos if i.name == name_or_key]
        if not named:
            have = ", ".join(i.key for i in infos) or "none"
            raise CacheError(f"{self.root}: no {name_or_key!r} frames in this cache (it holds: {have}). "
                             f"Run `mmmos extract --encoders {name_or_key} --store {self.root} ...` first.")
        if len(named) > 1:
            raise CacheError(f"{self.root}: several {name_or_key!r} identities are stored "
                             f"({', '.join(i.key for i in named)}); name one by its key")
        return named[0]

    def group(self, name_or_key: str) -> EncoderGroup:
        info = self.find(name_or_key)
        if info.key not in self._groups:
            self._groups[info.key] = self._backend().Group(self.root / "encoders" / info.key, info)
        return self._groups[info.key]

    def writer(self, identity: dict, dtype: str = "float16") -> GroupWriter:
        """Writer for an encoder identity; creates its folder or checks the stored one matches."""
        ident = dict(identity)
        ident["dtype"] = dtype
        key = identity_key(ident)
        d = self.root / "encoders" / key
        f = d / "encoder.json"
        if f.is_file():
            stored = json.loads(f.read_text())
            a = {k: v for k, v in stored.items() if k != "weights"}
            b = json.loads(json.dumps({k: v for k, v in ident.items() if k != "weights"}, default=str))
            if a != b:  # only a hash collision could get here
                raise CacheError(f"{f}: stored identity differs from the encoder being written")
        else:
            d.mkdir(parents=True, exist_ok=True)
            _atomic_write_text(f, json.dumps(ident, indent=2, sort_keys=True, default=str))
        info = EncoderInfo.from_json(key, json.loads(f.read_text()))
        self._groups.pop(key, None)
        return self._backend().Writer(d, info)


def pid_alive(pid: int) -> bool:
    """Whether a process of this host still runs (used to clean up only dead writers' leftovers)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def open_store(root: str | os.PathLike, backend: str | None = None, create: bool = False) -> CacheStore:
    """Open (or with ``create=True`` make) a cache at ``root``.

    ``backend`` is "zarr" or "hdf5"; for an existing store it is read from
    ``mmmos_store.json`` and a different explicit choice is an error."""
    root = Path(root)
    meta = root / "mmmos_store.json"
    if meta.is_file():
        m = json.loads(meta.read_text())
        if m.get("format") != FORMAT:
            raise CacheError(f"{meta}: not an mmmos cache")
        if backend and backend != m["backend"]:
            raise CacheError(f"{root} is a {m['backend']} cache, not {backend}")
        return CacheStore(root, m["backend"])
    if not create:
        raise CacheError(f"{root}: no mmmos cache here (missing mmmos_store.json); run `mmmos extract` first")
    backend = backend or "zarr"
    if backend not in BACKENDS:
        raise CacheError(f"unknown cache backend {backend!r}; choose from {', '.join(BACKENDS)}")
    root.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(meta, json.dumps({"format": FORMAT, "version": VERSION, "backend": backend}))
    return CacheStore(root, backend)
