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
from typing import Iterator, Sequence

import numpy as np

from mmmos.core.tasks import Task

from .base import BasePredictor
from .cache import CacheLookup, FrameCache
from .encoders import EncoderSet, check_encoder_identity
from .errors import MissingWeightsError, PredictorError, error_text
from .inputs import expand_inputs
from .members import torch_load
from .spec import PredictorSpec


@dataclass(frozen=True)
class PromptedItem:
    """One (audio, prompt) pair to score (``error`` set: it cannot be)."""

    clip_id: str
    path: str | None
    prompt: str | None
    error: str | None = None


@dataclass
class PromptedResult:
    """Scores (``(n_axes,)``) and, for distribution members, bin probabilities ``(n_axes, K)`` of one pair."""

    clip_id: str
    path: str | None
    prompt: str | None
    scores: np.ndarray | None = None
    dists: np.ndarray | None = None
    duration: float | None = None
    n_windows: int | None = None
    error: str | None = None
    source: str | None = None  # "audio", "cache" or "audio+cache"
    cache: CacheLookup | None = None  # what the cache gave (with --cache)


@dataclass
class _T1Member:
    name: str
    head: object
    output: str
    audio_key: str
    text_key: str
    crop_seconds: float


def expand_prompted_inputs(inputs: Sequence[str], task: Task, prompt: str | None = None,
                           prompts: str | None = None, data_root: str | None = None) -> list[PromptedItem]:
    """(audio, prompt) items: manifests (MusicEval lists + prompt tables, CSV ``path,prompt``, ...) give their
    rows' prompts (``prompt`` fills rows without one); audio files and folders get ``prompt``."""
    from mmmos.core.manifests import ManifestError, load_manifest

    from .inputs import MANIFEST_SUFFIXES

    out: list[PromptedItem] = []
    for inp in inputs:
        p = Path(inp)
        is_list = p.is_file() and (p.suffix.lower() in MANIFEST_SUFFIXES or p.suffix.lower() == ".txt")
        if not is_list:
            out += [PromptedItem(it.clip_id, it.path, prompt, it.error) for it in expand_inputs([inp], data_root)]
            continue
        try:
            df = load_manifest(p, data_root=data_root, task=task, check_labels=False, problems=[], prompts=prompts,
                               prompt=prompt)
        except ManifestError as e:
            raise PredictorError(str(e)) from e
        texts = df["prompt"].to_list() if "prompt" in df.columns else [prompt] * df.height
        out += [PromptedItem(str(c), str(q) if q else None, t) for c, q, t in
                zip(df["clip_id"].to_list(), df["path"].to_list(), texts)]
    return out


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

    def __init__(self, spec: PredictorSpec, members: list[_T1Member], audio: EncoderSet, text: dict,
                 model_dir: str | None = None, cache: FrameCache | None = None, weights: dict | None = None):
        super().__init__(spec, members, cache, model_dir)
        self.audio, self.text = audio, text
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
            raise PredictorError(f"--{'window' if window is not None else 'hop'} does not apply to a Track 1 model "
                                 f"(its clips are scored in the windows the sweep used: whole, or crop-long windows "
                                 f"averaged)")
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

    # -- pieces ----------------------------------------------------------------------------
    def tokens(self, key: str, prompt: str) -> np.ndarray:
        """The prompt's token frames from text encoder ``key`` (encoded once per distinct prompt)."""
        if (key, prompt) not in self._tokens:
            rec = self.spec.encoders[key]
            frames = self._cached_tokens(key, prompt)
            if frames is None:
                if key not in self.text:
                    self.text[key] = _load_text_encoder(rec, self._weights, self.spec.weights, self.audio.device)
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
            info = self.audio.infos[m.audio_key]
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

    def _one(self, item: PromptedItem) -> PromptedResult:
        from mmmos.core.audio import load_audio

        lookup = self.cache.lookup(item.clip_id, item.path) if self.cache and item.error is None else CacheLookup()
        res = PromptedResult(item.clip_id, item.path, item.prompt, cache=lookup if self.cache else None)
        try:
            if item.error is not None:
                raise PredictorError(item.error)
            if item.prompt is None or not str(item.prompt).strip():
                raise PredictorError("no prompt for this clip (give --prompt TEXT, a prompt column or the prompt "
                                     "tables)")
            frames = self.cache.frames_for(lookup, self.cache_notes) if self.cache else {}
            todo = [k for k in self.audio.records if k not in frames]
            if frames:
                res.duration = self.cache.duration(*next(iter(lookup.cached.items())))
            if todo:
                if item.path is None:
                    raise PredictorError("the manifest row has no audio path (and the clip is not in the cache)")
                wave, sr = load_audio(item.path)
                res.duration = len(wave) / sr
                frames.update(self.audio.frames(wave, sr, todo))
            res.source = "cache" if not todo else ("audio" if len(todo) == len(self.audio.records) else "audio+cache")
            res.scores, res.dists, res.n_windows = self.score_frames(frames, str(item.prompt))
        except Exception as e:  # noqa: BLE001 - one bad pair never stops the run
            res.error, res.scores, res.dists = error_text(e), None, None
        return res

    def predict_items(self, items: Sequence[PromptedItem], progress: bool = False) -> Iterator[PromptedResult]:
        """Score the pairs one by one, in order."""
        with self.progress_bar(len(items), progress) as bar:
            for it in items:
                yield self._one(it)
                if bar is not None:
                    bar.update(1)

    def predict_pairs(self, pairs: Sequence[tuple[str | os.PathLike, str | None]], clip_ids=None,
                      distribution: bool = False):
        """A polars table (:func:`prompted_table`) for ``(audio path, prompt)`` pairs; ids default to the paths."""
        ids = [str(c) for c in clip_ids] if clip_ids is not None else [str(p) for p, _ in pairs]
        items = [PromptedItem(c, str(p), t) for c, (p, t) in zip(ids, pairs)]
        return prompted_table(list(self.predict_items(items)), self.axes, distribution)


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


def prompted_table(results: Sequence[PromptedResult], axes: Sequence[str], distribution: bool = False):
    """``path, clip_id, prompt, <axes>, [<axis>_p00..], duration, n_windows, error`` (one row per pair)."""
    import polars as pl

    axes = list(axes)
    k = next((r.dists.shape[1] for r in results if r.dists is not None), 0) if distribution else 0
    bins = [f"{a}_p{b:02d}" for a in axes for b in range(k)]
    rows = []
    for r in results:
        sc = r.scores if r.scores is not None else [None] * len(axes)
        row = {"path": r.path, "clip_id": r.clip_id, "prompt": r.prompt,
               **{a: (float(v) if v is not None else None) for a, v in zip(axes, sc)}}
        flat = r.dists.reshape(-1) if r.dists is not None else [None] * len(bins)
        row.update({c: (float(v) if v is not None else None) for c, v in zip(bins, flat)})
        row.update(duration=r.duration, n_windows=r.n_windows if r.error is None else None, error=r.error)
        rows.append(row)
    schema = {"path": pl.Utf8, "clip_id": pl.Utf8, "prompt": pl.Utf8, **{a: pl.Float64 for a in axes},
              **{c: pl.Float64 for c in bins}, "duration": pl.Float64, "n_windows": pl.Int64, "error": pl.Utf8}
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


__all__ = ["PromptedItem", "PromptedResult", "Track1Predictor", "expand_prompted_inputs", "prompted_table"]
