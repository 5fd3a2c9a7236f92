"""A sweep's frames read once: each encoder's clips packed into one memory-mapped file.

A sweep trains many configurations (and runs ``--jobs`` worker processes) from the same frames.  Reading them
from the store costs decoding, checksums and small-file I/O every time; so the sweep reads each listed clip of
each encoder once (:func:`pack_frames`), appends its frames to ``<folder>/<n>.bin`` (the stored dtype, rows
concatenated) and hands the workers a picklable :class:`FramePack`.  Every process maps the same files
read-only (``np.memmap``): the operating system's page cache holds the frames once for all workers, no process
has a copy of its own, and a clip's frames are a view of the map - the same bytes, the same dtype and layout
as a store read, so every feature computed from them is bit-identical.

Damage keeps its old meaning: a clip that fails its read while packing is left out of the pack, still counts as
valid to :meth:`PackedGroup.is_valid` (as it did before its first read) and raises the same
:class:`DamagedClipError` when a configuration reads it; a clip not in the pack is read from the store.
The folder is removed by :meth:`FramePack.release` when the sweep ends.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from .records import Damage, DamagedClipError


@dataclass(frozen=True)
class PackedEncoder:
    """One encoder's packed frames: ``rows x dim`` of ``dtype`` in ``path``; clip id -> (first row, rows)."""

    name: str
    path: str
    dtype: str
    dim: int
    rows: int
    index: dict[str, tuple[int, int]]
    damaged: dict[str, Damage] = field(default_factory=dict)  # failed their read while packing


@dataclass(frozen=True)
class FramePack:
    """A store plus the packed frames of some of its encoders (by encoder name); cheap to pickle."""

    store: str
    folder: str
    encoders: dict[str, PackedEncoder]

    def open(self) -> "PackedStore":
        from .store import open_store

        return PackedStore(open_store(self.store), self)

    def release(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def nbytes(self) -> int:
        return sum(e.rows * e.dim * np.dtype(e.dtype).itemsize for e in self.encoders.values())


class PackedGroup:
    """An encoder group whose :meth:`read` comes from the pack; everything else is the store's group."""

    def __init__(self, group, packed: PackedEncoder):
        self._group = group
        self._packed = packed
        self._map: np.ndarray | None = None

    def __getattr__(self, name):  # info, root, clip, index, ... : the store's group
        return getattr(self._group, name)

    def __contains__(self, clip_id: str) -> bool:
        return clip_id in self._group

    def __len__(self) -> int:
        return len(self._group)

    def _frames(self) -> np.ndarray:
        if self._map is None:  # mapped on first use, once per process
            p = self._packed
            self._map = (np.memmap(p.path, dtype=p.dtype, mode="r", shape=(p.rows, p.dim)) if p.rows
                         else np.zeros((0, p.dim), p.dtype))
        return self._map

    def is_valid(self, clip_id: str) -> bool:
        # damage found while packing is reported where a configuration reads the clip, as before the pack
        return clip_id in self._packed.damaged or self._group.is_valid(clip_id)

    def read(self, clip_id: str) -> np.ndarray:
        p = self._packed
        if clip_id in p.damaged:
            raise DamagedClipError(p.damaged[clip_id])
        span = p.index.get(clip_id)
        if span is None:  # not listed when the pack was made: the store
            return self._group.read(clip_id)
        o, n = span
        return np.asarray(self._frames()[o : o + n])  # a view of the map: no copy


class PackedStore:
    """A store whose packed encoders' groups read from the pack."""

    def __init__(self, store, pack: FramePack):
        self._store = store
        self.pack = pack
        self._groups: dict[str, PackedGroup] = {}

    def __getattr__(self, name):
        return getattr(self._store, name)

    def group(self, name_or_key: str):
        g = self._store.group(name_or_key)
        packed = self.pack.encoders.get(g.info.name)
        if packed is None:
            return g
        if name_or_key not in self._groups:
            self._groups[name_or_key] = PackedGroup(g, packed)
        return self._groups[name_or_key]


def open_frames(source):
    """A store from a path or a :class:`FramePack` (a pack's encoders read from its files)."""
    if isinstance(source, FramePack):
        return source.open()
    from .store import open_store

    return open_store(source)


def pack_frames(store_path: str, wanted: dict[str, Iterable[str]], folder: str | Path) -> FramePack:
    """Read each id of ``wanted`` (encoder name -> clip ids or prompt keys) from the store once and pack them
    into ``folder``; ids the group does not hold are skipped (a configuration reading one gets the store's
    answer)."""
    from .store import open_store

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    st = open_store(store_path)
    out: dict[str, PackedEncoder] = {}
    for n, (name, ids) in enumerate(wanted.items()):
        g = st.group(name)
        path = folder / f"{n}.bin"
        index: dict[str, tuple[int, int]] = {}
        damaged: dict[str, Damage] = {}
        rows, dtype = 0, None
        with open(path, "wb") as f:
            for cid in dict.fromkeys(ids):
                if cid not in g or not g.is_valid(cid):
                    continue
                try:
                    x = g.read(cid)
                except DamagedClipError as e:
                    damaged[cid] = e.damage
                    continue
                if dtype is None:
                    dtype = x.dtype
                if x.dtype != dtype or x.ndim != 2 or x.shape[1] != g.info.dim:  # not packable as one array: left to the store
                    continue
                f.write(np.ascontiguousarray(x).tobytes())
                index[cid] = (rows, len(x))
                rows += len(x)
        out[name] = PackedEncoder(name, str(path), np.dtype(dtype or np.float16).str, int(g.info.dim), rows,
                                  index, damaged)
    return FramePack(str(store_path), str(folder), out)
