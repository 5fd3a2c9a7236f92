"""Tasks as data: the registry every stage asks what it is predicting.

A :class:`Task` names its axes (in file and API order), the score range, the label columns of each list
format, the answer-file layout, how a clip's system id and domain are derived, and what "composite" means.
Nothing outside this package spells an axis name: heads size their outputs from ``len(task.axes)``, metrics,
scoring, ensembles, reports and predict iterate over ``task.axes``, and clamping uses ``task.score_range``.

Adding a task is one module defining a ``Task`` plus one line in :data:`TASKS`.
"""
from __future__ import annotations

from typing import Callable

from mmmos.core.errors import UserError
from mmmos.core.tasks.base import COMPOSITE, AnswerLayout, Task

#: The default task of every command and of records written before tasks were recorded.
DEFAULT_TASK = "track2"


def _track1() -> Task:
    from mmmos.core.tasks.track1 import TRACK1

    return TRACK1


def _track2() -> Task:
    from mmmos.core.tasks.track2 import TRACK2

    return TRACK2


# name -> loader of the Task (modules import lazily; one line per task)
TASKS: dict[str, Callable[[], Task]] = {
    "track2": _track2,
    "track1": _track1,
}


class UnknownTaskError(UserError):
    pass


def get_task(name: str | Task | None = None) -> Task:
    """The registered task ``name`` (``None``: :data:`DEFAULT_TASK`); a Task passes through."""
    if isinstance(name, Task):
        return name
    name = name or DEFAULT_TASK
    try:
        return TASKS[name]()
    except KeyError:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


__all__ = ["AnswerLayout", "COMPOSITE", "DEFAULT_TASK", "TASKS", "Task", "UnknownTaskError", "get_task"]
