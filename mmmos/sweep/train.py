"""Training one configuration from the cache: the epoch loop, early stopping, and the files it leaves.

Each configuration is runnable alone (:func:`train_configuration`), e.g. as one task of a cluster
scheduler, as long as it gets the same cache and label files.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mmmos.core.rundir import ConfigDir, ConfigRecord, ModelRecord
from mmmos.core.tasks import get_task

from .batches import batches, default_batch_size, inputs, predict, zstats
from .device_bank import device_bank
from .configs import TrainConfig, config_json
from .evaluate import score_set, usable_bank
from .labels import LabelSet, MissingClipsError, select_clips


class TooFewClipsError(MissingClipsError):
    """Too few usable clips left to train (after missing labels and, if allowed, missing clips)."""


@dataclass
class _Fit:
    """What the epoch loop hands back."""

    best: float
    best_state: dict
    epochs_run: int
    t_data: float
    t_step: float


def _epochs(cfg: TrainConfig, head, opt, loss_fn, bank_tr, bank_dv, z_tr, z_dv, bs, log_f, torch,
            progress: bool) -> _Fit:
    """Train with one random crop per clip per epoch; stop after ``patience`` epochs without a better dev loss."""
    rng = np.random.default_rng(cfg.seed)
    device = cfg.device
    best, best_state, bad_epochs, epochs_run = math.inf, None, 0, 0
    t_data = t_step = 0.0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.epochs, desc=cfg.name, unit="epoch", file=sys.stderr, leave=False, dynamic_ncols=True)
    for epoch in range(cfg.epochs):
        head.train()
        losses = []
        for idx in batches(len(bank_tr), bs, rng):
            t = time.perf_counter()
            starts = bank_tr.random_starts(idx, rng)
            x, lengths = inputs(bank_tr, head, idx, starts, torch, device)
            target = z_tr[idx]
            t_data += time.perf_counter() - t
            t = time.perf_counter()
            loss = loss_fn(head(x, lengths), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            t_step += time.perf_counter() - t
            losses.append(loss.item())
        # dev loss: deterministic batches over whole clips
        t = time.perf_counter()
        p_dv = torch.from_numpy(predict(head, bank_dv, bs, torch, device, z_dv.shape[1]))
        dev_loss = float(np.mean([float(loss_fn(p_dv[i], z_dv[i])) for i in batches(len(bank_dv), bs, None)]))
        t_step += time.perf_counter() - t
        epochs_run = epoch + 1
        improved = dev_loss < best - 1e-6
        if improved:
            best, bad_epochs = dev_loss, 0
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
        else:
            bad_epochs += 1
        log_f.write(json.dumps({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "dev_loss": dev_loss,
                                "best": improved, "t_data": t_data, "t_step": t_step}) + "\n")
        log_f.flush()
        if bar is not None:
            bar.set_postfix_str(f"dev {dev_loss:.4f}")
            bar.update(1)
        if bad_epochs >= cfg.patience:
            break
    if bar is not None:
        bar.close()
    return _Fit(best, best_state, epochs_run, t_data, t_step)


def train_configuration(cfg: TrainConfig, store_path: str, train: LabelSet, dev: LabelSet,
                        evals: list[LabelSet], out_dir: str | Path, progress: bool = True,
                        before_done: Callable[[], None] | None = None) -> dict:
    """Train one configuration and write its model, log, predictions and metrics into ``out_dir``.

    ``before_done`` runs just before the DONE marker is written (a worker uses it to stop when its
    parent has gone); it raises to leave the configuration unfinished."""
    import polars as pl
    import torch

    from mmmos.cache_store.packed import open_frames
    from mmmos.heads import build_head, head_class
    from mmmos.losses import get_loss

    task = get_task(cfg.task)
    cdir = ConfigDir(out_dir)
    cdir.path.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    loss_fn = get_loss(cfg.loss)
    frames = head_class(cfg.head).needs_frames
    store = open_frames(store_path)  # a path, or the sweep's packed frames (read once per sweep)
    notes: list[str] = []
    t_load = time.perf_counter()
    dropped: dict[str, list[str]] = {}  # set -> clip ids left out under --allow-missing-clips
    allow = cfg.allow_missing_clips
    groups, tr = select_clips(train, store, cfg.encoders, task.axes, True, notes, allow, dropped)
    _, dv = select_clips(dev, store, cfg.encoders, task.axes, True, notes, allow, dropped)
    if tr.height < 2:
        raise TooFewClipsError(f"{cfg.name}: {tr.height} labelled training clips usable; need at least 2")
    if dv.height < 1:
        raise TooFewClipsError(f"{cfg.name}: no labelled dev clips usable")
    bank_tr, tr = usable_bank(groups, tr, cfg, frames, train.name, notes, dropped)
    bank_dv, dv = usable_bank(groups, dv, cfg, frames, dev.name, notes, dropped)
    bank_tr, bank_dv = device_bank(bank_tr, cfg.device), device_bank(bank_dv, cfg.device)
    t_load = time.perf_counter() - t_load

    y_tr = tr.select(task.axes).to_numpy().astype(np.float64)
    y_dv = dv.select(task.axes).to_numpy().astype(np.float64)
    mu, sd = zstats(y_tr)  # training-set statistics for every set
    z_tr = torch.from_numpy(((y_tr - mu) / sd).astype(np.float32)).to(cfg.device)
    z_dv = torch.from_numpy(((y_dv - mu) / sd).astype(np.float32))  # compared with CPU predictions

    torch.manual_seed(cfg.seed)
    head = build_head(cfg.head, bank_tr.dim, n_axes=task.n_axes, **cfg.head_cfg).to(cfg.device)
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr)
    bs = cfg.batch_size or default_batch_size(frames)

    with cdir.open_log("w") as log_f:
        for n in notes:
            log_f.write(json.dumps({"note": n}) + "\n")
        fit = _epochs(cfg, head, opt, loss_fn, bank_tr, bank_dv, z_tr, z_dv, bs, log_f, torch, progress)
        head.load_state_dict(fit.best_state)
        # predictions and metrics for every evaluation set (dev first), on the task's scale
        tables = []
        for ls in [dev, *evals]:
            table, lines = score_set(cdir, ls, store, cfg, task, head, mu, sd, cfg.device, notes, dropped)
            for line in lines:
                log_f.write(json.dumps({"note": line}) + "\n")
            tables.append(table)
    cdir.write_metrics(pl.concat(tables))
    cdir.write_model(ModelRecord(
        head_config=head.config, state_dict={k: v.detach().cpu() for k, v in head.state_dict().items()},
        z_mean=mu.tolist(), z_std=sd.tolist(), axes=list(task.axes),
        encoders=[g.info.identity for g in groups], encoder_keys=[g.info.key for g in groups],
        crop_seconds=cfg.crop_seconds, grid_rate=bank_tr.grid_rate, task=task.name))
    rec = ConfigRecord(config=config_json(cfg), n_train=tr.height, n_dev=dv.height, epochs_run=fit.epochs_run,
                       best_dev_loss=fit.best, t_load=t_load, t_data=fit.t_data, t_step=fit.t_step, notes=notes,
                       head_params=head.n_params(),
                       label_sha256={ls.name: ls.sha256 for ls in [train, dev, *evals]},
                       extra={"dropped_clips": dropped} if dropped else {})
    if dropped:  # accepted by --allow-missing-clips: said on screen, recorded in config.json
        print(f"  {cfg.name}: trained without {sum(map(len, dropped.values()))} missing or damaged clips "
              f"({', '.join(f'{k} {len(v)}' for k, v in dropped.items())}; ids in {cdir.config_path})", file=sys.stderr)
    cdir.write_config(rec)
    if before_done is not None:
        before_done()
    cdir.mark_done()
    return rec.to_json()
