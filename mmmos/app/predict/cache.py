"""Reading frames from a frame cache instead of running encoders (``predict --cache STORE``).

Cached frames are reused only for the same audio.  Every cached clip records its source
(``ClipInfo.source``: path, size, mtime and sha256 of the file's bytes, see :mod:`mmmos.core.sources`);
for an input file that exists, its fingerprint is computed and the frames of a cached clip with the
same bytes are read -- whatever its clip id or path.  A clip cached under the same id or path but from
other audio (a stale or colliding id), or cached before sources were recorded ("cannot verify"), is
computed fresh from the file, and the log says how many and why.

When there is no audio to check against (the manifest row has no path, or the file is gone), the cache is
the only source: the clip's frames are matched by the recorded path, else by clip id, and counted as
"not verified" in the log.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mmmos.core.sources import SourceId, fingerprint, same_source

from .errors import PredictorError

# why a clip's frames came (or did not come) from the cache
REUSED = "reused"                 # cached frames of the same bytes
NO_AUDIO = "no-audio"             # no file to check: matched by path / clip id
STALE = "other-audio"             # cached under this id/path, but from different audio -> fresh
UNVERIFIABLE = "no-source"        # cached under this id/path without a recorded source -> fresh
ABSENT = "absent"                 # not in the cache -> fresh
DAMAGED = "damaged"               # cached, but found damaged when read -> fresh (never used)


class DamagedCacheWarning(RuntimeWarning):
    """A cached clip was found damaged on read and computed fresh instead (the CLI words it in its log)."""


def recorded_source(info: Any) -> SourceId | None:
    """The source a cached clip records, or None (caches written before sources were recorded)."""
    src = getattr(info, "source", None)
    if src is None or isinstance(src, SourceId):
        return src
    return SourceId.from_json(src) if isinstance(src, dict) else None


def norm_path(p: str | os.PathLike) -> str:
    return os.path.normcase(os.path.abspath(os.path.normpath(str(p))))


@dataclass
class CacheLookup:
    """What the cache gives one clip: cache clip id per encoder key, and a status per key."""

    cached: dict[str, str] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    detail: str | None = None     # for a stale clip: which cached clip and which file


class FrameCache:
    """The groups of a store that hold the model's encoder identities, with per-group lookups."""

    def __init__(self, store: str | os.PathLike, records: dict[str, dict]):
        from mmmos.cache_store import open_store

        try:
            st = open_store(store)
            stored = {i.key for i in st.encoders()}
        except Exception as e:  # noqa: BLE001 - any unreadable store is the user's to fix
            raise PredictorError(f"--cache {store}: cannot open the frame cache ({type(e).__name__}: {e})") from None
        self.store = str(store)
        self.groups: dict[str, Any] = {}
        self.notes: list[str] = []
        self._by_path: dict[str, dict[str, str]] = {}
        self._by_content: dict[str, dict[tuple[str, int], str]] = {}
        for key, rec in records.items():
            if key not in stored:
                other = [k for k in stored if k.rsplit("-", 1)[0] == rec["name"]]
                self.notes.append(f"{store}: no frames of {key} (the model's {rec['name']} identity"
                                  + (f"; it holds {', '.join(sorted(other))}" if other else "")
                                  + "): computing them from audio")
                continue
            g = st.group(key)
            self.groups[key] = g
            # indexes are built here, once, so lookups from the prefetch thread only read dicts
            self._by_path[key] = {norm_path(ci.path): cid for cid, ci in g.index.items() if ci.path}
            by_content = {}
            for cid, ci in g.index.items():
                src = recorded_source(ci)
                if src is not None:
                    by_content.setdefault((src.sha256, src.size), cid)
            self._by_content[key] = by_content

    def _named(self, key: str, clip_id: str, path: str | None) -> str | None:
        """The cached clip this item names (same path, else same clip id), or None."""
        if path is not None:
            hit = self._by_path[key].get(norm_path(path))
            if hit is not None:
                return hit
        return clip_id if clip_id in self.groups[key] else None

    def lookup(self, clip_id: str, path: str | None) -> CacheLookup:
        """Which encoders' frames to read from the cache for this item (see the module doc)."""
        out = CacheLookup()
        current = None
        if path is not None and os.path.isfile(path):
            try:
                current = fingerprint(path)
            except OSError:
                current = None  # unreadable: decoding will report it
        for key, g in self.groups.items():
            named = self._named(key, clip_id, path)
            if current is None and (path is None or not os.path.exists(path)):
                if named is not None:
                    out.cached[key], out.status[key] = named, NO_AUDIO
                else:
                    out.status[key] = ABSENT
                continue
            hit = self._by_content[key].get((current.sha256, current.size)) if current is not None else None
            if hit is not None and same_source(recorded_source(g.clip(hit)), current):
                out.cached[key], out.status[key] = hit, REUSED
            elif named is None:
                out.status[key] = ABSENT
            elif recorded_source(g.clip(named)) is None:
                out.status[key] = UNVERIFIABLE
            else:
                out.status[key] = STALE
                out.detail = (f"cached clip {named!r} came from {recorded_source(g.clip(named)).path}, "
                              f"not from this file")
        return out

    def frames_for(self, lookup: CacheLookup, notes: list[str]) -> dict:
        """The frames the cache gives for ``lookup``; a cached clip found damaged is never used: it leaves the
        lookup (status DAMAGED, so it counts as computed fresh), and ``notes`` and a
        :class:`DamagedCacheWarning` say so."""
        import warnings

        from mmmos.cache_store import DamagedClipError

        frames = {}
        for k, cid in list(lookup.cached.items()):
            try:
                frames[k] = self.read(k, cid)
            except DamagedClipError as e:
                del lookup.cached[k]
                lookup.status[k] = DAMAGED
                note = f"{e}; computed fresh from the audio instead"
                notes.append(note)
                warnings.warn(note, DamagedCacheWarning, stacklevel=3)
        return frames

    def group(self, key: str):
        """The store's group ``key`` (any encoder identity it holds, text encoders' too), or None."""
        from mmmos.cache_store import open_store

        st = open_store(self.store)
        return st.group(key) if key in {i.key for i in st.encoders()} else None

    def duration(self, key: str, cache_clip_id: str) -> float:
        return float(self.groups[key].clip(cache_clip_id).duration)

    def read(self, key: str, cache_clip_id: str):
        return self.groups[key].read(cache_clip_id)


def summarize(lookups: list[CacheLookup]) -> str:
    """One line: how many clips' frames were reused (verified / not verifiable) and computed fresh, and why."""
    per_clip = Counter()
    for lk in lookups:
        st = set(lk.status.values())
        for s in (DAMAGED, STALE, UNVERIFIABLE, NO_AUDIO, ABSENT):  # the most telling status of the clip
            if s in st:
                per_clip[s] += 1
                break
        else:
            per_clip[REUSED] += 1 if st else 0
    parts = [f"{per_clip[REUSED]} clips reused (same audio bytes)"]
    if per_clip[NO_AUDIO]:
        parts.append(f"{per_clip[NO_AUDIO]} read by path/clip id without audio to verify against")
    fresh = per_clip[STALE] + per_clip[UNVERIFIABLE] + per_clip[ABSENT] + per_clip[DAMAGED]
    why = [f"{per_clip[DAMAGED]} damaged in the cache"] if per_clip[DAMAGED] else []
    why += [f"{per_clip[STALE]} cached from different audio"] if per_clip[STALE] else []
    why += [f"{per_clip[UNVERIFIABLE]} cached without a source record (cannot verify)"] if per_clip[UNVERIFIABLE] else []
    why += [f"{per_clip[ABSENT]} not cached"] if per_clip[ABSENT] else []
    parts.append(f"{fresh} computed fresh" + (f" ({', '.join(why)})" if why else ""))
    return "cache: " + ", ".join(parts)


__all__ = ["ABSENT", "CacheLookup", "DAMAGED", "DamagedCacheWarning", "FrameCache", "NO_AUDIO", "REUSED", "STALE",
           "UNVERIFIABLE", "norm_path",
           "recorded_source", "summarize"]
