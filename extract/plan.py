"""Planning an extraction: which clips, and per encoder which to extract, repair or reuse.

A cached clip is reused only when it is valid (metadata sound, data present, not recorded as damaged)
and, when it records its source, the audio file still holds the same bytes
(:func:`mmmos.core.sources.same_source`).  Clips cached by older versions carry no source: they are
reused and counted as *unverified*.  Damaged and stale clips are re-extracted and replace the old copy.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from mmmos.cache_store import DamagedClipError, EncoderGroup, clip_key
from mmmos.core.sources import SourceId, fingerprint, same_source

from .report import ExtractReport

log = logging.getLogger("mmmos.extract")


def shard_of(clip_id: str, count: int) -> int:
    return int(hashlib.sha1(clip_id.encode("utf-8", "surrogatepass")).hexdigest()[:8], 16) % count


#: Manifest problems that concern only a clip's prompt (its audio is still extracted).
PROMPT_PROBLEMS = ("missing_prompt", "empty_prompt", "no_prompt_id")


def manifest_rows(manifests: list[str], data_root: str | None, rep: ExtractReport, *, task=None,
                  prompts: str | None = None, prompt: str | None = None, prompt_of: dict[str, str] | None = None,
                  prompt_problems: list | None = None) -> dict[str, str]:
    """``{clip_id: audio path}`` over all manifests; bad rows become ``manifest`` failures.

    Track 1 (``task`` with prompts): ``prompt_of`` receives ``{clip_id: prompt text}`` and ``prompt_problems``
    the clips without a usable prompt as ``(manifest, Problem)`` (the caller decides which encoders they fail).
    """
    from mmmos.core.manifests import load_manifest

    rows: dict[str, str] = {}
    for m in manifests:
        problems: list = []
        df = load_manifest(m, data_root=data_root, check_labels=False, problems=problems, task=task,
                           prompts=prompts, prompt=prompt)
        for p in problems:
            if p.kind in PROMPT_PROBLEMS:
                if prompt_problems is not None:
                    prompt_problems.append((m, p))
                continue
            rep.fail(p.clip_id, p.path, "*", "manifest", f"{m}: {p.message}")
        if prompt_of is not None:
            for cid, text in zip(df["clip_id"].to_list(), df["prompt"].to_list()):
                if cid and text and cid not in prompt_of:
                    prompt_of[cid] = text
        for cid, path in zip(df["clip_id"].to_list(), df["path"].to_list()):
            if cid is None or str(cid) == "":
                rep.fail(str(cid), path, "*", "manifest", f"{m}: row without a clip id")
            elif path is None or str(path) == "":
                rep.fail(cid, None, "*", "manifest", f"{m}: row has no audio path")
            elif cid in rows:
                if rows[cid] != path:
                    rep.fail(cid, path, "*", "manifest", f"{m}: duplicated clip id (first kept: {rows[cid]})")
            else:
                rows[cid] = path
    return rows


def select_rows(rows: dict[str, str], shard: tuple[int, int], limit: int | None) -> dict[str, str]:
    if shard[1] > 1:
        rows = {c: p for c, p in rows.items() if shard_of(c, shard[1]) == shard[0]}
    if limit:
        rows = dict(list(rows.items())[:limit])
    return rows


@dataclass
class RunRows:
    """What an extraction run works on, read from its manifests: the selected rows (clip id -> audio path), each
    clip's prompt (Track 1) and the prompt problems found while reading."""

    rows: dict[str, str]
    prompt_of: dict[str, str]
    prompt_problems: list


def run_rows(cfg, rep: ExtractReport) -> RunRows:
    """The rows of ``cfg`` (an :class:`mmmos.extract.runner.ExtractConfig`: its manifests, shard and limit), with
    manifest problems recorded in ``rep`` and ``rep.clips_total`` set; the one reading both the local and the Ray
    runner use."""
    prompt_of: dict[str, str] = {}
    prompt_problems: list = []
    rows = select_rows(manifest_rows(cfg.manifests, cfg.data_root, rep, task=cfg.task, prompts=cfg.prompts,
                                     prompt=cfg.prompt, prompt_of=prompt_of, prompt_problems=prompt_problems),
                       cfg.shard, cfg.limit)
    rep.clips_total = len(rows)
    return RunRows(rows, prompt_of, prompt_problems)


class Sources:
    """Fingerprints of the run's audio files, each computed at most once."""

    def __init__(self):
        self._memo: dict[str, SourceId | None] = {}

    def get(self, path: str) -> SourceId | None:
        if path not in self._memo:
            try:
                self._memo[path] = fingerprint(path)
            except OSError:
                self._memo[path] = None  # unreadable now: decoding reports it
        return self._memo[path]


@dataclass
class EncoderPlan:
    """What one encoder does this run."""

    todo: list[str] = field(default_factory=list)  # to extract (missing, damaged or stale), manifest order
    replace: set[str] = field(default_factory=set)  # of those, the ones whose cached copy is replaced
    reused: int = 0
    unverified: int = 0
    damaged: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)


def _intact(group: EncoderGroup, cid: str, deep: bool) -> bool:
    if not group.is_valid(cid):
        return False
    if deep:
        try:
            group.read(cid)
        except DamagedClipError:
            return False
    return True


def plan_encoder(group: EncoderGroup, rows: dict[str, str], sources: Sources, deep: bool = False) -> EncoderPlan:
    """Sort the run's clips for one encoder; ``deep`` reads every cached clip (checksums) instead of the
    cheap checks."""
    plan = EncoderPlan()
    bad_keys = group.damaged_keys()
    for cid, path in rows.items():
        if cid not in group.index:
            if clip_key(cid) in bad_keys:
                plan.damaged.append(cid)
                plan.replace.add(cid)
            plan.todo.append(cid)
            continue
        if not _intact(group, cid, deep):
            plan.damaged.append(cid)
        else:
            recorded = group.clip(cid).source
            current = sources.get(path) if recorded is not None else None
            if recorded is None or current is None:
                plan.unverified += 1
                plan.reused += 1
                continue
            if same_source(recorded, current):
                plan.reused += 1
                continue
            plan.stale.append(cid)
        plan.todo.append(cid)
        plan.replace.add(cid)
    if plan.stale:
        log.warning("%s: %d cached clips changed source since extraction; re-extracting: %s", group.info.name,
                    len(plan.stale), ", ".join(plan.stale[:5]))
    if plan.damaged:
        log.warning("%s: %d damaged cached clips; re-extracting: %s", group.info.name, len(plan.damaged),
                    ", ".join(plan.damaged[:5]))
    return plan
