"""A Track 1 checkpoint as a run-folder configuration: predictions and metrics per set, model.pt, config.json,
and predicting further evaluation sets with a saved checkpoint (no retraining)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from mmmos.core.rundir import ConfigDir, ConfigRecord, ModelRecord
from mmmos.core.tasks import get_task

from .recipe import CHECKPOINTS, Track1Config


@dataclass
class Checkpoint:
    """One of a run's three checkpoints: which configuration folder, what it selects, when it was taken."""

    cfg: Track1Config
    cdir: ConfigDir
    suffix: str
    epoch: int
    figures: dict

    def config_json(self) -> dict:
        return json.loads(json.dumps(asdict(self.cfg), default=str))

    def extra(self) -> dict:
        return {"run": self.cfg.name, "checkpoint": self.suffix.lstrip("@") or "loss",
                "selects": CHECKPOINTS[self.suffix], "epoch": self.epoch, "dev_figures": self.figures}


def config_from_json(config: dict) -> Track1Config:
    """A :class:`Track1Config` from config.json's ``config`` (unknown keys ignored)."""
    names = {f.name for f in fields(Track1Config)}
    return Track1Config(**{k: v for k, v in config.items() if k in names})


def _score_one(ck: Checkpoint, head, store, ls, task, notes: list[str]):
    """Predict set ``ls``, write its predictions; returns its metrics table and summary lines."""
    import torch

    from mmmos.core.metrics import evaluate

    from .bank import load_bank
    from .predict import predict_logits, prediction_table

    df, bank = load_bank(ls, store, ck.cfg, task, False, notes)
    logits = predict_logits(head, bank, ck.cfg.eval_batch_size, torch, ck.cfg.device)
    pred = prediction_table(df, logits, head.output_kind, task)
    ck.cdir.write_predictions(ls.name, pred)
    ev = evaluate(pred.select(["clip_id", "system", "domain", *task.axes]), df, set_name=ls.name, task=task)
    return ev.table, ev.summary_lines()


def score_sets(ck: Checkpoint, head, model: ModelRecord, rec: ConfigRecord, store, sets: list,
               replace_metrics: bool = True) -> None:
    """Predict ``sets`` with ``head``; write predictions, metrics (replacing those sets' rows), model and config."""
    import polars as pl

    task = get_task(ck.cfg.task)
    tables, lines = [], []
    for ls in sets:
        table, summary = _score_one(ck, head, store, ls, task, rec.notes)
        tables.append(table)
        lines += summary
        rec.label_sha256[ls.name] = ls.sha256
    names = [ls.name for ls in sets]
    if not replace_metrics and ck.cdir.metrics_path.is_file():
        tables.insert(0, ck.cdir.read_metrics().filter(~pl.col("set").is_in(names)))
    ck.cdir.write_metrics(pl.concat(tables, how="vertical_relaxed"))
    ck.cdir.write_model(model)
    ck.cdir.write_config(rec)
    with ck.cdir.open_log("a") as log_f:
        for line in lines:
            log_f.write(json.dumps({"note": line}) + "\n")


def load_checkpoint_head(cdir: ConfigDir, device: str = "cpu"):
    """The saved head of a checkpoint folder, in eval mode, with its model and config records."""
    from mmmos.heads import rebuild

    model = cdir.read_model()
    head = rebuild(model.head_config, model.state_dict, device)
    return head, model, cdir.read_config()


def add_eval_sets_track1(cdir: ConfigDir, store_path: str, sets: list, device: str = "cpu") -> None:
    """Predict ``sets`` with a finished checkpoint (no training) and record them in its files."""
    from mmmos.cache_store.packed import open_frames

    head, model, rec = load_checkpoint_head(cdir, device)
    cfg = config_from_json(rec.config)
    cfg.device = device
    suffix = "@" + rec.extra["checkpoint"] if rec.extra.get("checkpoint", "loss") != "loss" else ""
    ck = Checkpoint(cfg, cdir, suffix, rec.extra.get("epoch", 0), rec.extra.get("dev_figures", {}))
    score_sets(ck, head, model, rec, open_frames(store_path), sets, replace_metrics=False)
