"""The decode -> embed -> write pipeline of an extraction run.

* Clips are sorted by duration and taken in groups; each clip is decoded once and resampled once per
  encoder rate.  With a GPU (or mps), the next group is decoded by a pool of threads (libsndfile and scipy's
  polyphase filter release the GIL) while the encoders run, frames are written by another thread, and
  batches are larger; on CPU everything runs in line, since extra threads only compete with torch's
  (measured).  :func:`feed_settings` holds these per-device defaults.
* Inside a group, encoder inputs of *identical* shape are stacked into batches (WavLM's GroupNorm and
  MuQ's convolutions see padding, so nothing is padded).
* Before a group is decoded each encoder's writer *claims* its clips, so a concurrent extract into the same
  store never computes or stores them twice.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from mmmos.cache_store import GroupWriter

from .base import FrameEncoder
from .plan import EncoderPlan, Sources
from .precision import _forward
from .report import ExtractReport


@dataclass(frozen=True)
class Feed:
    """How the pipeline feeds one device: encoder batch size, audio decoded per group, decode threads, and
    whether decoding and writing overlap the encoders."""

    batch_size: int
    group_seconds: float
    decode_workers: int
    overlap: bool


def feed_settings(device: str, batch_size: int | None = None, group_seconds: float | None = None,
                  decode_workers: int | None = None, overlap: bool | None = None) -> Feed:
    """Per-device defaults for what is not given.

    CPU: one clip per forward (stacking measured slower), 120 s of audio per group, decoding in line.
    GPU/mps: 32 equal-shape inputs per forward, groups of at least four full batches of 10-s clips (a group
    caps the batch: a 120-s group held 12 clips), a decode pool of up to 8 threads leaving cores for the
    encoder and writer threads, decode and write overlapped."""
    accel = str(device) != "cpu"
    bs = int(batch_size or (32 if accel else 1))
    gs = float(group_seconds or (max(120.0, 40.0 * bs) if accel else 120.0))
    workers = int(decode_workers or (max(1, min(8, (os.cpu_count() or 1) - 2)) if accel else 1))
    return Feed(bs, gs, workers, accel if overlap is None else bool(overlap))


def _is_oom(e: BaseException) -> bool:
    return type(e).__name__ == "OutOfMemoryError"  # torch.cuda.OutOfMemoryError, without importing torch


def compute_policy(enc, batch_size: int, precision: str) -> dict:
    """How this run computes an encoder's frames: device, batch size, math threads, precision."""
    import torch

    return {"device": str(getattr(enc, "device", "cpu")), "batch_size": int(batch_size),
            "threads": int(torch.get_num_threads()), "precision": str(precision)}


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
            _run_batch(enc, items[s : s + batch_size], precision, pieces, failed, on_error)
    out: dict[str, np.ndarray] = {}
    for cid, parts in pieces.items():
        if cid in failed:
            continue
        try:
            out[cid] = enc.join(parts, waves[cid])
        except Exception as e:  # noqa: BLE001
            on_error and on_error(cid, e)
    return out


def _run_batch(enc, batch, precision, pieces, failed, on_error) -> None:
    try:
        out = _forward(enc, np.stack([c for _, _, c in batch]), precision)
        for (cid, i, _), o in zip(batch, out):
            pieces[cid][i] = o
    except Exception as e:  # noqa: BLE001 - isolate the culprit item by item
        if _is_oom(e) and len(batch) > 1:  # too large a batch for the device's memory: halve it
            import torch

            torch.cuda.empty_cache()
            half = len(batch) // 2
            _run_batch(enc, batch[:half], precision, pieces, failed, on_error)
            _run_batch(enc, batch[half:], precision, pieces, failed, on_error)
            return
        for cid, i, c in batch:
            if cid in failed:
                continue
            try:
                pieces[cid][i] = _forward(enc, c[None], precision)[0]
            except Exception as e:  # noqa: BLE001
                failed.add(cid)
                on_error and on_error(cid, e)


def pending_groups(stages: list, rows: dict[str, str], group_seconds: float, batch_size: int) -> tuple[list[str], list[list[str]]]:
    """The clips any stage must extract (sorted) and their groups of similar duration, decoded together."""
    from mmmos.core.audio import audio_info

    pending = sorted({c for s in stages for c in s.plan.todo})
    durations = {}
    for cid in pending:
        try:
            durations[cid] = float(audio_info(rows[cid]).duration)
        except Exception:  # noqa: BLE001 - decode reports the real problem
            durations[cid] = 0.0
    return pending, duration_groups(pending, durations, group_seconds, 4 * batch_size)


def duration_groups(ids: list[str], durations: dict[str, float], group_seconds: float, max_clips: int) -> list[list[str]]:
    """Clips sorted by duration, cut into groups of about ``group_seconds`` of audio (at most ``max_clips``)."""
    groups, cur, acc = [], [], 0.0
    for cid in sorted(ids, key=lambda c: (durations.get(c, 0.0), c)):
        cur.append(cid)
        acc += durations.get(cid, 0.0)
        if acc >= group_seconds or len(cur) >= max_clips:
            groups.append(cur)
            cur, acc = [], 0.0
    return groups + ([cur] if cur else [])


@dataclass
class Stage:
    """One encoder in the pipeline."""

    name: str
    enc: FrameEncoder
    writer: GroupWriter
    plan: EncoderPlan
    precision: str = "fp32"  # compute precision (resolved per encoder)


class Pipeline:
    """Runs groups of clips through decode -> embed -> write for every stage, filling ``rep``."""

    def __init__(self, stages: list[Stage], rows: dict[str, str], sources: Sources, rep: ExtractReport,
                 feed: Feed):
        self.stages, self.rows, self.sources, self.rep = stages, rows, sources, rep
        self.batch_size, self.overlap, self.decode_workers = feed.batch_size, feed.overlap, feed.decode_workers
        self.rates = sorted({s.enc.sample_rate for s in stages})
        self.todo = {s.name: set(s.plan.todo) for s in stages}
        for s in stages:  # the batch policy, recorded with every clip written (README "Reliability")
            s.writer.computed = compute_policy(s.enc, self.batch_size, s.precision)
        self._werr: list = []

    # -- steps -----------------------------------------------------------------------
    def claim(self, group: list[str]) -> dict[str, set[str]]:
        """Per stage, the clips of ``group`` this run writes (others are left to a concurrent writer)."""
        out = {}
        for s in self.stages:
            want = [c for c in group if c in self.todo[s.name]]
            got = set(s.writer.claim(want)) if want else set()
            self.rep.busy[s.name] = self.rep.busy.get(s.name, 0) + len(want) - len(got)
            out[s.name] = got
        return out

    def _decode_one(self, cid: str):
        """``(clip, {rate: wave, "_dur": s}, error, read seconds, resample seconds)`` for one clip."""
        from mmmos.core.audio import AudioError, load_audio, resample

        path = self.rows[cid]
        t0 = time.perf_counter()
        try:
            self.sources.get(path)  # fingerprint the bytes we are about to decode
            wave, sr = load_audio(path)
            t1 = time.perf_counter()
            out = {r: resample(wave, sr, r) for r in self.rates}
            out["_dur"] = len(wave) / sr
            return cid, out, None, t1 - t0, time.perf_counter() - t1
        except AudioError as e:
            return cid, None, e, time.perf_counter() - t0, 0.0
        except Exception as e:  # noqa: BLE001 - any decoder crash is this file's problem
            return cid, None, AudioError(f"{path}: {type(e).__name__}: {e}"), time.perf_counter() - t0, 0.0

    def decode(self, ids: list[str], pool: ThreadPoolExecutor | None = None):
        """Decoded audio of ``ids`` (on ``pool``'s threads when given), the errors, and (read, resample)
        seconds summed over clips."""
        results = list(pool.map(self._decode_one, ids)) if pool is not None else [self._decode_one(c) for c in ids]
        out = {cid: audio for cid, audio, err, _, _ in results if err is None}
        errs = [(cid, err) for cid, _, err, _, _ in results if err is not None]
        return out, errs, (sum(r[3] for r in results), sum(r[4] for r in results))

    def embed(self, s: Stage, audio: dict, mine: set[str]):
        rep, sr = self.rep, s.enc.sample_rate
        need = {c: a[sr] for c, a in audio.items() if c in mine}
        for c in [c for c, w in need.items() if len(w) < s.enc.min_samples()]:
            need.pop(c)
            rep.fail(c, self.rows[c], s.name, "encode", f"clip of {len(audio[c][sr])} samples at {sr} Hz is shorter "
                                                       f"than one {s.name} frame (needs {s.enc.min_samples()})")
        t = time.perf_counter()
        frames = embed_many(s.enc, need, self.batch_size, s.precision,
                            on_error=lambda c, e: rep.fail(c, self.rows[c], s.name, "encode", f"{type(e).__name__}: {e}"))
        rep.encoder_seconds[s.name] = rep.encoder_seconds.get(s.name, 0.0) + time.perf_counter() - t
        return frames

    def write(self, item) -> None:
        s, cid, frames, dur = item
        t = time.perf_counter()
        try:
            s.writer.write(cid, frames, self.rows[cid], dur, source=self.sources.get(self.rows[cid]),
                           replace=cid in s.plan.replace)
        except Exception as e:  # noqa: BLE001 - reported, the run goes on
            self._werr.append((cid, s.name, e))
        self.rep.write_seconds += time.perf_counter() - t

    # -- the loop --------------------------------------------------------------------
    def run(self, groups: list[list[str]], progress) -> None:
        wq: queue.Queue = queue.Queue(maxsize=64)
        wt = threading.Thread(target=self._writer_loop, args=(wq,), daemon=True) if self.overlap else None
        pool = ThreadPoolExecutor(max_workers=1) if self.overlap else None  # decodes the next group
        decoders = ThreadPoolExecutor(max_workers=self.decode_workers) if self.decode_workers > 1 else None
        if wt:
            wt.start()
        emit = wq.put if self.overlap else self.write

        def start(gi: int):
            if gi >= len(groups):
                return None
            mine = self.claim(groups[gi])
            ids = sorted(set().union(*mine.values())) if mine else []
            return mine, (pool.submit(self.decode, ids, decoders) if pool else ids)

        try:
            nxt = start(0)
            for gi in range(len(groups)):
                mine, job = nxt
                audio, errs, dt = job.result() if pool else self.decode(job, decoders)
                nxt = start(gi + 1)
                self._one_group(mine, audio, errs, dt, emit)
                progress.update(len(groups[gi]), sum(a["_dur"] for a in audio.values()))
        finally:
            if pool:
                pool.shutdown(wait=True)
            if decoders:
                decoders.shutdown(wait=True)
            if wt:
                wq.put(None)
                wt.join()
        for cid, name, e in self._werr:
            self.rep.fail(cid, self.rows[cid], name, "write", e)

    def _one_group(self, mine, audio, errs, dt, emit) -> None:
        self.rep.decode_seconds += dt[0]
        self.rep.resample_seconds += dt[1]
        for cid, e in errs:
            self.rep.fail(cid, self.rows[cid], "*", "decode", e)
        for s in self.stages:
            for cid, f in self.embed(s, audio, mine[s.name]).items():
                emit((s, cid, f, audio[cid]["_dur"]))
        self.rep.audio_seconds += sum(a["_dur"] for a in audio.values())

    def _writer_loop(self, wq: queue.Queue) -> None:
        while (item := wq.get()) is not None:
            self.write(item)
