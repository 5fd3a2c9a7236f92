"""Planning a sweep (any task, any executor): the inputs checked, the run folder's record written, and the
configurations split into those to train and the finished ones (see :func:`plan_sweep`)."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from mmmos.cache_store import CacheError
from mmmos.core.errors import UserError
from mmmos.core.rundir import ConfigDir, RunDir
from mmmos.core.tasks import DEFAULT_TASK

from .configs import TrainConfig, config_json, learned_settings
from .identity import check_run_dir, run_identity
from .labels import LabelSet, LabelSetError


class SweepInputError(UserError):
    """A sweep input (cache folder, device, configuration list) that cannot be used."""


class MissingEncoderError(CacheError, UserError):
    """The cache has no frames of an encoder a configuration needs."""


def open_cache(store: str):
    """Open the frame cache at ``store``; a missing folder, a file or a non-cache folder is a user error."""
    from mmmos.cache_store import open_store

    p = Path(store)
    if not p.exists():
        raise SweepInputError(f"--store {store}: no such folder (write a cache with `mmmos extract` first)")
    if not p.is_dir():
        raise SweepInputError(f"--store {store}: is a file, not a cache folder")
    try:
        return open_store(p)
    except CacheError as e:
        raise SweepInputError(str(e)) from None


def check_device(device: str) -> str:
    """``device`` if torch can use it here; a user error otherwise."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise SweepInputError(f"--device {device}: not a torch device ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SweepInputError(f"--device {device}: CUDA is not available here; use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise SweepInputError(f"--device {device}: MPS is not available here; use --device cpu")
    return device


def _encoder_keys(st, store: str, configs: list[TrainConfig]) -> dict[str, str]:
    needed = {e for c in configs for e in c.encoders}
    have = {i.name for i in st.encoders()}
    missing = sorted(needed - have)
    for e in missing:  # an encoder whose record is damaged: say so (find names the file and the repair)
        if any(d.encoder.rsplit("-", 1)[0] == e for d in st.damaged_encoders()):
            try:
                st.find(e)
            except CacheError as err:
                raise MissingEncoderError(str(err)) from None
    if missing:
        users = sorted(c.name for c in configs if set(c.encoders) & set(missing))
        raise MissingEncoderError(
            f"{store} has no frames of {', '.join(missing)} (it holds: {', '.join(sorted(have)) or 'none'}),"
            f" needed by {', '.join(users[:4])}{' …' if len(users) > 4 else ''}. Extract them first: "
            f"`mmmos extract --encoders {','.join(missing)} --weights NAME=PATH --store {store} "
            f"--manifest …` (or pick other encoders with --sets)")
    return {e: st.find(e).key for e in sorted(needed)}  # several identities of one name: find raises


def _check_names(configs: list[TrainConfig], sets: list[LabelSet]) -> str:
    """Unique configuration and set names, one task; returns the task."""
    seen: set[str] = set()
    for c in configs:
        if c.name in seen:
            raise SweepInputError(f"duplicate configuration name {c.name}")
        seen.add(c.name)
    names = [ls.name for ls in sets]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise LabelSetError(f"label set name(s) used twice: {', '.join(dup)} (train and dev are taken)")
    tasks = {c.task for c in configs} or {DEFAULT_TASK}
    if len(tasks) > 1:
        raise SweepInputError(f"one sweep trains one task; got {', '.join(sorted(tasks))}")
    return tasks.pop()


def _same_config(cdir: ConfigDir, c: TrainConfig) -> bool:
    try:
        old = cdir.read_config().config
    except UserError:
        return False
    return learned_settings(old) == learned_settings(config_json(c))


@dataclass
class SweepPlan:
    """What a sweep has to do in a run folder after the checks (see :func:`plan_sweep`)."""

    run: RunDir
    todo: list[TrainConfig]                             # configurations to train
    refresh: list[tuple[TrainConfig, ConfigDir]]        # finished ones: bring their evaluation sets up to date
    results: dict = field(default_factory=dict)         # {name: {"skipped": True}} for the finished ones
    changed_evals: set[str] = field(default_factory=set)


def plan_sweep(configs: list[TrainConfig], store: str, run: str | Path, train: LabelSet, dev: LabelSet,
               evals: list[LabelSet], force: bool = False, check_devices: bool = True) -> SweepPlan:
    """Check the inputs and the run folder (writing its run record) and split the configurations into
    those to train and the finished ones; any executor (processes here, Ray elsewhere) then trains ``todo``."""
    task = _check_names(configs, [train, dev, *evals])
    st = open_cache(store)
    if check_devices:
        for d in {c.device for c in configs}:
            check_device(d)
    keys = _encoder_keys(st, store, configs)
    resume = check_run_dir(run, run_identity(store, keys, [train, dev, *evals], task), force)
    plan = SweepPlan(RunDir(run), [], [], {}, resume.changed_evals)
    for c in configs:
        cdir = plan.run.config(c.name)
        if cdir.is_done() and not force:
            if _same_config(cdir, c):
                plan.results[c.name] = {"skipped": True}
                plan.refresh.append((c, cdir))
                continue
            print(f"  {c.name}: settings changed since it was trained; training it again", file=sys.stderr)
            cdir.clear_done()
        plan.todo.append(c)
    return plan
