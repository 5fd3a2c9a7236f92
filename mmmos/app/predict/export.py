"""Export: trained configurations of a sweep run -> a self-contained predictor folder (see :mod:`.spec`).

The run is read through :mod:`mmmos.core.rundir` (``ModelRecord`` for ``model.pt``, ``ConfigRecord`` for
``config.json``); the folder is written to a temporary sibling and renamed into place, so a reader never
sees half a predictor.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path, PurePosixPath
from typing import Any

from mmmos.core.dirswap import recover, replace_dir, staging_dir
from mmmos.core.outputs import check_creatable
from mmmos.core.rundir import ConfigDir, ModelRecord, RunDir, RunDirError
from mmmos.core.tasks import get_task

from .errors import PredictorError
from .pins import FILES_KEY, pin_files
from .spec import FORMAT, MEMBERS_DIR, PREDICTOR_FILE, MemberSpec, PredictorSpec, safe_member_name


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def _trained(run: RunDir, name: str) -> ConfigDir:
    safe_member_name(name)
    cdir: ConfigDir = run.config(name)
    if not cdir.model_path.is_file():
        have = [n for n in run.config_names() if run.config(n).model_path.is_file()]
        raise PredictorError(f"{cdir.model_path}: no trained model for member {name!r} in {run.path} "
                             f"(trained: {', '.join(have) or 'none'})")
    return cdir


def _read_member(run: RunDir, name: str) -> tuple[ModelRecord, bool]:
    """The model record of configuration ``name`` and whether its predictions were clamped."""
    cdir = _trained(run, name)
    try:
        rec = cdir.read_model()
    except RunDirError as e:
        raise PredictorError(str(e)) from None
    except TypeError as e:  # a dict lacking record fields
        raise PredictorError(f"{cdir.model_path}: not a sweep model record ({e})") from None
    task = get_task(rec.task)
    if list(rec.axes) != list(task.axes):
        raise PredictorError(f"{cdir.model_path}: axes {list(rec.axes)} are not those of task {task.name} "
                             f"{list(task.axes)}")
    clip = True
    if cdir.config_path.is_file():
        try:
            clip = bool(cdir.read_config().config.get("clip_predictions", True))
        except RunDirError as e:
            raise PredictorError(str(e)) from None
    return rec, clip


def _collect(run: RunDir, members: list[str]) -> tuple[list[tuple[str, ModelRecord, bool]], dict, dict, str]:
    """Member records, the union of encoder identities (key -> identity), name -> key, and the task."""
    recs, identities, names_by_key, tasks = [], {}, {}, set()
    for m in members:
        rec, clip = _read_member(run, m)
        tasks.add(rec.task)
        for key, ident in zip(rec.encoder_keys, rec.encoders):
            ident = _jsonable(ident)
            name = ident["name"]
            if names_by_key.setdefault(name, key) != key:
                raise PredictorError(f"members need two different {name!r} encoders ({names_by_key[name]} and {key}, "
                                     f"the latter from {m}); one predictor takes one set of weights per encoder name")
            identities[key] = ident
        recs.append((m, rec, clip))
    if len(tasks) > 1:
        raise PredictorError(f"members were trained for different tasks ({', '.join(sorted(tasks))})")
    return recs, identities, names_by_key, tasks.pop()


def _member_spec(name: str, rec: ModelRecord, clip: bool) -> MemberSpec:
    return MemberSpec(name=name, file=f"{MEMBERS_DIR}/{name}.pt", head_config=_jsonable(rec.head_config),
                      z_mean=[float(v) for v in rec.z_mean], z_std=[float(v) for v in rec.z_std],
                      encoder_keys=list(rec.encoder_keys), crop_seconds=float(rec.crop_seconds),
                      grid_rate=float(rec.grid_rate) if rec.grid_rate is not None else None,
                      clip_predictions=clip, features=rec.features)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _foreign(out: Path) -> tuple[str | None, list[str]]:
    """Why ``out`` is not an exported predictor folder (None if it is one), and the entries that are not its."""
    f = out / PREDICTOR_FILE
    if not f.is_file():
        return f"no {PREDICTOR_FILE}", []
    try:
        spec = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return f"{PREDICTOR_FILE} is not readable JSON ({type(e).__name__})", []
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        return f"{PREDICTOR_FILE} is not an mmmos predictor record", []
    pins = spec.get(FILES_KEY)
    if pins is None:  # written before pins existed: its member files (so the re-export its loader asks for works)
        members = spec.get("members")
        if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
            return f"{PREDICTOR_FILE} has no \"{FILES_KEY}\" record", []
        pins = {str(m.get("file", f"{MEMBERS_DIR}/{m.get('name')}.pt")): "" for m in members}
    if not isinstance(pins, dict):
        return f"{PREDICTOR_FILE} has a malformed \"{FILES_KEY}\" record", []
    keep = {PREDICTOR_FILE, *pins}
    dirs = {p.as_posix() for k in pins for p in PurePosixPath(k).parents if p.as_posix() != "."}
    foreign = []
    for root, dnames, fnames in os.walk(out):
        rel = Path(root).relative_to(out)
        for d in list(dnames):
            r = (rel / d).as_posix()
            if r not in dirs or (Path(root) / d).is_symlink():
                foreign.append(r + "/")
                dnames.remove(d)
        foreign += [(rel / n).as_posix() for n in fnames if (rel / n).as_posix() not in keep]
    return None, sorted(foreign)


def check_export_dir(out: str | os.PathLike) -> None:
    """Refuse (:class:`PredictorError`) an ``out`` that export must not replace, before anything is written: a file,
    a folder that is not empty and not an exported predictor, one holding anything but ``predictor.json`` and the
    files it pins (a user's file there would be deleted with it), or a place where no folder can be made."""
    out = Path(out)
    if out.is_dir() and any(out.iterdir()):
        why, foreign = _foreign(out)
        if why is not None:
            names = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir())
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            raise PredictorError(f"{out} is not a predictor folder ({why}; it holds {', '.join(names[:3])}{more}); "
                                 f"refusing to replace it - choose a new folder")
        if foreign:
            more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
            raise PredictorError(f"{out} holds files that are not part of the exported predictor "
                                 f"({', '.join(foreign[:3])}{more}); refusing to replace it - move them or choose "
                                 f"a new folder")
    try:
        check_creatable(out)
    except OSError as e:
        raise PredictorError(f"{out}: cannot write the predictor folder here ({_one_line(e)})") from None


def check_export(run_dir: str | os.PathLike, members: list[str], out_dir: str | os.PathLike) -> None:
    """The cheap checks of :func:`export_predictor` (members trained, destination), for a caller that must refuse
    before it writes anything else."""
    run = RunDir(run_dir)
    for m in members:
        _trained(run, m)
    check_export_dir(out_dir)


def export_predictor(run_dir: str | os.PathLike, members: list[str], out_dir: str | os.PathLike,
                     weights: dict[str, str] | None = None, stack: dict | None = None) -> Path:
    """Write the ensemble ``members`` of sweep run ``run_dir`` as a predictor folder ``out_dir``.

    ``weights`` (encoder name -> path) are recorded as default weights paths.  ``stack`` (the record of
    ``mmmos.ensemble.StackResult.export_record``) makes a stacked predictor: its meta-model replaces the
    members' mean.  An existing ``out_dir`` is replaced only if it holds a predictor and nothing else (or is
    empty; see :func:`check_export_dir`).
    Returns ``out_dir``."""
    run, out = RunDir(run_dir), Path(out_dir)
    if not members:
        raise PredictorError("export_predictor: no members given")
    if len(set(members)) != len(members):
        raise PredictorError(f"export_predictor: duplicated members in {members}")
    recs, identities, names_by_key, task = _collect(run, list(members))
    if stack is not None:
        from .stacked import StackSpec

        from mmmos.core.manifests import has_prompts

        StackSpec.from_json(stack, get_task(task).axes, list(members), "export_predictor (stack)",
                            saved_bins_ok=has_prompts(get_task(task)))  # the Track 1 predictor computes them
    unknown = sorted(set(weights or {}) - set(names_by_key))
    if unknown:
        raise PredictorError(f"weights given for {', '.join(unknown)}, which no member uses "
                             f"(needed: {', '.join(sorted(names_by_key))})")
    check_export_dir(out)
    import torch

    spec = PredictorSpec(members=[_member_spec(m, rec, clip) for m, rec, clip in recs], encoders=identities,
                         task=task, weights={k: str(Path(v).resolve()) for k, v in (weights or {}).items()},
                         source={"run": str(run.path.resolve()), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                         stack=_jsonable(stack) if stack is not None else None)
    tmp = None
    try:
        recover(out)  # what a killed earlier export left beside it (see mmmos.core.dirswap)
        tmp = staging_dir(out)
        (tmp / MEMBERS_DIR).mkdir()
        for m, rec, _ in recs:
            torch.save({k: v.detach().cpu().contiguous() for k, v in rec.state_dict.items()},
                       tmp / MEMBERS_DIR / f"{m}.pt")
        spec.files = pin_files(tmp, PREDICTOR_FILE)  # every file sha256-pinned, checked on load (.pins)
        (tmp / PREDICTOR_FILE).write_text(json.dumps(spec.to_json(), indent=2))
        replace_dir(tmp, out)
    except OSError as e:
        raise PredictorError(f"{out}: cannot write the predictor folder ({_one_line(e)})") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


__all__ = ["check_export", "check_export_dir", "export_predictor"]
