"""What every predictor shares: the checked spec and its task, the members, the audio encoders, the frame cache
and its notes, a stacked ensemble's meta-model, loading from a folder, the progress bar -- and the scoring of
items: one :class:`~.inputs.InputItem` in, one :class:`ClipResult` out, in order, for every task.

Each item is scored on its own: its cached frames (:mod:`.cache`), the audio decoded for the encoders the cache
lacks (the next item's lookup and decoding run in a background thread while the current one is scored), then
the subclass's ``_score_into``.  An item that cannot be scored (bad input, an input its task declares missing, a
failing clip) gives a result with ``error`` set and no scores; nothing is zero-filled or skipped silently.

The audio predictor (:mod:`.predictor`) and the prompted predictor (:mod:`.track1`) subclass it and add only
how one clip's frames are scored; :func:`.loader.load_predictor` picks the subclass from the task's declared
inputs.
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from mmmos.core.tasks import Task, get_task

from .cache import CacheLookup
from .errors import PredictorError, error_text
from .inputs import InputItem, as_item, missing_input
from .spec import PredictorSpec, load_spec


@dataclass
class ClipResult:
    """One item's result for every task (``scores`` None and ``error`` set when it could not be scored).
    ``PromptedResult`` is the same type (its old name)."""

    clip_id: str
    path: str | None
    prompt: str | None = None  # tasks with a prompt input
    scores: np.ndarray | None = None  # (n_axes,)
    dists: np.ndarray | None = None  # (n_axes, K) bin probabilities, predictors with distribution members
    duration: float | None = None
    # the audio predictor's windows: (start, end, weight, scores)
    windows: list[tuple[float, float, float, np.ndarray]] = field(default_factory=list)
    n_windows: int | None = None
    error: str | None = None
    source: str | None = None  # "audio", "cache" or "audio+cache"
    cache: CacheLookup | None = None  # what the cache gave (with --cache)


@dataclass
class _Prepared:
    """An item with its cache lookup and decoded audio (or the decoding error), made in the prefetch thread."""

    item: InputItem
    lookup: CacheLookup
    audio: tuple[np.ndarray, int] | None = None
    audio_error: BaseException | None = None


class BasePredictor:
    """The shared parts of a predictor (see the module doc).  Subclasses define ``from_spec``, ``_score_into``
    and ``run_header``."""

    #: whether a stack's meta-model may read the members' bin probabilities (a predictor that computes them)
    saved_bins_ok = False
    #: ``mmmos predict`` options this predictor has no use for: refused before anything is loaded
    unused_options: tuple[str, ...] = ()
    #: what one item is called in the command's log
    item_noun = "clips"

    def __init__(self, spec: PredictorSpec, members: list, encoders, cache=None, model_dir: str | None = None):
        from .stacked import StackSpec

        self.spec = spec
        self.task: Task = get_task(spec.task)
        self.model_dir = model_dir
        self.members = members
        self.encoders = encoders  # the audio encoders (an EncoderSet)
        self.records = encoders.records
        self.infos = encoders.infos
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

    @classmethod
    def unused_option_error(cls, option: str, model: str) -> str:
        """The one-line refusal of ``--option`` (one of :attr:`unused_options`) for the model folder ``model``."""
        raise NotImplementedError

    def run_header(self, n_items: int, threads: int) -> str:
        """The command's log line before scoring: how this predictor will score ``n_items`` items."""
        raise NotImplementedError

    @property
    def axes(self) -> tuple[str, ...]:
        return self.task.axes

    def table(self, results: Sequence[ClipResult], per_window: bool = False, distribution: bool = False):
        """The output table of ``results`` (:func:`.tables.results_table`): the columns of the task's inputs."""
        from .tables import results_table

        return results_table(results, per_window, self.axes, inputs=self.task.inputs, distribution=distribution)

    # -- scoring items ---------------------------------------------------------------------
    def predict_items(self, items: Sequence[InputItem | tuple], progress: bool = False) -> Iterator[ClipResult]:
        """Score items (``InputItem`` or ``(clip_id, path[, prompt])``) one by one, in order; the next item's cache
        lookup and audio decoding run in a background thread while the current one is scored."""
        items = [as_item(i) for i in items]
        with self.progress_bar(len(items), progress) as bar, ThreadPoolExecutor(max_workers=1) as pool:
            fut = pool.submit(self._prepare, items[0]) if items else None
            for i in range(len(items)):
                cur = fut
                fut = pool.submit(self._prepare, items[i + 1]) if i + 1 < len(items) else None
                yield self._score_item(cur.result())
                if bar is not None:
                    bar.update(1)

    def _score_into(self, res: ClipResult, frames: dict) -> None:
        """Set ``res``'s scores (and windows / distribution) from the clip's stored-dtype audio frames."""
        raise NotImplementedError

    def _prepare(self, item: InputItem) -> _Prepared:
        """Cache lookup and, when some frames must be computed, the decoded audio (runs in the prefetch thread).
        An item already known to be bad is not looked up (it counts in no cache figure)."""
        lookup = self.cache.lookup(item.clip_id, item.path) if self.cache and item.error is None else CacheLookup()
        prep = _Prepared(item, lookup)
        if (item.error is None and item.path is not None and missing_input(item, self.task.inputs) is None
                and len(lookup.cached) < len(self.records)):
            prep = self._decode(prep)
        return prep

    @staticmethod
    def _decode(prep: _Prepared) -> _Prepared:
        from mmmos.core.audio import load_audio

        try:
            prep.audio = load_audio(prep.item.path)
        except Exception as e:  # noqa: BLE001 - reported on the clip's row
            prep.audio_error = e
        return prep

    def _score_item(self, prep: _Prepared) -> ClipResult:
        item, lookup = prep.item, prep.lookup
        res = ClipResult(item.clip_id, item.path, item.prompt, cache=lookup if self.cache else None)
        try:
            problem = item.error or missing_input(item, self.task.inputs)
            if problem is not None:
                raise PredictorError(problem)
            # a cached clip found damaged leaves the lookup and is computed fresh (FrameCache.frames_for)
            frames = self.cache.frames_for(lookup, self.cache_notes) if self.cache is not None else {}
            duration = self.cache.duration(*next(iter(lookup.cached.items()))) if frames else None
            todo = [k for k in self.records if k not in frames]
            if todo:
                if item.path is None:
                    raise PredictorError("the manifest row has no audio path (and the clip is not in the cache)")
                if prep.audio is None and prep.audio_error is None:  # a cached clip turned out damaged
                    prep = self._decode(prep)
                if prep.audio_error is not None:
                    raise prep.audio_error
                wave, sr = prep.audio
                duration = len(wave) / sr
                frames.update(self.encoders.frames(wave, sr, todo))
            # the duration is reported once every frame is at hand (a clip the encoders fail on has none)
            res.source = "cache" if not todo else ("audio" if len(todo) == len(self.records) else "audio+cache")
            res.duration = duration
            self._score_into(res, frames)
        except Exception as e:  # noqa: BLE001 - one bad clip never stops the run
            res.error = error_text(e)
            res.scores, res.dists, res.windows, res.n_windows = None, None, [], None
        return res

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


def threads_text(threads: int) -> str:
    return f"{threads} math thread{'s' if threads != 1 else ''}"


__all__ = ["BasePredictor", "ClipResult", "threads_text"]
