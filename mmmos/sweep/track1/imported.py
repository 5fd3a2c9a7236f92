"""A public ASTAR-NTU checkpoint as a configuration of a Track 1 run folder (``mmmos import-public``).

The head weights are imported strictly (:mod:`.public`); the configuration folder then looks like a trained
checkpoint's: ``model.pt`` (a ``ModelRecord`` with the cache identities of the audio and text encoders it reads),
``config.json`` (the :class:`Track1Config` it equals, and where the weights came from) and, for each label set
given, ``predictions/<set>.parquet`` + ``metrics.parquet`` scored from the cache exactly as the sweep scores its
own checkpoints. So ``mmmos ensemble``/``report`` take it as a member and ``export_predictor`` exports it for
``mmmos predict``.
"""
from __future__ import annotations

import os
from pathlib import Path

from mmmos.core.rundir import ConfigDir, ConfigRecord, ModelRecord, RunDir, RunRecord
from mmmos.core.tasks import get_task

from .public import PublicLayoutError, get_variant, import_public, unwrap
from .recipe import TASK, Track1Config

FEATURES = "track1: raw audio frames + prompt tokens"  # what the trainer records


def load_public_file(path: str | os.PathLike) -> dict:
    """The state dict saved in ``path`` (``torch.load`` with ``weights_only``: tensors only, nothing executed)."""
    import torch

    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PublicLayoutError(f"{path}: file not found") from None
    except Exception as e:  # noqa: BLE001 - a damaged/foreign file is a user error
        raise PublicLayoutError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None
    return unwrap(obj, str(path))


def _check_dims(head, audio, text, where: str) -> None:
    cfg = head.config
    if cfg["in_dim"] != audio.dim or cfg["text_dim"] != text.dim:
        raise PublicLayoutError(f"{where}: the head reads {cfg['in_dim']}-d audio and {cfg['text_dim']}-d text, but "
                                f"the cache's {audio.name} frames are {audio.dim}-d and {text.name} tokens "
                                f"{text.dim}-d")


def _run_record(run: RunDir, store_path: str, audio, text) -> None:
    """A run folder that does not exist yet gets a Track 1 run record; an existing one must be Track 1."""
    rec = run.read_run()
    if rec is None:
        run.write_run(RunRecord(store=str(Path(store_path).resolve()), encoders={audio.name: audio.key,
                                text.name: text.key}, labels={}, task=TASK))
    elif rec.task != TASK:
        raise PublicLayoutError(f"{run.path} is a {rec.task} run; import a Track 1 checkpoint into a Track 1 run")


def import_checkpoint(path: str | os.PathLike, variant: str, store_path: str, run_dir: str | os.PathLike,
                      name: str, audio_encoder: str = "muq", text_encoder: str = "roberta", sets: list | None = None,
                      n_heads: int = 4, crop_seconds: float = 30.0, force: bool = False) -> ConfigDir:
    """Import public checkpoint ``path`` as configuration ``name`` of run ``run_dir``; score ``sets`` (label sets
    of :func:`mmmos.sweep.labels.load_labels`) from the cache. Returns the configuration folder."""
    from mmmos.cache_store import open_store
    from mmmos.core.sources import file_sha256

    from .checkpoints import Checkpoint, score_sets

    v = get_variant(variant)
    head = import_public(load_public_file(path), v, n_heads=n_heads, where=str(path))
    store = open_store(store_path)
    audio, text = (store.group(e).info for e in (audio_encoder, text_encoder))
    _check_dims(head, audio, text, str(path))
    run = RunDir(run_dir)
    cdir = run.config(name)
    if cdir.is_done() and not force:
        raise PublicLayoutError(f"{cdir.path} already holds a finished configuration; pass --force to replace it")
    _run_record(run, store_path, audio, text)
    cdir.clear_done()
    task = get_task(TASK)
    head_cfg = {k: val for k, val in head.config.items() if k not in ("name", "in_dim", "n_axes")}
    cfg = Track1Config(name=name, encoders=[audio_encoder, text_encoder], loss=v.loss, head_cfg=head_cfg,
                       crop_seconds=crop_seconds)
    model = ModelRecord(head_config=head.config, state_dict={k: t.detach().cpu() for k, t in head.state_dict().items()},
                        z_mean=[0.0] * task.n_axes, z_std=[1.0] * task.n_axes, axes=list(task.axes),
                        encoders=[audio.identity, text.identity], encoder_keys=[audio.key, text.key],
                        crop_seconds=crop_seconds, grid_rate=None, features=FEATURES, task=task.name)
    ck = Checkpoint(cfg, cdir, "", 0, {})
    extra = {**ck.extra(), "selects": "imported public checkpoint",
             "imported": {"file": str(Path(path).resolve()), "sha256": file_sha256(Path(path)),
                          "public_class": v.public_class, "variant": v.name}}
    rec = ConfigRecord(config=ck.config_json(), head_params=head.n_params(), extra=extra,
                       notes=[f"imported from {path} ({v.public_class}); not trained here"])
    if sets:
        score_sets(ck, head, model, rec, store, list(sets))
    else:
        cdir.write_model(model)
        cdir.write_config(rec)
    cdir.mark_done()
    return cdir


__all__ = ["import_checkpoint", "load_public_file"]
