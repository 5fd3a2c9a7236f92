"""Predictions and metrics of a trained head on label sets, and adding evaluation sets to finished
configurations without retraining them."""
from __future__ import annotations

import json
from dataclasses import fields

import numpy as np

from mmmos.core.rundir import ConfigDir
from mmmos.core.tasks import Task, get_task

from .batches import default_batch_size, feature_bank, predict
from .device_bank import device_bank
from .configs import TrainConfig
from .labels import LabelSet, lost_clips, select_clips


def usable_bank(groups, df, cfg: TrainConfig, frames: bool, set_name: str, notes: list[str],
                dropped: dict[str, list[str]]):
    """The feature bank of ``df``'s clips, and ``df``.  Clips found damaged while their frames are read (a
    bit-flipped chunk, a damaged HDF5 part) fail the configuration naming *every* damaged clip of the set, or under
    ``allow_missing_clips`` are left out like missing clips (logged, added to ``dropped``).  Only a set that
    holds damage is read a second time, to find all of it."""
    import polars as pl

    from mmmos.cache_store import DamagedClipError

    ids = df["clip_id"].to_list()
    try:
        return feature_bank(groups, ids, cfg.crop_seconds, frames, cfg.grid_rate), df
    except DamagedClipError as e:
        first = e.damage
        bad = _damaged_on_read(groups, ids)
    if not bad:  # the damage was elsewhere (e.g. a clip id of another set): report it as it came
        raise DamagedClipError(first)
    if not cfg.allow_missing_clips:
        raise lost_clips(set_name, bad, len(ids), [g.info.name for g in groups],
                         f" (damaged cache entry found on read, first in {first.file}: {first.reason})")
    notes.append(f"{set_name}: {len(bad)} clips are damaged in the cache and are left out (--allow-missing-clips): "
                 f"{', '.join(bad)}")
    dropped.setdefault(set_name, []).extend(bad)
    df = df.filter(~pl.col("clip_id").is_in(bad))
    return feature_bank(groups, df["clip_id"].to_list(), cfg.crop_seconds, frames, cfg.grid_rate), df


def _damaged_on_read(groups, ids: list[str]) -> list[str]:
    """The ids among ``ids`` whose frames fail to read in any group (each read also records the damage for the
    next ``mmmos extract`` to repair)."""
    from mmmos.cache_store import DamagedClipError

    bad = []
    for cid in ids:
        for g in groups:
            try:
                g.read(cid)
            except DamagedClipError:
                bad.append(cid)
                break
    return bad


def score_set(cdir: ConfigDir, ls: LabelSet, store, cfg: TrainConfig, task: Task, head, mu, sd, device: str,
              notes: list[str], dropped: dict[str, list[str]] | None = None):
    """Predict every cached clip of ``ls`` on the task's scale, write ``predictions/<set>.parquet``;
    returns the set's metrics table and its summary lines.  Listed clips the cache cannot give fail the
    configuration unless ``cfg.allow_missing_clips`` (then they are added to ``dropped``)."""
    import polars as pl
    import torch

    from mmmos.core.metrics import evaluate

    dropped = {} if dropped is None else dropped
    groups, df = select_clips(ls, store, cfg.encoders, task.axes, False, notes, cfg.allow_missing_clips, dropped)
    frames = head.needs_frames
    bank, df = usable_bank(groups, df, cfg, frames, ls.name, notes, dropped)
    bs = cfg.batch_size or default_batch_size(frames)
    z = predict(head, device_bank(bank, device), bs, torch, device, task.n_axes).astype(np.float64)
    y = z * sd + mu
    if cfg.clip_predictions:
        y = np.clip(y, task.lo, task.hi)
    pred = pl.DataFrame({"clip_id": bank.clip_ids, "system": df["system"], "domain": df["domain"],
                         **{a: y[:, k] for k, a in enumerate(task.axes)}})
    cdir.write_predictions(ls.name, pred)
    ev = evaluate(pred, df, set_name=ls.name, task=task)
    return ev.table, ev.summary_lines()


def config_from_record(config: dict) -> TrainConfig:
    """A :class:`TrainConfig` from config.json's ``config`` (unknown keys ignored, missing ones default)."""
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in config.items() if k in names})


def add_eval_sets(cdir: ConfigDir, store_path: str, sets: list[LabelSet], device: str = "cpu") -> None:
    """Predict ``sets`` with a finished configuration's saved head (no training): write their predictions,
    replace their rows in metrics.parquet, log their summaries and record their label hashes."""
    import polars as pl

    from mmmos.cache_store.packed import open_frames
    from mmmos.heads import rebuild

    rec = cdir.read_config()
    cfg = config_from_record(rec.config)
    model = cdir.read_model()
    task = get_task(model.task)
    head = rebuild(model.head_config, model.state_dict, device)
    mu, sd = np.asarray(model.z_mean, np.float64), np.asarray(model.z_std, np.float64)
    store = open_frames(store_path)
    tables, lines, notes = [], [], []
    for ls in sets:
        table, summary = score_set(cdir, ls, store, cfg, task, head, mu, sd, device, notes)
        tables.append(table)
        lines += summary
        rec.label_sha256[ls.name] = ls.sha256
    names = [ls.name for ls in sets]
    old = cdir.read_metrics() if cdir.metrics_path.is_file() else None
    if old is not None:
        tables.insert(0, old.filter(~pl.col("set").is_in(names)))
    cdir.write_metrics(pl.concat(tables, how="vertical_relaxed"))
    rec.notes = rec.notes + notes
    cdir.write_config(rec)
    with cdir.open_log("a") as log_f:
        for line in notes + lines:
            log_f.write(json.dumps({"note": line}) + "\n")
