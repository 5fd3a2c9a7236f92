"""The :class:`Predictor`: an exported ensemble scoring audio clip by clip.

Each clip is scored on its own (decode -> mono -> resample to each encoder's rate -> frozen encoder frames
-> head features -> heads), so a file gets the same scores whatever else is in the batch.  Members are
averaged per window; windows are averaged per clip by their share of the audio (:mod:`.windows`).  A stacked
predictor (:mod:`.stacked`) instead applies its meta-model to the members' clip scores (and, for the
per-window rows, to their window scores) and clamps to the task's range.  For a
clip within the window and a single member this equals the member's own ``predictions/<set>.parquet`` row.
Encoders run on ``device`` (auto: cuda -> mps -> cpu); heads run on the CPU.

Bad input (missing, corrupt, non-audio, empty, NaN, shorter than one frame, a row without a path, a file
name that is not UTF-8) gives a :class:`~.base.ClipResult` with ``error`` set and no scores; nothing is ever
zero-filled or skipped silently.  Items are read, looked up and decoded by :class:`~.base.BasePredictor`.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from mmmos.core.tasks import get_task

from .base import BasePredictor, ClipResult, threads_text
from .cache import FrameCache
from .encoders import EncoderSet
from .errors import PredictorError, error_text
from .members import Member, load_members
from .spec import PredictorSpec
from .windows import plan_windows, resolve_window


class Predictor(BasePredictor):
    """An exported ensemble ready to score audio.  Build with :func:`.loader.load_predictor` or
    :meth:`Predictor.load <.base.BasePredictor.load>`."""

    unused_options = ("prompt", "prompts", "distribution")

    def __init__(self, spec: PredictorSpec, members: list[Member], encoders: EncoderSet,
                 cache: FrameCache | None = None, window: float | None = None, hop: float | None = None,
                 model_dir: str | None = None):
        self.window, self.hop = resolve_window([m.crop_seconds for m in members], window, hop)
        self.window_is_crop = window is None
        super().__init__(spec, members, encoders, cache, model_dir)

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

    @classmethod
    def unused_option_error(cls, option: str, model: str) -> str:
        return (f"--prompt, --prompts and --distribution apply to Track 1 models (audio + prompt); {model} scores "
                f"audio alone")

    def run_header(self, n_items: int, threads: int) -> str:
        return (f"windows of {self.window:g} s, hop {self.hop:g} s"
                + (" (the model's training crop)" if self.window_is_crop else "")
                + f"; {threads_text(threads)}; precision "
                + ", ".join(f"{self.records[k]['name']} {p}" for k, p in self.encoders.precisions.items()))

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

    def _score_into(self, res: ClipResult, frames: dict) -> None:
        res.scores, res.windows = self.score_frames(frames, res.duration)
        res.n_windows = len(res.windows)

    def predict_files(self, paths: Sequence[str | os.PathLike], clip_ids: Sequence[str] | None = None,
                      per_window: bool = False, progress: bool = False):
        """A polars table (see :func:`.tables.results_table`) for audio files; clip ids default to the paths."""
        paths = [str(p) for p in paths]
        ids = [str(c) for c in clip_ids] if clip_ids is not None else paths
        if len(ids) != len(paths):
            raise PredictorError(f"{len(ids)} clip ids for {len(paths)} paths")
        return self.table(list(self.predict_items(list(zip(ids, paths)), progress)), per_window)


# ClipResult and error_text stay importable from here, where they were defined before the result type was shared
__all__ = ["ClipResult", "Predictor", "error_text"]
