"""The frozen encoders a predictor needs: weights lookup, identity checks, frames from a waveform.

Only the encoders the members need are loaded.  A weights file whose sha256 differs from the model's
record is refused (:class:`WeightsMismatchError`, naming the encoder and both hashes); other identity
differences (config, code version, rates, dim) are refused too, except the compute precision, which changes
frames only by rounding: each encoder computes in the precision ``--precision`` resolves to for it
(:func:`mmmos.extract.precision.resolve_precision`; auto: bf16 on CUDA where the GPU has it, else fp16;
bf16 on a CPU with native bf16 for the encoders where it pays; else fp32).  The set holds one encoder per identity key and one precision
per encoder, since weights cast to bf16 cannot compute fp32 again.  Weights are looked up in order: the ``weights``
argument (``--weights NAME=PATH``), the predictor's default weights, the file recorded at extraction time
if it still exists.  Built-in weight-free encoders (``logmel``) need none.  Frames are rounded to the
dtype the training cache stored (fp16 by default), so a clip's features are bit-for-bit those the sweep read.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .errors import MissingWeightsError, PredictorError, WeightsMismatchError
from .members import EncoderInfoLite


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def identity_differences(got: dict, record: dict) -> list[str]:
    """Identity fields (other than weights path, sha256, compute precision, stored dtype) that differ."""
    diff = []
    for k in ("name", "sample_rate", "frame_rate", "dim", "code_version"):
        if _jsonable(got.get(k)) != _jsonable(record.get(k)):
            diff.append(f"{k}: model {record.get(k)!r}, encoder {got.get(k)!r}")
    ca = {k: v for k, v in _jsonable(got.get("config") or {}).items() if k != "compute_precision"}
    cb = {k: v for k, v in _jsonable(record.get("config") or {}).items() if k != "compute_precision"}
    for k in sorted(set(ca) | set(cb)):
        if ca.get(k) != cb.get(k):
            diff.append(f"config.{k}: model {cb.get(k)!r}, encoder {ca.get(k)!r}")
    return diff


def check_encoder_identity(got: dict, record: dict) -> None:
    """Refuse an encoder whose identity differs from the model's record (sha256 first)."""
    name = record["name"]
    if got.get("sha256") != record.get("sha256"):
        raise WeightsMismatchError(
            f"{name}: weights {got.get('weights')} have sha256 {got.get('sha256')}, but the model was trained on "
            f"{name} frames from weights with sha256 {record.get('sha256')} ({record.get('weights')}). "
            f"Pass that file with --weights {name}=PATH.")
    diff = identity_differences(got, record)
    if diff:
        raise PredictorError(f"{name}: the encoder differs from the one the model was trained with "
                             f"({'; '.join(diff)}); its frames would not match the heads")


class EncoderSet:
    """The encoders of a predictor (identity key -> record), loaded once, on ``device``.

    ``lazy``: an encoder without weights is recorded instead of raised, and raised when a clip needs it
    (with a cache, only clips that are not cached need every encoder)."""

    def __init__(self, records: dict[str, dict], weights: dict[str, str], default_weights: dict[str, str],
                 device: str | None, batch_size: int = 8, lazy: bool = False, precision: str = "auto"):
        from mmmos.extract import select_device
        from mmmos.extract.precision import resolve_precision

        self.records = records
        self.infos = {k: EncoderInfoLite(r["name"], float(r["frame_rate"]), int(r["dim"])) for k, r in records.items()}
        self.key_of = {r["name"]: k for k, r in records.items()}
        self.device = select_device(device)
        self.batch_size = int(batch_size)
        try:
            self.precisions = {k: resolve_precision(precision, str(self.device), r["name"]) for k, r in records.items()}
        except ValueError as e:
            raise PredictorError(str(e)) from None
        unused = sorted(set(weights) - set(self.key_of))
        if unused:
            warnings.warn(f"weights given for {', '.join(unused)}, which this model does not use "
                          f"(it needs: {', '.join(sorted(self.key_of))})", stacklevel=4)
        self.weights = {n: p for n, p in weights.items() if n in self.key_of}
        self.default_weights = dict(default_weights)
        self.loaded: dict[str, Any] = {}
        self._missing: dict[str, str] = {}
        for key in records:
            try:
                self.encoder(key)
            except MissingWeightsError as e:
                if not lazy:
                    raise
                self._missing[key] = str(e)

    def weights_for(self, key: str) -> str | None:
        rec = self.records[key]
        name = rec["name"]
        if name in self.weights:
            return self.weights[name]
        if self.default_weights.get(name):
            return self.default_weights[name]
        if rec.get("weights") and Path(rec["weights"]).exists():
            return rec["weights"]
        if rec.get("weights") is None and rec.get("sha256") is None:
            return None  # built in, weight-free
        raise MissingWeightsError(f"no weights for {name}: pass --weights {name}=PATH (the model was trained with "
                                  f"{rec.get('weights')}, sha256 {rec.get('sha256')})")

    def encoder(self, key: str):
        if key in self.loaded:
            return self.loaded[key]
        if key in self._missing:
            raise MissingWeightsError(self._missing[key])
        from mmmos.extract import load_encoder

        rec = self.records[key]
        path = self.weights_for(key)
        try:
            enc = load_encoder(rec["name"], path, device=self.device)
        except Exception as e:  # noqa: BLE001 - re-raised naming the encoder
            raise PredictorError(f"{rec['name']}: cannot load weights {path}: {e}") from e
        check_encoder_identity(enc.identity(), rec)
        self.loaded[key] = enc
        return enc

    def precision(self, key: str) -> str:
        """The precision encoder ``key`` computes in (fixed for the set's lifetime)."""
        return self.precisions[key]

    def as_stored(self, key: str, frames: np.ndarray) -> np.ndarray:
        """Frames rounded to the training cache's dtype, with the cache writer's checks."""
        name = self.records[key]["name"]
        dtype = self.records[key].get("dtype", "float16")
        if frames.ndim != 2 or frames.shape[0] == 0:
            raise PredictorError(f"{name} gave no frames")
        if not np.isfinite(frames).all():
            raise PredictorError(f"non-finite values in the {name} frames")
        with np.errstate(over="ignore"):
            out = frames.astype(dtype, copy=False)
        if not np.isfinite(out).all():
            raise PredictorError(f"{name} frames overflow {dtype}")
        return out

    def frames(self, wave: np.ndarray, sr: int, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored-dtype frames of a mono float32 waveform for the encoders ``keys``."""
        from mmmos.core.audio import resample
        from mmmos.extract.runner import embed_many

        out, at_rate = {}, {}
        for key in keys:
            enc = self.encoder(key)
            if enc.sample_rate not in at_rate:
                at_rate[enc.sample_rate] = resample(wave, sr, enc.sample_rate)
            w = at_rate[enc.sample_rate]
            name = self.records[key]["name"]
            if len(w) < enc.min_samples():
                raise PredictorError(f"clip of {len(w)} samples at {enc.sample_rate} Hz is shorter than one {name} "
                                     f"frame (needs {enc.min_samples()})")
            errs: list[str] = []
            got = embed_many(enc, {"clip": w}, self.batch_size, self.precision(key),
                             on_error=lambda c, e: errs.append(f"{type(e).__name__}: {e}"))
            if "clip" not in got:
                raise PredictorError(f"{name} failed: {'; '.join(errs) or 'no frames'}")
            out[key] = self.as_stored(key, got["clip"])
        return out


__all__ = ["EncoderSet", "check_encoder_identity", "identity_differences"]
