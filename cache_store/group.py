"""Backend-independent halves of an encoder group: checked reads (:class:`EncoderGroup`) and claimed,
counted writes (:class:`GroupWriter`).  A backend subclasses both (see zarr_backend.py, hdf5_backend.py).

Integrity contract (both backends):

* the scan (``index``) lists clips whose metadata checks out; clips with unreadable/altered metadata and
  unreadable files are listed by :meth:`EncoderGroup.damaged` and never stop the other clips from reading;
* a read checks that the clip's data is present, decodes and (full reads) matches ``frames_crc32``; any
  failure raises :class:`DamagedClipError` naming encoder, clip and file, and is remembered in
  ``damaged.json`` so the next ``mmmos extract`` re-extracts exactly those clips;
* :meth:`EncoderGroup.verify` reads everything and returns the full damage list.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .locking import Claims, folder_lock
from .records import (DAMAGE_FILE, CacheError, ClipInfo, Damage, DamagedClipError, EncoderInfo, atomic_write_text,
                      clip_key, frames_crc32)
from .timing import crop_mean, frame_range


def _relative(root: Path, file: str) -> str:
    """A damaged file's path as ``damaged.json`` keeps it: relative to the encoder folder, so a copied or moved
    store names its files where they are now."""
    try:
        return Path(file).relative_to(root).as_posix()
    except ValueError:
        return file


def _here(root: Path, file: str) -> str:
    """The current path of a file ``damaged.json`` names (relative, or absolute from an older version or from
    where the store was before it was moved: re-rooted at this encoder folder)."""
    p = Path(file)
    if not p.is_absolute():
        return str(root / p)
    if root.name in p.parts:
        i = len(p.parts) - 1 - p.parts[::-1].index(root.name)
        return str(root.joinpath(*p.parts[i + 1:]))
    return file


def _load_damage(root: Path) -> dict[str, Damage]:
    f = root / DAMAGE_FILE
    if not f.is_file():
        return {}
    try:
        return {k: dataclasses.replace(d, file=_here(root, d.file))
                for k, d in ((k, Damage(**v)) for k, v in json.loads(f.read_text()).items())}
    except (OSError, ValueError, TypeError):
        return {}  # a damaged damage list only loses hints; verify finds the damage again


def update_damage(root: Path, add: Iterable[Damage] = (), clear: Iterable[str] = ()) -> None:
    """Add entries to / clear keys from ``damaged.json`` (best effort: a read-only cache is not an error)."""
    add, clear = [d for d in add if d.key], set(clear)
    if not add and not (clear and (root / DAMAGE_FILE).is_file()):
        return
    with contextlib.suppress(OSError), folder_lock(root):
        cur = _load_damage(root)
        cur.update({d.key: d for d in add})
        for k in clear:
            cur.pop(k, None)
        if cur:
            atomic_write_text(root / DAMAGE_FILE, json.dumps(
                {k: {**d.to_json(), "file": _relative(root, d.file)} for k, d in cur.items()}, indent=1))
        else:
            (root / DAMAGE_FILE).unlink(missing_ok=True)


class EncoderGroup:
    """Read access to one encoder's frames.  Backends implement ``_scan``, ``_read``, ``_missing``, ``_location``."""

    def __init__(self, root: Path, info: EncoderInfo):
        self.root = root
        self.info = info
        self._idx: dict[str, ClipInfo] | None = None
        self._scan_damage: list[Damage] = []
        self._recorded: dict[str, Damage] = {}

    # backend hooks
    def _scan(self) -> tuple[dict[str, ClipInfo], list[Damage]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _read(self, clip_id: str, a: int | None = None, b: int | None = None) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _missing(self, clip_id: str, a: int | None = None, b: int | None = None) -> str | None:
        """Why the data of frames ``[a, b)`` is not all there (cheap: no decoding), or None."""
        return None

    def _location(self, clip_id: str) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    # index
    def refresh(self) -> None:
        self._idx = None

    @property
    def index(self) -> dict[str, ClipInfo]:
        if self._idx is None:
            self._idx, self._scan_damage = self._scan()
            self._recorded = _load_damage(self.root)
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

    # integrity
    def damaged(self) -> list[Damage]:
        """Damage known without reading frames: bad metadata, unreadable files, damage recorded by reads."""
        self.index  # noqa: B018 - loads scan damage and the recorded list
        live = [d for d in self._recorded.values() if d.clip_id in self._idx]
        return self._scan_damage + live

    def damaged_keys(self) -> set[str]:
        return {d.key for d in self.damaged() if d.key}

    def is_valid(self, clip_id: str) -> bool:
        """Cheap check (no decoding): listed, not known damaged, all data present."""
        if clip_id not in self.index or clip_key(clip_id) in self._recorded:
            return False
        return self._missing(clip_id) is None

    def verify(self) -> list[Damage]:
        """Read every clip and return all damage (also recorded for the next extract to repair)."""
        for cid in self.clip_ids():
            with contextlib.suppress(DamagedClipError):
                self.read(cid)
        return self.damaged()

    def _damage(self, clip_id: str, reason: str) -> DamagedClipError:
        d = Damage(self.info.key, clip_id, clip_key(clip_id), self._location(clip_id), reason)
        self._recorded[d.key] = d
        update_damage(self.root, add=[d])
        return DamagedClipError(d)

    def _checked(self, clip_id: str, a: int | None = None, b: int | None = None) -> np.ndarray:
        info = self.clip(clip_id)
        known = self._recorded.get(clip_key(clip_id))
        if known is not None:
            raise DamagedClipError(known)
        reason = self._missing(clip_id, a, b)
        if reason:
            raise self._damage(clip_id, reason)
        try:
            x = self._read(clip_id, a, b)
        except Exception as e:  # noqa: BLE001 - any decode failure is damage of this clip
            raise self._damage(clip_id, f"unreadable data ({type(e).__name__}: {e})") from e
        if a is None and info.frames_crc32 is not None and frames_crc32(x) != info.frames_crc32:
            raise self._damage(clip_id, "frames fail their checksum (frames_crc32)")
        return x

    # reads
    def read(self, clip_id: str) -> np.ndarray:
        """All frames of a clip, ``(T, dim)`` in the stored dtype; raises DamagedClipError on damage."""
        return self._checked(clip_id)

    def read_crop(self, clip_id: str, t0: float, duration: float) -> np.ndarray:
        """Frames covering ``[t0, t0 + duration)`` seconds (see ``timing.frame_range``)."""
        a, b = frame_range(t0, duration, self.info.frame_rate, self.clip(clip_id).n_frames)
        return self._checked(clip_id, a, b)

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
    """Adds clips to one encoder group.  Each clip becomes visible atomically.

    ``claim(ids)`` before encoding returns the ids this writer may write (others are being or were just
    written by a concurrent writer).  ``committed`` lists the clip ids this writer made durable.  ``computed``
    (set by the extraction that owns the writer) is recorded with every clip it writes: device, batch size,
    threads and precision (:class:`~cache_store.records.ClipInfo`)."""

    def __init__(self, root: Path, info: EncoderInfo):
        self.root = root
        self.info = info
        self.claims = Claims(root)
        self.t_open = time.time()
        self.committed: list[str] = []
        self.computed: dict | None = None

    def write(self, clip_id: str, frames: np.ndarray, path: str | None, duration: float, source=None,
              replace: bool = False) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fresh_keys(self, keys: set[str]) -> set[str]:
        """Which of ``keys`` another writer committed since this writer opened (called under the lock)."""
        return set()

    def claim(self, clip_ids: Iterable[str]) -> list[str]:
        ids = list(clip_ids)
        with folder_lock(self.root):
            fresh = self._fresh_keys({clip_key(c) for c in ids})
            return [c for c in ids if clip_key(c) not in fresh and self.claims.take(clip_key(c))]

    def _committed_now(self, clip_ids: list[str]) -> None:
        """Bookkeeping once clips are durable: count, release their claims, clear their damage entries."""
        keys = [clip_key(c) for c in clip_ids]
        self.committed.extend(clip_ids)
        self.claims.release(keys)
        update_damage(self.root, clear=keys)

    def commit(self) -> None:
        """Make everything written so far durable and visible (no-op where each write already is)."""

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self.claims.release_all()

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


__all__ = ["EncoderGroup", "GroupWriter", "update_damage"]
