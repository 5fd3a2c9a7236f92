"""Stage 2: train head x loss configurations from the frame cache (never re-running an encoder).

Module map::

    configs.py    TrainConfig, the paper's 16 configurations and the 7-subset ablation
    labels.py     label sets (with content hashes), set-name checks, choosing usable clips from the cache
    batches.py    feature banks (memoised), batch order, inputs on the device, prediction
    train.py      training one configuration (train_configuration): epochs, early stopping, its files
    evaluate.py   predictions + metrics of a head on a set; adding evaluation sets to finished configurations
    identity.py   the run identity (run.json) and the resume rules
    plan.py       plan_sweep: the input checks and the resume plan every task and executor uses
    recipes.py    what each task trains (configurations, training step, refresh, summary), one line per task
    frames.py     the cache read once per sweep (a memory-mapped pack per encoder, shared by every worker)
    workers.py    parallel training in processes that die with the sweep
    run.py        the sweep (run_sweep) of any recipe: plan, frame pack, --jobs, refresh, summary
    summary.py    Table III (summary.parquet / summary.md), columns from the metric registry
    options.py    option errors, --eval parsing, the result report (shared by every task's command)
    cli.py        `mmmos sweep` options and command

Every file of the run directory is written through :mod:`mmmos.core.rundir` (layout documented there).
Each configuration is runnable alone (``train_configuration``), e.g. as one task of a cluster scheduler,
as long as it gets the same cache and label files.
"""
from __future__ import annotations

from mmmos.core.tasks import DEFAULT_TASK as _DEFAULT_TASK
from mmmos.core.tasks import get_task as _get_task

from .cli import SweepOptionError, add_arguments, configs_from_args, parse_evals, parse_sets, run_cli
from .configs import (PAPER_HEADS, PAPER_LOSSES, PAPER_SETS, RUNTIME_ONLY, TrainConfig, ablation_configs,
                      paper_configs)
from .identity import RunMismatchError, check_run_dir, run_identity
from .labels import LabelSet, LabelSetError, check_set_name, load_labels
from .run import MissingEncoderError, SweepInputError, SweepPlan, plan_sweep, refresh_evals, run_sweep
from .summary import summary_markdown, write_summary
from .train import train_configuration
from .workers import ParentGoneError

# the default task's axes, for callers written before tasks (use mmmos.core.tasks.get_task(...).axes)
AXES = _get_task(_DEFAULT_TASK).axes

__all__ = ["AXES", "LabelSet", "LabelSetError", "MissingEncoderError", "PAPER_HEADS", "PAPER_LOSSES", "PAPER_SETS",
           "ParentGoneError", "RUNTIME_ONLY", "RunMismatchError", "SweepInputError", "SweepOptionError",
           "SweepPlan", "TrainConfig", "ablation_configs", "add_arguments", "check_run_dir", "check_set_name",
           "configs_from_args", "load_labels", "paper_configs", "parse_evals", "plan_sweep", "refresh_evals", "parse_sets", "run_cli",
           "run_identity", "run_sweep", "summary_markdown", "train_configuration", "write_summary"]
