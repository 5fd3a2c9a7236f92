"""The embedding cache: one API over two backends (Zarr v3 default, HDF5).

On-disk layout (both backends)::

    <root>/mmmos_store.json               {"format": "mmmos-cache", "version": 1, "backend": ...}
    <root>/encoders/<name>-<idhash>/      one folder per encoder *identity*
        encoder.json                      name, weights + sha256, sample/frame rate, dim, dtype,
                                          config (model config, chunking policy), code version
        ... backend data (see zarr_backend.py / hdf5_backend.py)

A clip's frames are a ``(T, dim)`` array (fp16 by default) with attributes
``clip_id, path, duration, n_frames, source`` and checksums (records.py).  The identity hash covers everything that
changes the frames, so a changed encoder, weights file or config lands in a new
folder and is never mixed with old frames.

Backends register in ``BACKENDS`` (name -> module with ``Group`` and ``Writer``) and are imported lazily.
"""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

from .group import EncoderGroup, GroupWriter
from .records import FORMAT, VERSION, CacheError, Damage, EncoderInfo, atomic_write_text, identity_key

ENCODER_FILE = "encoder.json"


def _holds_clips(d: Path) -> bool:
    """An encoder folder with data but no record (its encoder.json deleted) is damage, not an empty folder."""
    return any((d / sub).is_dir() for sub in ("clips", "parts"))


def _stored_identity(f: Path) -> dict | None:
    """The identity recorded in ``f`` when it is there, readable and hashes to its folder; else None."""
    try:
        stored = json.loads(f.read_text())
        if isinstance(stored, dict) and identity_key(stored) == f.parent.name:
            return stored
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


# backend name -> module defining ``Group(EncoderGroup)`` and ``Writer(GroupWriter)``
BACKENDS: dict[str, str] = {"zarr": "mmmos.cache_store.zarr_backend", "hdf5": "mmmos.cache_store.hdf5_backend"}


class CacheStore:
    """Open with :func:`open_store`.  ``store.group("wavlm")`` gives an :class:`EncoderGroup`."""

    def __init__(self, root: Path, backend: str):
        self.root = root
        self.backend = backend
        self._groups: dict[str, EncoderGroup] = {}

    def _backend(self):
        return importlib.import_module(BACKENDS[self.backend])

    def _read_encoders(self) -> tuple[list[EncoderInfo], list[Damage]]:
        """The encoder records that check out, and one :class:`Damage` per encoder folder whose ``encoder.json``
        is unreadable, malformed or does not hash to its folder name (edited).  One encoder's damaged record is
        that encoder's problem: the others stay usable, and ``mmmos extract`` rewrites it (:meth:`writer`)."""
        out, bad = [], []
        enc_dir = self.root / "encoders"
        if not enc_dir.is_dir():
            return out, bad
        for d in sorted(enc_dir.iterdir()):
            f = d / ENCODER_FILE
            if not d.is_dir() or not (f.exists() or _holds_clips(d)):
                continue
            try:
                info = EncoderInfo.from_json(d.name, json.loads(f.read_text()))
                if identity_key(info.identity) != d.name:
                    raise ValueError(f"its identity hashes to {identity_key(info.identity)}, not to the folder name")
            except FileNotFoundError:
                bad.append(Damage(d.name, None, None, str(f), "encoder record missing"))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                bad.append(Damage(d.name, None, None, str(f), f"unreadable encoder record ({type(e).__name__}: {e})"))
            else:
                out.append(info)
        return out, bad

    def encoders(self) -> list[EncoderInfo]:
        """The encoders whose records check out (damaged ones: :meth:`damaged_encoders`)."""
        return self._read_encoders()[0]

    def damaged_encoders(self) -> list[Damage]:
        """One entry per encoder folder whose ``encoder.json`` is damaged (``Damage.encoder`` is the folder)."""
        return self._read_encoders()[1]

    def find(self, name_or_key: str) -> EncoderInfo:
        """Resolve an encoder name (or exact identity key) to the one identity stored for it."""
        infos = self.encoders()
        exact = [i for i in infos if i.key == name_or_key]
        if exact:
            return exact[0]
        named = [i for i in infos if i.name == name_or_key]
        if not named:
            broken = [d for d in self.damaged_encoders()
                      if d.encoder == name_or_key or d.encoder.rsplit("-", 1)[0] == name_or_key]
            if broken:
                raise CacheError(f"{self.root}: the {name_or_key!r} frames cannot be used: {broken[0].file}: "
                                 f"{broken[0].reason}; `mmmos extract --encoders {name_or_key} --store {self.root} "
                                 f"...` over the same manifest rebuilds it (the other encoders are unaffected)")
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

    def verify(self) -> dict[str, list[Damage]]:
        """Read every clip of every encoder: ``{encoder key: damage}`` (empty lists for sound encoders; an
        encoder whose record is damaged lists that record)."""
        infos, bad = self._read_encoders()
        out = {i.key: self.group(i.key).verify() for i in infos}
        for d in bad:
            out[d.encoder] = [d]
        return out

    def writer(self, identity: dict, dtype: str = "float16") -> GroupWriter:
        """Writer for an encoder identity; creates its folder or checks the stored one matches."""
        ident = dict(identity)
        ident["dtype"] = dtype
        key = identity_key(ident)
        d = self.root / "encoders" / key
        f = d / ENCODER_FILE
        stored = _stored_identity(f)
        if stored is not None:
            a = {k: v for k, v in stored.items() if k != "weights"}
            b = json.loads(json.dumps({k: v for k, v in ident.items() if k != "weights"}, default=str))
            if a != b:  # only a hash collision could get here
                raise CacheError(f"{f}: stored identity differs from the encoder being written")
        else:  # new, or its record is missing/damaged: the folder name is this identity's hash, so rewrite it
            d.mkdir(parents=True, exist_ok=True)
            atomic_write_text(f, json.dumps(ident, indent=2, sort_keys=True, default=str))
        info = EncoderInfo.from_json(key, json.loads(f.read_text()))
        self._groups.pop(key, None)
        return self._backend().Writer(d, info)


def open_store(root: str | os.PathLike, backend: str | None = None, create: bool = False) -> CacheStore:
    """Open (or with ``create=True`` make) a cache at ``root``.

    ``backend`` is "zarr" or "hdf5"; for an existing store it is read from
    ``mmmos_store.json`` and a different explicit choice is an error."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise CacheError(f"{root} is a file, not a cache folder; choose another --store path")
    meta = root / "mmmos_store.json"
    if meta.is_file():
        try:
            m = json.loads(meta.read_text())
        except ValueError as e:
            raise CacheError(f"{meta}: unreadable ({e}); not an mmmos cache") from e
        if m.get("format") != FORMAT or m.get("backend") not in BACKENDS:
            raise CacheError(f"{meta}: not an mmmos cache")
        if backend and backend != m["backend"]:
            raise CacheError(f"{root} is a {m['backend']} cache, not {backend}; "
                             f"pass --backend {m['backend']} or choose another --store")
        return CacheStore(root, m["backend"])
    if not create:
        raise CacheError(f"{root}: no mmmos cache here (missing mmmos_store.json); run `mmmos extract` first")
    backend = backend or "zarr"
    if backend not in BACKENDS:
        raise CacheError(f"unknown cache backend {backend!r}; choose from {', '.join(BACKENDS)}")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(meta, json.dumps({"format": FORMAT, "version": VERSION, "backend": backend}))
    return CacheStore(root, backend)
