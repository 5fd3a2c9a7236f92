"""Track 1 prediction: an exported dual-branch ensemble scoring (audio, prompt) pairs.

Each member is a dual-branch head (``mmmos.sweep.track1``) over an audio encoder's raw frames and a text
encoder's prompt tokens (``encoder_keys = [audio, text]``). A clip is scored on its own, exactly as the sweep
predicts dev clips: the whole clip when it is no longer than the member's crop, else consecutive crop-long
windows (the last aligned to the clip's end) whose logits are averaged. So a clip's scores do not depend on
the other inputs, and for one member they equal its ``predictions/<set>.parquet`` row. The ensemble score is
the members' mean (a stacked predictor applies its meta-model to the members' scores); the ensemble
distribution (``--distribution``) is the mean of the distribution members' bin probabilities.

Each distinct prompt is encoded once (tokens rounded to the cache's stored dtype, as the sweep read them).
The text encoder's identity is checked against the record written at extraction time. A clip without a
prompt (or with an empty one) is an error row, never scored.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mmmos.core.tasks import Task

from .base import BasePredictor, ClipResult, threads_text
from .cache import FrameCache
from .encoders import EncoderSet, check_encoder_identity
from .errors import MissingWeightsError, PredictorError
from .inputs import InputItem, expand_inputs
from .members import torch_load
from .spec import PredictorSpec
from .tables import prompted_table

#: the old names of the shared item and result types (one type each for every task)
PromptedItem = InputItem
PromptedResult = ClipResult


@dataclass
class _T1Member:
    name: str
    head: object
    output: str
    audio_key: str
    text_key: str
    crop_seconds: float


def expand_prompted_inputs(inputs: Sequence[str], task: Task, prompt: str | None = None,
                           prompts: str | None = None, data_root: str | None = None) -> list[InputItem]:
    """:func:`.inputs.expand_inputs` for a prompted ``task`` (its old name and signature)."""
    return expand_inputs(inputs, data_root, task=task, prompt=prompt, prompts=prompts)


def _stored(frames: np.ndarray, dtype: str, name: str) -> np.ndarray:
    if frames.ndim != 2 or frames.shape[0] == 0:
        raise PredictorError(f"{name} gave no frames")
    with np.errstate(over="ignore"):
        out = np.asarray(frames).astype(dtype)
    if not np.isfinite(out).all():
        raise PredictorError(f"non-finite values in the {name} frames")
    return out


class Track1Predictor(BasePredictor):
    """An exported Track 1 ensemble (see the module doc). Build with :func:`.loader.load_predictor` or
    :meth:`load <.base.BasePredictor.load>`."""

    saved_bins_ok = True  # it computes each member's distribution, so a stack may read them
    # clips are scored in the windows the sweep used, and no window rows exist
    unused_options = ("window", "hop", "per_window")
    item_noun = "pairs"

    def __init__(self, spec: PredictorSpec, members: list[_T1Member], audio: EncoderSet, text: dict,
                 model_dir: str | None = None, cache: FrameCache | None = None, weights: dict | None = None):
        super().__init__(spec, members, audio, cache, model_dir)
        self.text = text
        self._weights = dict(weights or {})
        # prompt tokens cached by the same text encoder identity: read by prompt key, encoded only when absent
        self._text_groups = {k: g for k in {m.text_key for m in members}
                             if cache is not None and (g := cache.group(k)) is not None}
        self._tokens: dict[tuple[str, str], np.ndarray] = {}

    @classmethod
    def from_spec(cls, spec: PredictorSpec, model_dir: str | os.PathLike, weights: dict[str, str] | None = None,
                  device: str | None = None, *, cache: str | os.PathLike | None = None, window: float | None = None,
                  hop: float | None = None, batch_size: int = 8, precision: str = "auto") -> "Track1Predictor":
        """The predictor of an already read and checked ``spec`` of folder ``model_dir`` (see :meth:`load`);
        ``window``/``hop`` must be None (clips are scored in the windows the sweep used)."""
        from mmmos.heads import rebuild

        if window is not None or hop is not None:
            raise PredictorError(cls.unused_option_error("window" if window is not None else "hop", str(model_dir)))
        members = []
        for m in spec.members:
            if len(m.encoder_keys) != 2:
                raise PredictorError(f"member {m.name}: a Track 1 member needs [audio, text] encoders, "
                                     f"got {m.encoder_keys}")
            try:
                head = rebuild(m.head_config, torch_load(Path(model_dir) / m.file))
            except RuntimeError as e:
                raise PredictorError(f"{Path(model_dir) / m.file}: weights do not fit the head: {e}") from e
            members.append(_T1Member(m.name, head, head.output_kind, m.encoder_keys[0], m.encoder_keys[1],
                                     m.crop_seconds))
        audio_keys = {m.audio_key for m in members}
        audio_records = {k: spec.encoders[k] for k in audio_keys}
        audio = EncoderSet(audio_records, dict(weights or {}), spec.weights, device, batch_size,
                           lazy=cache is not None, precision=precision)
        frame_cache = FrameCache(cache, audio_records) if cache is not None else None
        text = {} if cache is not None else {  # with a cache: loaded when a prompt is not cached
            k: _load_text_encoder(spec.encoders[k], dict(weights or {}), spec.weights, audio.device)
            for k in {m.text_key for m in members}}
        return cls(spec, members, audio, text, model_dir=str(model_dir), cache=frame_cache, weights=weights)

    @classmethod
    def unused_option_error(cls, option: str, model: str) -> str:
        return (f"--{option.replace('_', '-')} does not apply to a Track 1 model (its clips are scored in the "
                f"windows the sweep used: whole, or crop-long windows averaged)")

    @property
    def audio(self) -> EncoderSet:
        """The audio encoders (:attr:`encoders`, the name this predictor gave them first)."""
        return self.encoders

    def run_header(self, n_items: int, threads: int) -> str:
        return (f"Track 1 model of {len(self.members)} members; {n_items} (audio, prompt) pairs; "
                f"{threads_text(threads)}")

    # -- pieces ----------------------------------------------------------------------------
    def tokens(self, key: str, prompt: str) -> np.ndarray:
        """The prompt's token frames from text encoder ``key`` (encoded once per distinct prompt)."""
        if (key, prompt) not in self._tokens:
            rec = self.spec.encoders[key]
            frames = self._cached_tokens(key, prompt)
            if frames is None:
                if key not in self.text:
                    self.text[key] = _load_text_encoder(rec, self._weights, self.spec.weights, self.encoders.device)
                frames = np.asarray(self.text[key].encode_report([prompt]).frames[0])
            self._tokens[(key, prompt)] = _stored(frames, rec.get("dtype", "float16"), rec["name"])
        return self._tokens[(key, prompt)]

    def _cached_tokens(self, key: str, prompt: str) -> np.ndarray | None:
        """The prompt's tokens from the cache (same text encoder identity), or None; a damaged entry is noted
        and encoded fresh."""
        from mmmos.cache_store import DamagedClipError
        from mmmos.core.prompts import prompt_key

        g = self._text_groups.get(key)
        pk = prompt_key(prompt)
        if g is None or pk not in g:
            return None
        try:
            return np.asarray(g.read(pk))
        except DamagedClipError as e:
            self.cache_notes.append(f"{e}; prompt encoded fresh instead")
            return None

    def score_frames(self, frames: dict[str, np.ndarray], prompt: str) -> tuple[np.ndarray, np.ndarray | None, int]:
        """(scores, distribution or None, windows of the first member) from stored-dtype audio frames."""
        import torch

        from mmmos.cache_store.windows import Track1Bank
        from mmmos.heads import predict_logits
        from mmmos.losses.distribution import distributions, scores_of

        scores, dists, per_member, n_win = [], [], [], 0
        for m in self.members:
            info = self.infos[m.audio_key]
            bank = Track1Bank.from_arrays(frames[m.audio_key], self.tokens(m.text_key, prompt), info.frame_rate,
                                          m.crop_seconds)
            logits = predict_logits(m.head, bank, 16, torch)
            n_win = n_win or len(bank.eval_windows(0))
            scores.append(scores_of(logits, m.output, self.task.lo, self.task.hi)[0])
            d = distributions(logits)[0] if m.output == "distribution" else None
            per_member.append(None if d is None else d[None])
            if d is not None:
                dists.append(d)
        member_scores = np.stack(scores)
        clip = (member_scores.mean(axis=0) if self.stack is None
                else self.stack.apply(member_scores[:, None, :], per_member)[0])
        return clip, (np.mean(dists, axis=0) if dists else None), n_win

    def _score_into(self, res: ClipResult, frames: dict) -> None:
        res.scores, res.dists, res.n_windows = self.score_frames(frames, str(res.prompt))

    def predict_pairs(self, pairs: Sequence[tuple[str | os.PathLike, str | None]], clip_ids=None,
                      distribution: bool = False):
        """A polars table (:func:`.tables.results_table`) for ``(audio path, prompt)`` pairs; ids default to the
        paths."""
        ids = [str(c) for c in clip_ids] if clip_ids is not None else [str(p) for p, _ in pairs]
        items = [InputItem(c, str(p), t) for c, (p, t) in zip(ids, pairs)]
        return self.table(list(self.predict_items(items)), distribution=distribution)


def _load_text_encoder(rec: dict, weights: dict, defaults: dict, device):
    """The text encoder of record ``rec`` (weights as for audio encoders), identity checked."""
    from mmmos.extract import load_encoder
    from mmmos.extract.text import text_identity

    name = rec["name"]
    path = weights.get(name) or defaults.get(name) or (rec.get("weights") if rec.get("weights") and
                                                        Path(rec["weights"]).exists() else None)
    if path is None and (rec.get("weights") is not None or rec.get("sha256") is not None):
        raise MissingWeightsError(f"no weights for {name}: pass --weights {name}=PATH (the model was trained with "
                                  f"{rec.get('weights')}, sha256 {rec.get('sha256')})")
    try:
        enc = load_encoder(name, path, device=device)
    except Exception as e:  # noqa: BLE001 - re-raised naming the encoder
        raise PredictorError(f"{name}: cannot load weights {path}: {e}") from e
    check_encoder_identity(text_identity(enc), rec)
    return enc


# prompted_table stays importable from here (its old home)
__all__ = ["PromptedItem", "PromptedResult", "Track1Predictor", "expand_prompted_inputs", "prompted_table"]
