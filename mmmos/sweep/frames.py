"""The sweep's frames, read from the cache once (:mod:`mmmos.cache_store.packed`) and shared by every
configuration and every ``--jobs`` worker; the pack lives in a hidden folder of the run folder and is removed
when the sweep ends (also on failure or Ctrl-C).

Which ids of which encoder a sweep needs is the recipe's answer: each configuration type has
``frame_ids(sets) -> {encoder: ids}`` (Track 2: every listed clip of each of its encoders; Track 1: the audio
clips and the prompt keys of the text encoder).  ``MMMOS_SHARED_FRAMES=0`` turns the pack off (each
configuration reads the store, as before; kept for benchmarks and comparisons).
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ENV = "MMMOS_SHARED_FRAMES"


@dataclass
class PackStats:
    """What packing cost (the benchmark reports it as the sweep's cache reading)."""

    seconds: float = 0.0
    nbytes: int = 0


LAST_PACK = PackStats()  # the last pack made in this process


def sharing_enabled(share: bool | None) -> bool:
    if share is not None:
        return share
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def wanted_ids(configs: list, sets: list) -> dict[str, list[str]]:
    """encoder name -> the ids every configuration together needs (each once, in first-seen order)."""
    out: dict[str, dict[str, None]] = {}
    for c in configs:
        for enc, ids in c.frame_ids(sets).items():
            out.setdefault(enc, {}).update(dict.fromkeys(ids))
    return {e: list(ids) for e, ids in out.items()}


def remove_dead_packs(run: str | Path) -> list[Path]:
    """Remove the packs of sweeps that died without cleaning up (SIGKILL, power loss): ``.frames-<pid>`` folders
    whose process no longer runs.  Returns the removed folders."""
    import shutil

    from mmmos.cache_store import pid_alive

    gone = []
    for d in Path(run).glob(".frames-*"):
        pid = d.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d)
    return gone


@contextmanager
def shared_frames(run: str | Path, store: str, configs: list, sets: list, share: bool | None = None):
    """Yield what the trainers open (:func:`mmmos.cache_store.packed.open_frames`): a :class:`FramePack` of the
    frames ``configs`` need, or ``store`` itself when sharing is off or nothing is to be read."""
    global LAST_PACK
    if not configs or not sharing_enabled(share):
        yield store
        return
    from mmmos.cache_store.packed import pack_frames

    remove_dead_packs(run)
    folder = Path(run) / f".frames-{os.getpid()}"
    t = time.perf_counter()
    pack = None
    try:
        pack = pack_frames(store, wanted_ids(configs, sets), folder)
        LAST_PACK = PackStats(time.perf_counter() - t, pack.nbytes)
        yield pack
    finally:
        if pack is not None:
            pack.release()
        else:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
