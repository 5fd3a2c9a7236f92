"""Training one Track 1 run: random crops, AdamW on the raw 1-5 scores, early stopping on the dev loss, and
three checkpoints (best dev loss, best system MI SRCC, best (utterance MI + system TA SRCC) / 2), each written
as a run-folder configuration with its model, predictions, metrics and DONE marker."""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from mmmos.core.rundir import ConfigDir, ConfigRecord, ModelRecord
from mmmos.core.tasks import get_task

from .bank import load_bank
from .checkpoints import Checkpoint, score_sets
from .predict import predict_logits, scores_of, selection_figures
from .recipe import CHECKPOINTS, Track1Config, checkpoint_names


@dataclass
class _Best:
    """The best value of one selection criterion so far and the weights that reached it."""

    what: str
    value: float = -math.inf
    epoch: int = 0
    state: dict | None = None
    figures: dict = field(default_factory=dict)

    def offer(self, value: float, epoch: int, head, figures: dict) -> bool:
        if math.isnan(value) or value <= self.value + 1e-12:
            return False
        self.value, self.epoch, self.figures = value, epoch, dict(figures)
        self.state = {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}
        return True


def task_loss(name: str, task):
    """The loss ``name`` on the task's score range (its ``lo``/``hi`` parameters, where it has them)."""
    import functools
    import inspect

    from mmmos.losses import get_loss

    fn = get_loss(name)
    params = inspect.signature(fn).parameters
    rng = {k: v for k, v in (("lo", task.lo), ("hi", task.hi)) if k in params}
    return functools.partial(fn, **rng) if rng else fn


def _criteria(dev_loss: float, fig: dict) -> dict[str, float]:
    """Checkpoint suffix -> value to maximise."""
    return {"": -dev_loss, "@sysmi": fig["sys_mi"], "@combined": (fig["utt_mi"] + fig["sys_ta"]) / 2}


def _train_epoch(head, opt, loss_fn, bank, y, cfg, rng, torch) -> float:
    head.train()
    losses = []
    order = rng.permutation(len(bank))
    for s in range(0, len(order), cfg.batch_size):
        idx = order[s : s + cfg.batch_size]
        loss = loss_fn(head(*bank.batch(bank.random_windows(idx, rng), torch, cfg.device)), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def fit_run(cfg: Track1Config, head, loss_fn, bank_tr, bank_dv, y_tr, y_dv, dv_systems, task, log_f, torch,
            progress: bool) -> tuple[dict[str, _Best], int]:
    """The epoch loop; returns the best weights per checkpoint and the number of epochs run."""
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ytr = torch.from_numpy(y_tr.astype(np.float32)).to(cfg.device)
    bests = {s: _Best(w) for s, w in CHECKPOINTS.items()}
    output = head.output_kind
    bad, epochs_run, bar = 0, 0, None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.epochs, desc=cfg.name, unit="epoch", file=sys.stderr, leave=False, dynamic_ncols=True)
    for epoch in range(1, cfg.epochs + 1):
        t = time.perf_counter()
        train_loss = _train_epoch(head, opt, loss_fn, bank_tr, ytr, cfg, rng, torch)
        logits = predict_logits(head, bank_dv, cfg.eval_batch_size, torch, cfg.device)
        dev_loss = float(loss_fn(torch.from_numpy(logits), torch.from_numpy(y_dv.astype(np.float32))))
        fig = selection_figures(scores_of(logits, output, task.lo, task.hi), y_dv, dv_systems)
        improved = {s: bests[s].offer(v, epoch, head, {"dev_loss": dev_loss, **fig})
                    for s, v in _criteria(dev_loss, fig).items()}
        bad = 0 if improved[""] else bad + 1
        epochs_run = epoch
        log_f.write(json.dumps({"epoch": epoch, "train_loss": train_loss, "dev_loss": dev_loss, **fig,
                                "best": [s or "loss" for s, v in improved.items() if v],
                                "seconds": time.perf_counter() - t}) + "\n")
        log_f.flush()
        if bar is not None:
            bar.set_postfix_str(f"dev {dev_loss:.4f} sysMI {fig['sys_mi']:.3f}")
            bar.update(1)
        if bad >= cfg.patience:
            break
    if bar is not None:
        bar.close()
    for s, b in bests.items():  # a criterion that was never defined (e.g. one dev system) keeps the dev-loss pick
        if b.state is None:
            bests[s] = _Best(b.what, bests[""].value, bests[""].epoch, bests[""].state, bests[""].figures)
    return bests, epochs_run


def train_track1(cfg: Track1Config, store_path: str, train, dev, evals: list, out_dir: str | Path,
                 progress: bool = True, before_done: Callable[[], None] | None = None) -> dict:
    """Train one run; write its three checkpoints next to each other (``out_dir`` is the main one's folder).

    ``before_done`` runs before the DONE markers (a worker uses it to stop when its parent has gone)."""
    import torch

    from mmmos.cache_store.packed import open_frames
    from mmmos.heads import build_head

    task = get_task(cfg.task)
    out_dir = Path(out_dir)
    dirs = [ConfigDir(out_dir.parent / n) for n in checkpoint_names(cfg.name)]
    for d in dirs:  # a retrain invalidates all three before anything is rewritten
        d.clear_done()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    store = open_frames(store_path)  # a path, or the sweep's packed frames (read once per sweep)
    notes: list[str] = []
    t_load = time.perf_counter()
    dropped: dict[str, list[str]] = {}  # set -> clip ids left out under --allow-missing-clips
    tr, bank_tr = load_bank(train, store, cfg, task, True, notes, dropped)
    dv, bank_dv = load_bank(dev, store, cfg, task, True, notes, dropped)
    if tr.height < 2:
        raise RuntimeError(f"{cfg.name}: {tr.height} usable training clips (audio + prompt tokens); need at least 2")
    if dv.height < 1:
        raise RuntimeError(f"{cfg.name}: no usable dev clips (audio + prompt tokens)")
    t_load = time.perf_counter() - t_load
    y_tr = tr.select(task.axes).to_numpy().astype(np.float64)
    y_dv = dv.select(task.axes).to_numpy().astype(np.float64)

    torch.manual_seed(cfg.seed)
    head = build_head(cfg.head, bank_tr.audio_dim, n_axes=task.n_axes,
                      **{"text_dim": bank_tr.text_dim, **cfg.head_cfg}).to(cfg.device)
    loss_fn = task_loss(cfg.loss, task)  # bins and levels span the task's score range
    dirs[0].path.mkdir(parents=True, exist_ok=True)
    t_fit = time.perf_counter()
    with dirs[0].open_log("w") as log_f:
        for n in notes:
            log_f.write(json.dumps({"note": n}) + "\n")
        bests, epochs_run = fit_run(cfg, head, loss_fn, bank_tr, bank_dv, y_tr, y_dv, dv["system"].to_list(), task,
                                    log_f, torch, progress)
    t_fit = time.perf_counter() - t_fit
    ident = [store.group(e).info for e in cfg.encoders]
    done = []
    # the extra checkpoints first, the main one last: its DONE marks the whole run finished
    for cdir, (suffix, best) in reversed(list(zip(dirs, bests.items()))):
        head.load_state_dict(best.state)
        ck = Checkpoint(cfg, cdir, suffix, best.epoch, best.figures)
        model = ModelRecord(head_config=head.config, state_dict={k: v.detach().cpu() for k, v in best.state.items()},
                            z_mean=[0.0] * task.n_axes, z_std=[1.0] * task.n_axes, axes=list(task.axes),
                            encoders=[i.identity for i in ident], encoder_keys=[i.key for i in ident],
                            crop_seconds=cfg.crop_seconds, grid_rate=None,
                            features="track1: raw audio frames + prompt tokens", task=task.name)
        rec = ConfigRecord(config=ck.config_json(), n_train=tr.height, n_dev=dv.height, epochs_run=epochs_run,
                           best_dev_loss=best.figures.get("dev_loss"), t_load=t_load, t_step=t_fit, notes=list(notes),
                           head_params=head.n_params(),
                           extra={**ck.extra(), **({"dropped_clips": dropped} if dropped else {})})
        score_sets(ck, head, model, rec, store, [dev, *evals])
        done.append(cdir)
    if dropped:  # accepted by --allow-missing-clips: said on screen, recorded in config.json
        print(f"  {cfg.name}: trained without {sum(map(len, dropped.values()))} missing or damaged clips "
              f"({', '.join(f'{k} {len(v)}' for k, v in dropped.items())}; ids in {dirs[0].config_path})",
              file=sys.stderr)
    if before_done is not None:
        before_done()
    for cdir in done:  # main last
        cdir.mark_done()
    return dirs[0].read_config().to_json()
