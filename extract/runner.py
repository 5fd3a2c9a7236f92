"""The extraction runner: manifest -> plan -> decoded audio -> frozen encoders -> cache.

``run_extract(ExtractConfig)`` ties the steps together:

1. the clip list (plan.py): manifests, shard, limit;
2. per encoder: load it, open its writer, and plan which clips to extract, repair (damaged) or redo
   (audio changed since caching), reusing the rest - an interrupted run resumes where it stopped;
3. the decode -> embed -> write pipeline (pipeline.py); every clip is written atomically;
4. the report (report.py).  A bad clip never stops the run: it is recorded (clip, file, encoder, stage,
   reason) in ``<store>/extract_failures.csv`` and in the returned report.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from mmmos.cache_store import open_store

from . import load_encoder, select_device
from .base import FrameEncoder
from .pipeline import Pipeline, Stage, embed_many, feed_settings, pending_groups
from .plan import Sources, plan_encoder, run_rows, shard_of
from .precision import _encoder_identity, _forward, cache_key, resolve_precision
from .report import ExtractReport, Failure, failures_path, format_report, save_report, shard_suffix, write_failures


@dataclass
class ExtractConfig:
    manifests: list[str]
    store: str
    encoders: list[str] = field(default_factory=lambda: ["logmel"])
    weights: dict[str, str] = field(default_factory=dict)
    backend: str = "zarr"
    data_root: str | None = None
    device: str | None = None  # None/"auto": cuda -> mps -> cpu
    precision: str = "auto"  # see extract.precision.resolve_precision (resolved per encoder)
    store_dtype: str = "float16"
    batch_size: int | None = None  # None: see pipeline.feed_settings (32 on a GPU; 1 on CPU)
    group_seconds: float | None = None  # audio decoded ahead per group (None: feed_settings)
    decode_workers: int | None = None  # decode threads (None: feed_settings; 1 on CPU)
    shard: tuple[int, int] = (0, 1)  # (index, count): this process takes clips whose id hashes to index
    limit: int | None = None
    progress: bool = True
    overlap: bool | None = None  # decode/write threads beside the encoders; None: on for GPU/mps, off on CPU
    verify: bool = False  # read every cached clip (checksums) when planning, not only the cheap checks
    task: str | None = None  # the manifests' task (None: the default); track1 lists carry prompts
    prompts: str | None = None  # folder of the prompt tables (track1; None: beside/above the lists, data root)
    prompt: str | None = None  # one prompt for every clip without one (track1, e.g. a folder of audio)


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


def _stages(cfg: ExtractConfig, store, rows, sources, device, rep) -> list[Stage]:
    """Load each audio encoder and plan its clips; an encoder that fails to load is a failure, not a stop."""
    from . import modality

    stages = []
    for name in (e for e in cfg.encoders if modality(e) == "audio"):
        try:
            enc: FrameEncoder = load_encoder(name, cfg.weights.get(name), device=device)
        except Exception as e:  # noqa: BLE001 - a bad weights file stops only this encoder
            rep.fail("*", cfg.weights.get(name), name, "load", e)
            continue
        precision = resolve_precision(cfg.precision, device, name)
        writer = store.writer(_encoder_identity(enc, precision), dtype=cfg.store_dtype)
        plan = plan_encoder(store.group(writer.info.key), rows, sources, deep=cfg.verify)
        rep.skipped[name], rep.written[name], rep.encoder_seconds[name] = plan.reused, 0, 0.0
        rep.stale[name], rep.repaired[name], rep.unverified[name] = plan.stale, plan.damaged, plan.unverified
        stages.append(Stage(name, enc, writer, plan, precision))
    return stages


def _close_writers(stages: list[Stage], rows: dict[str, str], rep: ExtractReport) -> None:
    """Commit what is pending and count only what reached the store."""
    for s in stages:
        try:
            s.writer.close()
        except Exception as e:  # noqa: BLE001 - e.g. a disk full while committing the last part
            rep.fail("*", None, s.name, "commit", f"{type(e).__name__}: {e}")
        rep.written[s.name] = len(s.writer.committed)


def unwritten(groups: list[tuple[str, str, object]], store, rows: dict[str, str], rep: ExtractReport) -> None:
    """Name every listed clip this run leaves without frames and without a reported failure - e.g. one left to
    another writer's claim - as a failure, so the run exits 3 instead of leaving a silent gap in the cache.

    ``groups``: (encoder name, group key, the run's claims on that group or None: a run whose writers lived in
    other processes, e.g. Ray's actors, which have released theirs)."""
    from mmmos.cache_store import clip_key
    from mmmos.cache_store.locking import Claims

    failed = {(f.clip_id, f.encoder) for f in rep.failures}
    whole = {f.encoder for f in rep.failures if f.clip_id == "*"}  # e.g. a failed commit: already reported
    for name, key, claims in groups:
        if name in whole:
            continue
        g = store.group(key)
        g.refresh()
        for cid, path in rows.items():
            if (cid, name) in failed or (cid, "*") in failed or g.is_valid(cid):
                continue
            claims = claims or Claims(g.root)
            who = claims.holder(clip_key(cid))
            rep.fail(cid, path, name, "claim",
                     f"not written: claimed by another extract still running ({who}); re-run when it has finished"
                     if who else "not written (its claim was released without frames); re-run to extract it")


def text_stage(cfg: ExtractConfig, store, rows, prompt_of, prompt_problems, device, rep) -> list:
    """The text encoders over the distinct prompts of this run's clips (extract/text.py); clips without a
    usable prompt are failures of every text encoder.  Returns the per-encoder results."""
    from . import modality
    from .text import distinct_prompts, run_text_encoders

    names = [e for e in cfg.encoders if modality(e) == "text"]
    if not names:
        return []
    for m, p in prompt_problems:
        if p.clip_id in rows:
            for name in names:
                rep.fail(p.clip_id, rows[p.clip_id], name, "manifest", f"{m}: {p.message}")
    prompts = distinct_prompts(prompt_of[c] for c in rows if c in prompt_of)
    return run_text_encoders(names, cfg.weights, store, prompts, device, cfg.store_dtype, rep)


def run_extract(cfg: ExtractConfig) -> ExtractReport:
    t_start = time.perf_counter()
    rep = ExtractReport()
    planned = run_rows(cfg, rep)
    rows = planned.rows
    store = open_store(cfg.store, backend=cfg.backend, create=True)
    device = select_device(cfg.device)
    feed = feed_settings(device, cfg.batch_size, cfg.group_seconds, cfg.decode_workers, cfg.overlap)
    t_load = time.perf_counter()
    sources = Sources()
    stages = _stages(cfg, store, rows, sources, device, rep)
    rep.load_seconds = time.perf_counter() - t_load
    pending, groups = pending_groups(stages, rows, feed.group_seconds, feed.batch_size)
    prog = _Progress(len(pending), cfg.progress and len(pending) > 0)
    try:
        Pipeline(stages, rows, sources, rep, feed).run(groups, prog)
    finally:
        _close_writers(stages, rows, rep)
        prog.close()
    unwritten([(s.name, s.writer.info.key, s.writer.claims) for s in stages], store, rows, rep)
    rep.text = text_stage(cfg, store, rows, planned.prompt_of, planned.prompt_problems, device, rep)
    rep.wall_seconds = time.perf_counter() - t_start
    write_failures(failures_path(cfg.store, cfg.shard), rep.failures)
    return rep


__all__ = ["ExtractConfig", "ExtractReport", "Failure", "cache_key", "embed_many", "format_report", "run_extract",
           "save_report", "shard_of", "shard_suffix", "text_stage", "_encoder_identity", "_forward"]
