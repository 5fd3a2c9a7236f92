"""The extraction runner: manifest -> decoded audio -> frozen encoders -> cache.

* Clips are sorted by duration and taken in groups; each clip is decoded once and
  resampled once per encoder rate.  With a GPU (or mps), the next group is decoded in a
  background thread while the encoders run and frames are written by another thread;
  on CPU both run in line, since extra threads only compete with torch's (measured).
* Inside a group, encoder inputs of *identical* shape are stacked into batches
  (WavLM's GroupNorm and MuQ's convolutions see padding, so nothing is padded).
* Clips already in the cache for the same encoder identity are skipped, so an
  interrupted run resumes where it stopped.  Every clip is written atomically.
* A bad clip never stops the run: it is recorded (clip, file, encoder, stage,
  reason) in ``<store>/extract_failures.csv`` and in the returned report.
"""
from __future__ import annotations

import csv
import hashlib
import json
import queue
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmmos.cache_store import open_store

from . import load_encoder
from .base import FrameEncoder
from .precision import _encoder_identity, _forward, cache_key, resolve_precision  # noqa: F401 - re-exported


@dataclass
class ExtractConfig:
    manifests: list[str]
    store: str
    encoders: list[str] = field(default_factory=lambda: ["logmel"])
    weights: dict[str, str] = field(default_factory=dict)
    backend: str = "zarr"
    data_root: str | None = None
    device: str | None = None  # None/"auto": cuda -> mps -> cpu
    precision: str = "auto"  # fp16 | fp32 | auto (fp16 on cuda, else fp32)
    store_dtype: str = "float16"
    batch_size: int | None = None  # None: 8 on a GPU; 1 on CPU, where stacking clips measured slower
    group_seconds: float = 120.0  # audio decoded ahead per group
    shard: tuple[int, int] = (0, 1)  # (index, count): this process takes clips whose id hashes to index
    limit: int | None = None
    progress: bool = True
    overlap: bool | None = None  # decode/write threads beside the encoders; None: on for GPU/mps, off on CPU


@dataclass
class Failure:
    clip_id: str
    path: str | None
    encoder: str
    stage: str
    error: str


@dataclass
class ExtractReport:
    clips_total: int = 0
    written: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    encoder_seconds: dict[str, float] = field(default_factory=dict)
    decode_seconds: float = 0.0
    load_seconds: float = 0.0  # loading encoders, hashing weights, scanning the cache

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["failures"] = len(self.failures)
        return d


def shard_suffix(shard: tuple[int, int]) -> str:
    """Per-shard report names, so parallel workers on one store do not overwrite each other's."""
    return "" if shard[1] <= 1 else f"-shard{shard[0]}of{shard[1]}"


def shard_of(clip_id: str, count: int) -> int:
    return int(hashlib.sha1(clip_id.encode()).hexdigest()[:8], 16) % count


def embed_many(enc: FrameEncoder, waves: dict[str, np.ndarray], batch_size: int, precision: str = "fp32",
               on_error=None) -> dict[str, np.ndarray]:
    """Frames for several clips, batching encoder inputs of identical shape across clips.

    A batch that fails is retried item by item so one bad clip cannot sink the others;
    ``on_error(clip_id, exc)`` is told about each clip that still fails."""
    pieces: dict[str, list] = {}
    by_shape: dict[tuple, list[tuple[str, int, np.ndarray]]] = {}
    for cid, w in waves.items():
        try:
            chunks = enc.split(w)
        except Exception as e:  # noqa: BLE001 - reported per clip
            on_error and on_error(cid, e)
            continue
        pieces[cid] = [None] * len(chunks)
        for i, c in enumerate(chunks):
            by_shape.setdefault(tuple(c.shape), []).append((cid, i, c))
    failed: set[str] = set()
    for items in by_shape.values():
        for s in range(0, len(items), batch_size):
            batch = items[s : s + batch_size]
            try:
                out = _forward(enc, np.stack([c for _, _, c in batch]), precision)
                for (cid, i, _), o in zip(batch, out):
                    pieces[cid][i] = o
            except Exception:  # noqa: BLE001 - isolate the culprit below
                for cid, i, c in batch:
                    if cid in failed:
                        continue
                    try:
                        pieces[cid][i] = _forward(enc, c[None], precision)[0]
                    except Exception as e:  # noqa: BLE001
                        failed.add(cid)
                        on_error and on_error(cid, e)
    out: dict[str, np.ndarray] = {}
    for cid, parts in pieces.items():
        if cid in failed:
            continue
        try:
            out[cid] = enc.join(parts, waves[cid])
        except Exception as e:  # noqa: BLE001
            on_error and on_error(cid, e)
    return out


class _Progress:
    def __init__(self, total: int, enabled: bool):
        self.bar = None
        self.t0 = time.perf_counter()
        self.audio = 0.0
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="clip", desc="extract", file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int, seconds: float) -> None:
        self.audio += seconds
        if self.bar is not None:
            el = max(1e-9, time.perf_counter() - self.t0)
            self.bar.set_postfix_str(f"{self.audio / el:.1f} audio-s/s")
            self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def run_extract(cfg: ExtractConfig) -> ExtractReport:
    from mmmos.core.audio import AudioError, audio_info, load_audio, resample
    from mmmos.core.manifests import load_manifest

    t_start = time.perf_counter()
    rep = ExtractReport()
    fail_path = Path(cfg.store) / f"extract_failures{shard_suffix(cfg.shard)}.csv"

    def fail(cid, path, enc, stage, err):
        rep.failures.append(Failure(cid, path, enc, stage, str(err) or type(err).__name__))

    # --- the clip list ----------------------------------------------------------------
    rows: dict[str, str] = {}
    for m in cfg.manifests:
        df = load_manifest(m, data_root=cfg.data_root)
        for cid, path in zip(df["clip_id"].to_list(), df["path"].to_list()):
            if cid is None or str(cid) == "":
                fail(str(cid), path, "*", "manifest", f"{m}: row without a clip id")
            elif path is None or str(path) == "":
                fail(cid, None, "*", "manifest", f"{m}: row has no audio path")
            elif cid in rows:
                if rows[cid] != path:
                    fail(cid, path, "*", "manifest", f"{m}: duplicated clip id (first kept: {rows[cid]})")
            else:
                rows[cid] = path
    if cfg.shard[1] > 1:
        rows = {c: p for c, p in rows.items() if shard_of(c, cfg.shard[1]) == cfg.shard[0]}
    if cfg.limit:
        rows = dict(list(rows.items())[: cfg.limit])
    rep.clips_total = len(rows)

    store = open_store(cfg.store, backend=cfg.backend, create=True)
    from mmmos.extract import select_device

    device = select_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    batch_size = cfg.batch_size or (1 if device == "cpu" else 8)
    t_load = time.perf_counter()
    encs: dict[str, FrameEncoder] = {}
    writers = {}
    todo: dict[str, set[str]] = {}
    for name in cfg.encoders:
        try:
            enc = load_encoder(name, cfg.weights.get(name), device=device)
        except Exception as e:  # noqa: BLE001 - a bad weights file stops only this encoder
            fail("*", cfg.weights.get(name), name, "load", e)
            continue
        encs[name] = enc
        w = store.writer(_encoder_identity(enc, precision), dtype=cfg.store_dtype)
        writers[name] = w
        have = set(store.group(w.info.key).clip_ids())
        todo[name] = {c for c in rows if c not in have}
        rep.skipped[name] = len(rows) - len(todo[name])
        rep.written[name] = 0
        rep.encoder_seconds[name] = 0.0

    rep.load_seconds = time.perf_counter() - t_load
    pending = sorted({c for t in todo.values() for c in t})
    durations: dict[str, float] = {}
    for cid in pending:
        try:
            durations[cid] = float(audio_info(rows[cid]).duration)
        except Exception:  # noqa: BLE001 - decode below reports the real problem
            durations[cid] = 0.0
    pending.sort(key=lambda c: (durations[c], c))

    groups: list[list[str]] = []
    cur, acc = [], 0.0
    for cid in pending:
        cur.append(cid)
        acc += durations[cid]
        if acc >= cfg.group_seconds or len(cur) >= 4 * batch_size:
            groups.append(cur)
            cur, acc = [], 0.0
    if cur:
        groups.append(cur)

    rates = sorted({e.sample_rate for e in encs.values()})

    def decode(group: list[str]):
        out, errs = {}, []
        t = time.perf_counter()
        for cid in group:
            try:
                wave, sr = load_audio(rows[cid])
                out[cid] = {r: resample(wave, sr, r) for r in rates}
                out[cid]["_dur"] = len(wave) / sr
            except AudioError as e:
                errs.append((cid, e))
            except Exception as e:  # noqa: BLE001 - any decoder crash is this file's problem
                errs.append((cid, AudioError(f"{rows[cid]}: {type(e).__name__}: {e}")))
        return out, errs, time.perf_counter() - t

    # With an accelerator, decoding the next group and writing frames run in background threads while
    # the encoders work.  On CPU they would only compete with torch's own threads (measured slower), so
    # they run in line there.
    overlap = cfg.overlap if cfg.overlap is not None else device != "cpu"
    werr: list = []

    def write(item) -> None:
        name, cid, frames, dur = item
        try:
            writers[name].write(cid, frames, rows[cid], dur)
            rep.written[name] += 1
        except Exception as e:  # noqa: BLE001 - reported, the run goes on
            werr.append(Failure(cid, rows[cid], name, "write", str(e)))

    wq: queue.Queue = queue.Queue(maxsize=64)

    def writer_loop():
        while (item := wq.get()) is not None:
            write(item)

    wt = threading.Thread(target=writer_loop, daemon=True) if overlap else None
    if wt:
        wt.start()
    emit = wq.put if overlap else write
    prog = _Progress(len(pending), cfg.progress and len(pending) > 0)
    pool = ThreadPoolExecutor(max_workers=1) if overlap else None

    def start(gi: int):
        if gi >= len(groups):
            return None
        return pool.submit(decode, groups[gi]) if pool else groups[gi]

    try:
        nxt = start(0)
        for gi in range(len(groups)):
            audio, errs, dt = nxt.result() if pool else decode(nxt)
            rep.decode_seconds += dt
            nxt = start(gi + 1)
            for cid, e in errs:
                fail(cid, rows[cid], "*", "decode", e)
            for name, enc in encs.items():
                need = {c: a[enc.sample_rate] for c, a in audio.items() if c in todo[name]}
                short = [c for c, w in need.items() if len(w) < enc.min_samples()]
                for c in short:
                    need.pop(c)
                    fail(c, rows[c], name, "encode",
                         f"clip of {len(audio[c][enc.sample_rate])} samples at {enc.sample_rate} Hz is shorter "
                         f"than one {name} frame (needs {enc.min_samples()})")
                t = time.perf_counter()
                frames = embed_many(enc, need, batch_size, precision,
                                    on_error=lambda c, e, n=name: fail(c, rows[c], n, "encode", f"{type(e).__name__}: {e}"))
                rep.encoder_seconds[name] += time.perf_counter() - t
                for cid, f in frames.items():
                    emit((name, cid, f, audio[cid]["_dur"]))
            for cid, a in audio.items():
                rep.audio_seconds += a["_dur"]
            prog.update(len(groups[gi]), sum(a["_dur"] for a in audio.values()))
    finally:
        if pool:
            pool.shutdown(wait=True)
        if wt:
            wq.put(None)
            wt.join()
        for w in writers.values():
            w.close()
        prog.close()
    rep.failures.extend(werr)
    rep.wall_seconds = time.perf_counter() - t_start
    _write_failures(fail_path, rep.failures)
    return rep


def _write_failures(path: Path, failures: list[Failure]) -> None:
    """This run's failures (the file is replaced each run; fixed clips drop out)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not failures:
        path.unlink(missing_ok=True)
        return
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["clip_id", "path", "encoder", "stage", "error"])
        for x in failures:
            w.writerow([x.clip_id, x.path or "", x.encoder, x.stage, x.error])


def format_report(rep: ExtractReport, store: str, shard: tuple[int, int] = (0, 1)) -> str:
    lines = [f"extracted {rep.clips_total} clips ({rep.audio_seconds:.1f} s of audio decoded) "
             f"in {rep.wall_seconds:.1f} s into {store}"]
    for name in rep.written:
        lines.append(f"  {name:8s} written {rep.written[name]:6d}  already cached {rep.skipped[name]:6d}  "
                     f"encoder time {rep.encoder_seconds[name]:.1f} s")
    if rep.failures:
        lines.append(f"  {len(rep.failures)} failures (see {Path(store) / f'extract_failures{shard_suffix(shard)}.csv'}):")
        for x in rep.failures[:10]:
            lines.append(f"    {x.clip_id} [{x.encoder}/{x.stage}] {x.error}")
        if len(rep.failures) > 10:
            lines.append(f"    … and {len(rep.failures) - 10} more")
    return "\n".join(lines)


def save_report(rep: ExtractReport, store: str, shard: tuple[int, int] = (0, 1)) -> None:
    p = Path(store) / f"extract_report{shard_suffix(shard)}.json"
    p.write_text(json.dumps(rep.to_json(), indent=2))
