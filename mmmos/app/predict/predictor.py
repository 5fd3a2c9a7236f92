"""The :class:`Predictor`: an exported ensemble scoring audio clip by clip.

Each clip is scored on its own (decode -> mono -> resample to each encoder's rate -> frozen encoder frames
-> head features -> heads), so a file gets the same scores whatever else is in the batch.  Members are
averaged per window; windows are averaged per clip by their share of the audio (:mod:`.windows`).  A stacked
predictor (:mod:`.stacked`) instead applies its meta-model to the members' clip scores (and, for the
per-window rows, to their window scores) and clamps to the task's range.  For a
clip within the window and a single member this equals the member's own ``predictions/<set>.parquet`` row.
Encoders run on ``device`` (auto: cuda -> mps -> cpu); heads run on the CPU.

Bad input (missing, corrupt, non-audio, empty, NaN, shorter than one frame, a row without a path, a file
name that is not UTF-8) gives a :class:`ClipResult` with ``error`` set and no scores; nothing is ever
zero-filled or skipped silently.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from mmmos.core.tasks import get_task

from .base import BasePredictor
from .cache import CacheLookup, FrameCache
from .encoders import EncoderSet
from .errors import PredictorError, error_text
from .inputs import InputItem, as_item
from .members import Member, load_members
from .spec import PredictorSpec
from .windows import plan_windows, resolve_window


@dataclass
class ClipResult:
    """Scores of one clip (``scores`` None and ``error`` set when it could not be scored)."""

    clip_id: str
    path: str | None
    scores: np.ndarray | None = None  # (n_axes,)
    duration: float | None = None
    windows: list[tuple[float, float, float, np.ndarray]] = field(default_factory=list)  # start, end, weight, scores
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


class Predictor(BasePredictor):
    """An exported ensemble ready to score audio.  Build with :func:`.loader.load_predictor` or
    :meth:`Predictor.load <.base.BasePredictor.load>`."""

    def __init__(self, spec: PredictorSpec, members: list[Member], encoders: EncoderSet,
                 cache: FrameCache | None = None, window: float | None = None, hop: float | None = None,
                 model_dir: str | None = None):
        self.window, self.hop = resolve_window([m.crop_seconds for m in members], window, hop)
        super().__init__(spec, members, cache, model_dir)
        self.encoders = encoders
        self.records = encoders.records
        self.infos = encoders.infos

    @classmethod
    def from_spec(cls, spec: PredictorSpec, model_dir: str | os.PathLike, weights: dict[str, str] | None = None,
                  device: str | None = None, *, cache: str | os.PathLike | None = None, window: float | None = None,
                  hop: float | None = None, batch_size: int = 8, precision: str = "auto") -> "Predictor":
        """The predictor of the checked ``spec`` of folder ``model_dir``.  ``weights`` maps encoder names to local
        weights (files or HF folders); ``device`` runs the encoders (None/"auto": cuda -> mps -> cpu).
        ``window``/``hop`` default to the members' training crop.  ``precision`` (auto, fp32, fp16, bf16) is
        resolved per encoder as ``mmmos extract --precision`` does.  With ``cache``, an encoder whose weights are
        unavailable is an error only for clips not in the cache."""
        task = get_task(spec.task)
        members = load_members(spec, model_dir, task.score_range)
        resolve_window([m.crop_seconds for m in members], window, hop)  # bad options fail before encoders load
        records = {k: spec.encoders[k] for m in members for k in m.encoder_keys}
        encoders = EncoderSet(records, dict(weights or {}), spec.weights, device, batch_size, lazy=cache is not None,
                              precision=precision)
        frame_cache = FrameCache(cache, records) if cache is not None else None
        return cls(spec, members, encoders, frame_cache, window, hop, model_dir=str(model_dir))

    # -- scoring ---------------------------------------------------------------------------
    def score_frames(self, frames: dict[str, np.ndarray], duration: float) -> tuple[np.ndarray, list]:
        """Clip scores ``(n_axes,)`` and windows ``[(start, end, weight, scores)]`` from stored-dtype frames."""
        starts, ends, weights = plan_windows(duration, self.window, self.hop)
        per_member = [m.window_scores(frames, self.infos, duration, starts, self.window) for m in self.members]
        if self.stack is None:
            win = np.mean(per_member, axis=0)  # (n_windows, n_axes)
            clip = weights @ win
        else:  # the meta-model combines each member's clip score, as the ensemble combined their predictions
            member_clip = np.stack([weights @ w for w in per_member])  # (n_members, n_axes)
            clip = self.stack.apply(member_clip[:, None, :])[0]
            win = self.stack.apply(np.stack(per_member))
        return clip, [(float(s), float(e), float(w), win[i]) for i, (s, e, w) in enumerate(zip(starts, ends, weights))]

    def predict_wave(self, wave: np.ndarray, sr: int) -> dict:
        """Scores of one clip given as an array: 1-D mono, or 2-D with the shorter axis as channels (averaged).
        Returns ``{<axis>: score, ..., "duration", "windows"}``; raises :class:`PredictorError` for empty or
        non-finite audio or a clip shorter than one frame."""
        x = np.asarray(wave)
        if x.ndim == 2:
            x = x.mean(axis=0 if x.shape[0] < x.shape[1] else 1, dtype=np.float64)
        if x.ndim != 1:
            raise PredictorError(f"predict_wave takes a 1-D (or channels x samples) array, got shape {np.shape(wave)}")
        if x.size == 0:
            raise PredictorError("predict_wave: no samples")
        if not np.isfinite(x).all():
            raise PredictorError(f"predict_wave: {int((~np.isfinite(x)).sum())} non-finite samples (NaN/inf)")
        x = x.astype(np.float32)
        sr = int(sr)
        frames = self.encoders.frames(x, sr, self.records)
        clip, windows = self.score_frames(frames, len(x) / sr)
        return {**{a: float(v) for a, v in zip(self.axes, clip)}, "duration": len(x) / sr,
                "windows": [{"start": s, "end": e, "weight": w, **{a: float(v) for a, v in zip(self.axes, sc)}}
                            for s, e, w, sc in windows]}

    # -- items -----------------------------------------------------------------------------
    def _prepare(self, item: InputItem) -> _Prepared:
        """Cache lookup and, when some frames must be computed, the decoded audio (runs in the prefetch thread)."""
        prep = _Prepared(item, self.cache.lookup(item.clip_id, item.path) if self.cache else CacheLookup())
        if item.error is None and item.path is not None and len(prep.lookup.cached) < len(self.records):
            prep = self._prepare_audio(prep)
        return prep

    def _cached_frames(self, lookup: CacheLookup) -> dict:
        """The frames the cache gives for this item (a damaged cached clip is computed fresh; see
        :meth:`FrameCache.frames_for`)."""
        return self.cache.frames_for(lookup, self.cache_notes) if self.cache is not None else {}

    @staticmethod
    def _prepare_audio(prep: _Prepared) -> _Prepared:
        from mmmos.core.audio import load_audio

        try:
            prep.audio = load_audio(prep.item.path)
        except Exception as e:  # noqa: BLE001 - reported on the clip's row
            prep.audio_error = e
        return prep

    def _predict_one(self, prep: _Prepared) -> ClipResult:
        item, lookup = prep.item, prep.lookup
        res = ClipResult(clip_id=item.clip_id, path=item.path, cache=lookup if self.cache else None)
        try:
            if item.error is not None:
                raise PredictorError(item.error)
            frames = self._cached_frames(lookup)
            duration = self.cache.duration(*next(iter(lookup.cached.items()))) if frames else None
            todo = [k for k in self.records if k not in frames]
            if todo:
                if item.path is None:
                    raise PredictorError("the manifest row has no audio path (and the clip is not in the cache)")
                if prep.audio is None and prep.audio_error is None:  # a cached clip turned out damaged
                    prep = self._prepare_audio(prep)
                if prep.audio_error is not None:
                    raise prep.audio_error
                wave, sr = prep.audio
                duration = len(wave) / sr
                frames.update(self.encoders.frames(wave, sr, todo))
            res.source = "cache" if not todo else ("audio" if len(todo) == len(self.records) else "audio+cache")
            res.duration = duration
            res.scores, res.windows = self.score_frames(frames, duration)
        except Exception as e:  # noqa: BLE001 - one bad clip never stops the run
            res.error = error_text(e)
            res.scores, res.windows = None, []
        return res

    def predict_items(self, items: Sequence[InputItem | tuple[str, str | None]],
                      progress: bool = False) -> Iterator[ClipResult]:
        """Score items (``InputItem`` or ``(clip_id, path)``) one by one, in order; the next item's cache
        lookup and audio decoding run in a background thread while the current one is scored."""
        items = [as_item(i) for i in items]
        with self.progress_bar(len(items), progress) as bar, ThreadPoolExecutor(max_workers=1) as pool:
            fut = pool.submit(self._prepare, items[0]) if items else None
            for i in range(len(items)):
                cur = fut
                fut = pool.submit(self._prepare, items[i + 1]) if i + 1 < len(items) else None
                yield self._predict_one(cur.result())
                if bar is not None:
                    bar.update(1)

    def predict_files(self, paths: Sequence[str | os.PathLike], clip_ids: Sequence[str] | None = None,
                      per_window: bool = False, progress: bool = False):
        """A polars table (see :func:`.tables.results_table`) for audio files; clip ids default to the paths."""
        from .tables import results_table

        paths = [str(p) for p in paths]
        ids = [str(c) for c in clip_ids] if clip_ids is not None else paths
        if len(ids) != len(paths):
            raise PredictorError(f"{len(ids)} clip ids for {len(paths)} paths")
        return results_table(list(self.predict_items(list(zip(ids, paths)), progress)), per_window, self.axes)


__all__ = ["ClipResult", "Predictor", "error_text"]
