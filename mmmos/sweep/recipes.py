"""What each task trains, as a recipe registered under the task's name; the engine (plan, frame pack, worker pool,
thread policy, resume, Ray) is the same for every recipe.

A recipe names, as ``module:function`` strings (imported on use: ``mmmos sweep --help`` stays fast, and this
module imports no task package, so no import circle can pass through it):

* ``configs_from_args(a)``         the configurations the ``mmmos sweep`` options select
* ``train_step(args)``             one configuration from ``(cfg, source, train, dev, evals, out, progress)``
                                   -> ``(name, result, error text)``; the local pool and Ray tasks both run it
* ``refresh(plan, source, evals)`` new evaluation sets predicted with finished configurations
* ``summarise(run, configs)``      the summary table over the configurations

Adding a task: its package (configurations with ``frame_ids``, a trainer, these four functions) and one line in
:data:`RECIPES`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from mmmos.core.errors import UserError


@dataclass(frozen=True)
class Recipe:
    task: str
    configs_from_args: str
    train_step: str
    refresh: str
    summarise: str
    report_what: str = "sweep"
    report_unit: str = ""
    check_lists: bool = True  # refuse empty or unlabelled lists before anything is written

    def fn(self, attr: str) -> Callable:
        mod, name = getattr(self, attr).split(":")
        return getattr(importlib.import_module(mod), name)


RECIPES: dict[str, Recipe] = {
    "track2": Recipe("track2", "mmmos.sweep.cli:configs_from_args", "mmmos.sweep.workers:train_one",
                     "mmmos.sweep.run:refresh_evals", "mmmos.sweep.run:summarise"),
    "track1": Recipe("track1", "mmmos.sweep.track1.cli:track1_configs_from_args",
                     "mmmos.sweep.track1.run:train_one_track1", "mmmos.sweep.track1.run:refresh_checkpoints",
                     "mmmos.sweep.track1.run:summarise", "sweep (track1)", "runs (3 checkpoints each) ", check_lists=False),
}


class UnknownRecipeError(UserError):
    """A task without a registered sweep recipe."""


#: the recipe of a registered task without one of its own: the head x loss configurations on the task's axes
GENERIC = "track2"


def recipe_for(task: str) -> Recipe:
    """The task's recipe; a registered task without its own trains the generic (Track 2) configurations."""
    from mmmos.core.tasks import TASKS

    if task in RECIPES:
        return RECIPES[task]
    if task in TASKS:
        return RECIPES[GENERIC]
    raise UnknownRecipeError(f"no sweep recipe for task {task!r}; known: {', '.join(RECIPES)}")
