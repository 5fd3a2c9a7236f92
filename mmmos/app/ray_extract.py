"""``mmmos extract --ray``: extraction on a Ray actor pool, with the results of a one-process run.

* The driver reads the manifests (manifest failures), cuts the clips into small units and hands them to a
  pool of :class:`ExtractWorker` actors.  Each actor loads every encoder **once** (on its GPU when it
  reserved one) and runs each unit through the local pipeline (:class:`mmmos.extract.pipeline.Pipeline`):
  plan (reuse/repair/stale) -> claim -> decode and resample on the actor's CPUs -> encode -> atomic commit
  into the one store.  Claims keep two writers off one clip, so concurrent actors never duplicate work.
* The driver shows one progress bar over all workers, merges the units' reports (counts, failure rows) and
  writes ``extract_failures.csv`` / the report like a local run; the exit status is the same.
* Faults: a dead actor is restarted by Ray (``max_restarts``) and its in-flight units are retried
  (``max_task_retries``); the retry re-plans, so clips committed before the death are reused, never
  written twice.  An actor past its restarts is dropped and its unit goes to another actor; a unit nobody
  could finish becomes ``worker`` failure rows (a later run finishes it).
"""
from __future__ import annotations

import dataclasses

import math
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field

from mmmos.extract.report import ExtractReport, Failure, failures_path, write_failures

from .ray_cluster import (Progress, RayOptions, RayUnavailableError, check_fits, dashboard_url, default_workers,
                          ray_session, worker_device)

INFLIGHT_PER_WORKER = 2  # units queued on each actor, so it never waits for the driver between units


class ExtractWorker:
    """One Ray actor: the encoders loaded once, the store's writers open, units of clips run in turn."""

    def __init__(self, cfg, device: str | None, threads: int):
        from mmmos.cache_store import open_store
        from mmmos.core.threads import configure_threads
        from mmmos.extract import load_encoder, select_device
        from mmmos.extract.precision import _encoder_identity, resolve_precision

        configure_threads(threads)
        t = time.perf_counter()
        self.cfg = cfg
        self.store = open_store(cfg.store)
        self.device = select_device(device)
        from mmmos.extract.pipeline import feed_settings

        self.feed = feed_settings(self.device, cfg.batch_size, cfg.group_seconds, cfg.decode_workers, cfg.overlap)
        self.load_failures: list[Failure] = []
        self.stages = []  # (name, encoder, writer, precision)
        for name in cfg.encoders:
            try:
                enc = load_encoder(name, cfg.weights.get(name), device=self.device)
            except Exception as e:  # noqa: BLE001 - a bad weights file stops only this encoder (as locally)
                w = cfg.weights.get(name)
                self.load_failures.append(Failure("*", None if w is None else str(w), name, "load", str(e) or
                                                  type(e).__name__))
                continue
            precision = resolve_precision(cfg.precision, self.device, name)
            writer = self.store.writer(_encoder_identity(enc, precision), dtype=cfg.store_dtype)
            self.stages.append((name, enc, writer, precision))
        self.load_seconds = time.perf_counter() - t

    def info(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(), "device": self.device,
                "load_failures": self.load_failures, "load_seconds": self.load_seconds,
                "groups": [(name, writer.info.key) for name, _, writer, _ in self.stages]}

    def run_unit(self, rows: dict[str, str], rescan: bool = False) -> tuple[ExtractReport, int]:
        """Extract what ``rows`` ({clip id: path}) still needs; returns (the unit's report, this pid).

        ``rescan`` re-reads the store's index first (a unit handed over from a dead actor may have clips
        committed since this actor scanned)."""
        from mmmos.extract.pipeline import Pipeline, Stage, pending_groups
        from mmmos.extract.plan import Sources, plan_encoder

        rep = ExtractReport(clips_total=len(rows))
        sources, stages = Sources(), []
        for name, enc, writer, precision in self.stages:
            group = self.store.group(writer.info.key)
            if rescan:
                group.refresh()
            plan = plan_encoder(group, rows, sources, deep=self.cfg.verify)
            rep.skipped[name], rep.written[name], rep.encoder_seconds[name] = plan.reused, 0, 0.0
            rep.stale[name], rep.repaired[name], rep.unverified[name] = plan.stale, plan.damaged, plan.unverified
            stages.append(Stage(name, enc, writer, plan, precision))
        pending, groups = pending_groups(stages, rows, self.feed.group_seconds, self.feed.batch_size)
        before = {s.name: len(s.writer.committed) for s in stages}
        try:
            Pipeline(stages, rows, sources, rep, self.feed).run(groups, _Quiet())
        finally:
            for s in stages:
                try:
                    s.writer.commit()  # the unit is durable before it is reported done
                except Exception as e:  # noqa: BLE001 - e.g. a disk full while committing a part
                    rep.fail("*", None, s.name, "commit", f"{type(e).__name__}: {e}")
                s.writer.claims.release_all()  # clips that failed are free for a later run
                rep.written[s.name] = len(s.writer.committed) - before[s.name]
        return rep, os.getpid()

    def close(self) -> None:
        for _, _, writer, _ in self.stages:
            writer.close()


class _Quiet:
    def update(self, n, seconds):
        pass


@dataclass
class RayExtractRun:
    """What ``run_extract_ray`` did: the merged report plus how the pool fared."""

    report: ExtractReport
    workers: int = 0
    initial_pids: list[int] = field(default_factory=list)  # the actors' processes at start
    worker_pids: set[int] = field(default_factory=set)  # processes that finished units (restarts add pids)
    lost_workers: int = 0  # actors dropped after their restarts ran out
    startup_seconds: float = 0.0  # connecting + starting actors + loading encoders
    dashboard: str | None = None


def merge_report(into: ExtractReport, part: ExtractReport) -> None:
    """Add a unit's report to the run's (counts summed, lists joined)."""
    for name in part.written:
        for d in (into.written, into.skipped, into.unverified, into.busy):
            d.setdefault(name, 0)
        into.written[name] += part.written[name]
        into.skipped[name] += part.skipped.get(name, 0)
        into.unverified[name] += part.unverified.get(name, 0)
        into.busy[name] += part.busy.get(name, 0)
        into.stale.setdefault(name, []).extend(part.stale.get(name, []))
        into.repaired.setdefault(name, []).extend(part.repaired.get(name, []))
        into.encoder_seconds[name] = into.encoder_seconds.get(name, 0.0) + part.encoder_seconds.get(name, 0.0)
    into.busy = {k: v for k, v in into.busy.items() if v}
    into.failures.extend(part.failures)
    into.audio_seconds += part.audio_seconds
    into.decode_seconds += part.decode_seconds
    into.resample_seconds += part.resample_seconds
    into.write_seconds += part.write_seconds


def make_units(rows: dict[str, str], workers: int, unit_clips: int | None) -> list[dict[str, str]]:
    """The clips cut into units (manifest order): small enough that every worker gets several, so the
    progress bar moves and a lost unit costs little; at most 32 clips."""
    items = list(rows.items())
    size = unit_clips or max(1, min(32, math.ceil(len(items) / (workers * 4))))
    return [dict(items[i : i + size]) for i in range(0, len(items), size)]


def _unit_failed(rep: ExtractReport, unit: dict[str, str], why: str) -> None:
    for cid, path in unit.items():
        rep.fail(cid, path, "*", "worker", why)


def _start_actors(ray, cfg, opts: RayOptions, n: int):
    """``n`` actors, each with its encoders loaded; returns (actors, their info).  Creation errors in every
    actor (bad store, missing device) are user errors."""
    actor_cls = ray.remote(num_cpus=opts.cpus, num_gpus=opts.gpus, max_restarts=opts.retries,
                           max_task_retries=opts.retries)(ExtractWorker)
    device = worker_device(cfg.device, opts.gpus)
    threads = max(1, int(opts.cpus))
    actors = [actor_cls.remote(cfg, device, threads) for _ in range(n)]
    infos, alive, err = [], [], None
    for a in actors:
        try:
            infos.append(ray.get(a.info.remote()))
            alive.append(a)
        except Exception as e:  # noqa: BLE001 - reported below when no actor starts
            err = e
    if not alive:
        cause = getattr(err, "cause", None) or err
        raise RayUnavailableError(f"no extraction worker could start: {type(cause).__name__}: "
                                  f"{str(cause).strip().splitlines()[-1] if str(cause).strip() else ''}")
    return alive, infos


def _drive(ray, actors, units, rep: ExtractReport, run: RayExtractRun, opts: RayOptions, prog: Progress,
           on_unit=None) -> None:
    """Hand units to idle actors (``INFLIGHT_PER_WORKER`` each), merge results as they arrive."""
    from ray.exceptions import RayActorError

    queue, attempts = deque(range(len(units))), [0] * len(units)
    slots = deque(a for a in actors for _ in range(INFLIGHT_PER_WORKER))
    alive, inflight, t0, audio = set(actors), {}, time.perf_counter(), 0.0
    while queue or inflight:
        while queue and slots:
            a = slots.popleft()
            if a not in alive:
                continue
            i = queue.popleft()
            inflight[a.run_unit.remote(units[i], attempts[i] > 0)] = (a, i)
        if not inflight:  # every actor is gone: what is left is reported, a later run finishes it
            for i in queue:
                _unit_failed(rep, units[i], "no extraction worker left (all died past their restarts)")
            break
        (fut,), _ = ray.wait(list(inflight), num_returns=1)
        a, i = inflight.pop(fut)
        try:
            part, pid = ray.get(fut)
        except RayActorError as e:  # the actor died past its restarts: drop it, hand the unit on
            if a in alive:
                alive.discard(a)
                run.lost_workers += 1
            attempts[i] += 1
            if attempts[i] <= opts.retries and alive:
                queue.appendleft(i)
            else:
                _unit_failed(rep, units[i], f"worker died: {str(e).strip().splitlines()[0]}")
                prog.update(len(units[i]))
            continue
        except Exception as e:  # noqa: BLE001 - the unit raised (a bug or a store error): report, go on
            _unit_failed(rep, units[i], f"{type(e).__name__}: {str(e).strip().splitlines()[-1]}")
            slots.append(a)
            prog.update(len(units[i]))
            continue
        slots.append(a)
        merge_report(rep, part)
        run.worker_pids.add(pid)
        audio += part.audio_seconds
        prog.update(len(units[i]), f"{audio / max(1e-9, time.perf_counter() - t0):.1f} audio-s/s")
        if on_unit is not None:
            on_unit(i, part)


def _stop(ray, actors) -> None:
    """Close the actors' writers (releasing their claims), then end them."""
    import contextlib

    with contextlib.suppress(Exception):
        ray.get([a.close.remote() for a in actors], timeout=60)
    for a in actors:
        with contextlib.suppress(Exception):
            ray.kill(a, no_restart=True)


def _driver_device(device: str | None) -> str:
    """The text encoders' device on the driver: the one asked for when the driver has it, else the best it has
    (a CPU head node of a GPU cluster encodes the prompts on its CPU)."""
    from mmmos.core.errors import UserError
    from mmmos.extract import select_device

    try:
        return select_device(device)
    except UserError:
        return select_device(None)


def run_extract_ray(cfg, opts: RayOptions, unit_clips: int | None = None, on_unit=None) -> RayExtractRun:
    """Run the extraction ``cfg`` (an :class:`mmmos.extract.runner.ExtractConfig`) on Ray: the audio encoders
    on the actor pool, the text encoders (Track 1 prompts) afterwards on the driver.

    ``on_unit(index, unit report)`` is called on the driver as each unit finishes (monitoring, tests)."""
    from mmmos.cache_store import open_store
    from mmmos.extract import modality
    from mmmos.extract.plan import run_rows
    from mmmos.extract.runner import text_stage, unwritten

    t_start = time.perf_counter()
    rep = ExtractReport()
    planned = run_rows(cfg, rep)
    rows = planned.rows
    store = open_store(cfg.store, backend=cfg.backend, create=True)  # one backend for every worker
    run = RayExtractRun(rep)
    full_cfg, cfg = cfg, dataclasses.replace(cfg, encoders=[e for e in cfg.encoders if modality(e) == "audio"])
    with ray_session(opts.address) as ray:
        res = check_fits(ray, opts, "worker")
        n = opts.workers or default_workers(res, opts)
        units = make_units(rows, n, unit_clips)
        n = max(1, min(n, len(units)))
        actors, infos = _start_actors(ray, cfg, opts, n)
        run.workers, run.dashboard = len(actors), dashboard_url(ray)
        run.initial_pids = [i["pid"] for i in infos]
        run.startup_seconds = time.perf_counter() - t_start
        rep.load_seconds = max(i["load_seconds"] for i in infos)
        for f in infos[0]["load_failures"]:  # every actor fails alike; report it once, like a local run
            rep.failures.append(f)
        prog = Progress(len(rows), "extract (ray)", "clip", cfg.progress)
        if run.dashboard:
            prog.note(f"extract: {len(actors)} Ray workers; dashboard {run.dashboard}")
        try:
            _drive(ray, actors, units, rep, run, opts, prog, on_unit)
        finally:
            prog.close()
            _stop(ray, actors)
    # a listed clip no unit wrote and none reported (e.g. left to another extract's claim) is named: exit 3
    unwritten([(name, key, None) for name, key in infos[0]["groups"]], store, rows, rep)
    # Track 1 prompts: few and short, encoded once each by the driver (as a local run does after its audio)
    rep.text = text_stage(full_cfg, store, rows, planned.prompt_of, planned.prompt_problems,
                          _driver_device(cfg.device), rep)
    rep.wall_seconds = time.perf_counter() - t_start
    write_failures(failures_path(cfg.store, cfg.shard), rep.failures)
    return run


__all__ = ["ExtractWorker", "RayExtractRun", "make_units", "merge_report", "run_extract_ray"]
