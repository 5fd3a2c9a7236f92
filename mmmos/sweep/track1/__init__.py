"""Track 1 (MusicEval, SPEC section 9) training: the dual-branch head on audio frames + prompt tokens.

Module map::

    recipe.py       Track1Config, the 8-run recipe, checkpoint names (<run>, <run>@sysmi, <run>@combined)
    bank.py         which clips are usable; their bank (mmmos.cache_store.windows: crops / eval windows, padded
                    batches with masks, shared with prediction; re-exported here)
    predict.py      prediction tables with the 20-bin columns, dev selection figures (logits per clip:
                    mmmos.heads.predict_logits; scores: mmmos.losses.distribution.scores_of; re-exported here)
    trainer.py      one run: epochs, early stopping, the three checkpoints (train_track1)
    checkpoints.py  a checkpoint's files; predicting new evaluation sets with a saved checkpoint
    run.py          the sweep (run_track1_sweep): plan/resume shared with Track 2, --jobs, summary
    summary.py      per-checkpoint summary table
    cli.py          the configurations `mmmos sweep --task track1` options select (track1_configs_from_args)
"""
from __future__ import annotations

from .recipe import (CHECKPOINTS, DEFAULT_AUDIO_ENCODER, DEFAULT_TEXT_ENCODER, SEEDS, Track1Config, checkpoint_names,
                     recipe_configs)

__all__ = ["CHECKPOINTS", "DEFAULT_AUDIO_ENCODER", "DEFAULT_TEXT_ENCODER", "SEEDS", "Track1Config",
           "checkpoint_names", "recipe_configs", "run_track1_sweep", "train_track1"]


def __getattr__(name):  # the trainer imports numpy/torch lazily: `mmmos sweep --help` stays fast
    if name == "run_track1_sweep":
        from .run import run_track1_sweep

        return run_track1_sweep
    if name == "train_track1":
        from .trainer import train_track1

        return train_track1
    raise AttributeError(name)
