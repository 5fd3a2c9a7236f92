"""A run's identity (run.json) and whether a run folder may be resumed with the current inputs.

The identity is the task, the cache (path + encoder identity keys) and every label set: its file and the
sha256 of its content.  Resuming refuses (without ``--force``) a different cache or task and a changed
training or dev set; an evaluation set that is new or whose content changed is only re-predicted.
Records written before label hashes existed compare label files by path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mmmos.core.rundir import ConfigDir, RunDir, RunDirError, RunRecord

from .labels import LabelSet

TRAINING_SETS = ("train", "dev")  # sets whose change invalidates every trained head


class RunMismatchError(RunDirError):
    """The run folder was trained from other inputs (cache, task, training or dev labels)."""


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "unknown"


def run_identity(store_path: str, encoder_keys: dict[str, str], labels: list[LabelSet], task: str) -> RunRecord:
    """The :class:`RunRecord` of a sweep over these inputs."""
    return RunRecord(store=str(Path(store_path).resolve()), encoders=dict(sorted(encoder_keys.items())),
                     labels={ls.name: str(Path(ls.path).resolve()) for ls in labels}, task=task,
                     label_sha256={ls.name: ls.sha256 for ls in labels})


def _set_changed(old: RunRecord, new: RunRecord, name: str) -> str | None:
    """How set ``name`` differs between the records (None: same content, or not recorded before)."""
    if name not in old.labels:
        return None
    old_sha, new_sha = old.label_sha256.get(name), new.label_sha256.get(name)
    if old_sha:
        if old_sha == new_sha:
            return None
    elif old.labels[name] == new.labels.get(name):
        return None  # an old record without hashes: the same file is taken as the same labels
    return (f"{name} labels changed: {old.labels[name]} (sha256 {_short(old_sha)}) -> "
            f"{new.labels.get(name)} (sha256 {_short(new_sha)})")


@dataclass
class Resume:
    """What resuming a run folder means: the record to write and the evaluation sets whose content changed."""

    record: RunRecord
    changed_evals: set[str] = field(default_factory=set)


def check_run_dir(run: str | Path, ident: RunRecord | dict, force: bool = False) -> Resume:
    """Refuse to resume ``run`` from other inputs (unless ``force``), then write its run record.

    Without ``force`` the written record keeps evaluation sets recorded earlier (their predictions stay)."""
    rd = RunDir(run)
    new = ident if isinstance(ident, RunRecord) else RunRecord.from_json(ident)
    old = rd.read_run()
    resume = Resume(new)
    if old is not None and not force:
        if old.encoders != new.encoders or old.store != new.store:
            raise RunMismatchError(
                f"{run} was trained from a different cache ({old.store}: {old.encoders}; now {new.store}: "
                f"{new.encoders}); use a new --run folder (or --force to retrain everything there)")
        if old.task != new.task:
            raise RunMismatchError(f"{run} was trained for task {old.task}, not {new.task}; use a new --run folder "
                                   f"(or --force to retrain everything there)")
        changed = [c for c in (_set_changed(old, new, n) for n in TRAINING_SETS) if c]
        if changed:
            raise RunMismatchError(f"{run}: {'; '.join(changed)}; the trained heads are stale: use --force to "
                                   f"retrain them or a new --run folder")
        resume.changed_evals = {n for n in new.labels if n not in TRAINING_SETS and _set_changed(old, new, n)}
        keep = [n for n in old.labels if n not in new.labels]
        resume.record = RunRecord(
            store=new.store, encoders=new.encoders, task=new.task,
            labels={**{n: old.labels[n] for n in keep}, **new.labels},
            label_sha256={**{n: old.label_sha256[n] for n in keep if n in old.label_sha256}, **new.label_sha256},
            extra=old.extra)
    rd.write_run(resume.record)
    return resume


def stale_eval_sets(cdir: ConfigDir, evals: list[LabelSet], changed_evals: set[str]) -> list[LabelSet]:
    """The evaluation sets a finished configuration has not predicted from their current content."""
    try:
        done = cdir.read_config().label_sha256
    except RunDirError:
        done = {}
    out = []
    for ls in evals:
        if ls.name in done:
            if done[ls.name] != ls.sha256:
                out.append(ls)
        # no hash recorded (older configuration): its predictions count unless the run saw the set change
        elif not cdir.predictions_path(ls.name).is_file() or ls.name in changed_evals:
            out.append(ls)
    return out
