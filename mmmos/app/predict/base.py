"""What every predictor shares: the checked spec and its task, the members, the frame cache and its notes,
a stacked ensemble's meta-model, loading from a folder, and the progress bar.

The audio predictor (:mod:`.predictor`) and the prompted predictor (:mod:`.track1`) subclass it and add only
how one clip is scored; :func:`.loader.load_predictor` picks the subclass from the task's declared inputs.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from mmmos.core.tasks import Task, get_task

from .spec import PredictorSpec, load_spec


class BasePredictor:
    """The shared parts of a predictor (see the module doc).  Subclasses define ``from_spec``."""

    #: whether a stack's meta-model may read the members' bin probabilities (a predictor that computes them)
    saved_bins_ok = False

    def __init__(self, spec: PredictorSpec, members: list, cache=None, model_dir: str | None = None):
        from .stacked import StackSpec

        self.spec = spec
        self.task: Task = get_task(spec.task)
        self.model_dir = model_dir
        self.members = members
        self.cache = cache
        self.cache_notes: list[str] = list(cache.notes) if cache else []
        self.stack = (StackSpec.from_json(spec.stack, self.task.axes, [m.name for m in members], str(model_dir),
                                          saved_bins_ok=self.saved_bins_ok)
                      if spec.stack else None)

    @classmethod
    def from_spec(cls, spec: PredictorSpec, model_dir: str | os.PathLike, weights: dict[str, str] | None = None,
                  device: str | None = None, **options) -> "BasePredictor":
        raise NotImplementedError

    @classmethod
    def load(cls, model_dir: str | os.PathLike, weights: dict[str, str] | None = None, device: str | None = None,
             **options) -> "BasePredictor":
        """Read folder ``model_dir`` (format, task, pins checked) and build this predictor from it; ``options`` as
        the subclass's ``from_spec`` takes them."""
        return cls.from_spec(load_spec(model_dir), model_dir, weights, device, **options)

    @property
    def axes(self) -> tuple[str, ...]:
        return self.task.axes

    @staticmethod
    @contextmanager
    def progress_bar(total: int, on: bool):
        """A tqdm bar on stderr counting clips (None when ``on`` is false)."""
        bar = None
        if on:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="clip", desc="predict", file=sys.stderr, dynamic_ncols=True)
        try:
            yield bar
        finally:
            if bar is not None:
                bar.close()


__all__ = ["BasePredictor"]
