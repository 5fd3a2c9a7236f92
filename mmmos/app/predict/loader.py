"""One entry point for every model folder: :func:`load_predictor` reads ``predictor.json`` once (format,
task, pins checked) and builds the predictor that the task's declared inputs (:attr:`Task.inputs`) call for.

Adding a task with new inputs = one :class:`~.base.BasePredictor` subclass (``from_spec``, ``_score_into``: how a
clip's frames become scores, ``run_header``, the options it refuses) plus one line in :data:`PREDICTORS`; an
input of a new kind beside audio is also a field of :class:`~.inputs.InputItem` / :class:`~.base.ClipResult` and
a line in :data:`.inputs.EXTRA_INPUTS` (its error row; the table gives it a column).
"""
from __future__ import annotations

import os

from mmmos.core.tasks import Task, get_task

from .errors import PredictorError
from .spec import PredictorSpec, load_spec

#: a task's declared inputs -> the module and class of its predictor (imported when first used)
PREDICTORS: dict[tuple[str, ...], tuple[str, str]] = {
    ("audio",): (".predictor", "Predictor"),
    ("audio", "prompt"): (".track1", "Track1Predictor"),
}


def predictor_class(task: Task) -> type:
    """The predictor class for ``task``'s declared inputs; :class:`PredictorError` if none is registered."""
    import importlib

    try:
        module, name = PREDICTORS[tuple(task.inputs)]
    except KeyError:
        raise PredictorError(f"task {task.name}: no predictor takes inputs {' + '.join(task.inputs)} "
                             f"(registered: {', '.join(' + '.join(k) for k in PREDICTORS)})") from None
    return getattr(importlib.import_module(module, __package__), name)


def load_predictor(model_dir: str | os.PathLike, weights: dict[str, str] | None = None, device: str | None = None,
                   *, spec: PredictorSpec | None = None, **options):
    """The predictor of folder ``model_dir`` for its task's inputs (``options``: ``cache``, ``window``, ``hop``,
    ``batch_size``, ``precision``, as :meth:`Predictor.load <.predictor.Predictor.load>` takes them).
    ``spec``: the folder's :func:`~.spec.load_spec` when the caller already read it (the folder is read once)."""
    spec = load_spec(model_dir) if spec is None else spec
    cls = predictor_class(get_task(spec.task))
    return cls.from_spec(spec, model_dir, weights, device, **options)


__all__ = ["PREDICTORS", "load_predictor", "predictor_class"]
