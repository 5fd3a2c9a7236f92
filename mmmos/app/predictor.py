"""Exported predictors and ``mmmos predict``: audio files in, PQ/PC/CE/CU (0-10) out.

Export
    ``export_predictor(run_dir, members, out_dir)`` turns trained configurations of a sweep
    run (``<run>/configs/<m>/model.pt``) into a self-contained folder::

        <out>/predictor.json      format + version, axes, the members (head config, z-score
                                  statistics, encoder keys, training crop, grid rate, file),
                                  the identity of every encoder they need (name, config,
                                  weights file + sha256, rates, dim, stored dtype), and
                                  optional default weights paths
        <out>/members/<m>.pt      each member's head state dict (``torch.load(weights_only=True)``)

Prediction (``Predictor``; ``mmmos predict``)
    Each clip is scored on its own (decode -> mono -> resample to each encoder's rate ->
    frozen encoder frames -> head features -> heads), so a file gets the same scores whatever
    else is in the batch.  Frames are rounded to the dtype the training cache stored (fp16 by
    default) before any pooling, so a clip's features are bit-for-bit those the sweep read.

Windows
    A clip no longer than the window (default 10 s) is one window with weight 1, scored from all
    its frames -- exactly the sweep's whole-clip dev/evaluation prediction.  A longer clip is
    cut into windows starting at 0, hop, 2 hop, ... (default hop = window = 10 s) until a window
    reaches the clip's end; the **last window is the short remainder** ``[k hop, duration)``
    (not a full window moved back), so no audio is counted twice when hop = window.  Window
    ``[t0, t1)`` maps to frames ``cache_store.frame_range(t0, window, r, n)`` of each encoder
    (clipped at the clip's end); its features are the sweep's crop features (per-encoder mean ->
    L2 -> concat; for ``blstm_t`` the crop of the common time grid).  Window scores are averaged
    with weights ``(t1 - t0) / sum(t1 - t0)`` -- each window's share of the real audio.

Scores
    Each member predicts z-scores -> ``z * std + mean`` (training statistics) -> clamped to
    0-10 (as the sweep reports them) per window; members are averaged per window; windows are
    averaged per clip as above.  For a clip within the window and a single member this equals
    the member's own ``predictions/<set>.parquet`` row.

Encoders and weights
    Only the encoders the members need are loaded.  A weights file whose sha256 differs from
    the model's record is refused (:class:`WeightsMismatchError`, naming the encoder and both
    hashes); other identity differences (config, code version, rates, dim) are refused too,
    except the compute precision (fp16 on CUDA vs fp32) which changes frames only by rounding.
    Weights are looked up in order: the ``weights`` argument (``--weights NAME=PATH``), the
    predictor's default weights, the file recorded at extraction time if it still exists.
    Built-in weight-free encoders (``logmel``) need none.  With ``cache=STORE``, frames of a clip
    found there (same encoder identity key; matched by source path, else by clip id) are read
    instead of computed, and an encoder without weights is only an error for clips that are not
    cached.  Encoders run on ``device`` (auto: cuda -> mps -> cpu); heads run on the CPU.

Bad input (missing, corrupt, non-audio, empty, NaN, shorter than one frame, a manifest row
without a path) gives a row with the ``error`` column set and no scores; ``mmmos predict``
finishes the run and exits with status 3.  Nothing is ever zero-filled or skipped silently.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from mmmos import AXES

FORMAT = "mmmos-predictor"
VERSION = 1
PREDICTOR_FILE = "predictor.json"
OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")


class PredictorError(RuntimeError):
    """A predictor folder, a model record or an encoder does not fit; the message says which."""


class WeightsMismatchError(PredictorError):
    """Encoder weights whose sha256 differs from the one the model was trained with."""


class MissingWeightsError(PredictorError):
    """No weights were given (or recorded) for an encoder that needs them."""


# =============================================================================================
# export
# =============================================================================================
def _torch_load(path: Path) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PredictorError(f"{path}: file not found") from None
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise PredictorError(f"{path}: cannot load safely ({type(e).__name__}: {e})") from e


def _safe_member_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise PredictorError(f"member name {name!r} cannot be a file name (it is a configuration folder name)")
    return name


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def export_predictor(run_dir: str | os.PathLike, members: list[str], out_dir: str | os.PathLike,
                     weights: dict[str, str] | None = None) -> Path:
    """Write the ensemble ``members`` of sweep run ``run_dir`` as a predictor folder ``out_dir``.

    ``weights`` (encoder name -> path) are recorded as default weights paths.  An existing
    ``out_dir`` is replaced only if it holds a predictor (or is empty).  Returns ``out_dir``."""
    run = Path(run_dir)
    out = Path(out_dir)
    if not members:
        raise PredictorError("export_predictor: no members given")
    if len(set(members)) != len(members):
        raise PredictorError(f"export_predictor: duplicated members in {members}")
    recs, identities, names_by_key = [], {}, {}
    for m in members:
        _safe_member_name(m)
        cdir = run / "configs" / m
        f = cdir / "model.pt"
        if not f.is_file():
            have = sorted(p.name for p in (run / "configs").iterdir() if (p / "model.pt").is_file()) \
                if (run / "configs").is_dir() else []
            raise PredictorError(f"{f}: no trained model for member {m!r} in {run} "
                                 f"(trained: {', '.join(have) or 'none'})")
        rec = _torch_load(f)
        need = ("head_config", "state_dict", "z_mean", "z_std", "encoders", "encoder_keys", "crop_seconds", "grid_rate")
        missing = [k for k in need if k not in rec]
        if missing:
            raise PredictorError(f"{f}: not a sweep model record (missing {', '.join(missing)})")
        if list(rec.get("axes", AXES)) != list(AXES):
            raise PredictorError(f"{f}: axes {rec.get('axes')} are not {list(AXES)}")
        clip = True
        cfg_file = cdir / "config.json"
        if cfg_file.is_file():
            clip = bool(json.loads(cfg_file.read_text()).get("config", {}).get("clip_predictions", True))
        for key, ident in zip(rec["encoder_keys"], rec["encoders"]):
            ident = _jsonable(ident)
            name = ident["name"]
            if names_by_key.setdefault(name, key) != key:
                raise PredictorError(f"members need two different {name!r} encoders ({names_by_key[name]} and {key}, "
                                     f"the latter from {m}); one predictor takes one set of weights per encoder name")
            identities[key] = ident
        recs.append((m, rec, clip))
    if weights:
        unknown = sorted(set(weights) - set(names_by_key))
        if unknown:
            raise PredictorError(f"weights given for {', '.join(unknown)}, which no member uses "
                                 f"(needed: {', '.join(sorted(names_by_key))})")

    import torch

    if out.exists():
        content = {p.name for p in out.iterdir()}
        if content and PREDICTOR_FILE not in content:
            raise PredictorError(f"{out} exists and is not a predictor folder; choose a new --export folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "members").mkdir()
        spec_members = []
        for m, rec, clip in recs:
            torch.save({k: v.detach().cpu().contiguous() for k, v in rec["state_dict"].items()},
                       tmp / "members" / f"{m}.pt")
            spec_members.append({
                "name": m, "file": f"members/{m}.pt", "head_config": _jsonable(rec["head_config"]),
                "z_mean": [float(v) for v in rec["z_mean"]], "z_std": [float(v) for v in rec["z_std"]],
                "encoder_keys": list(rec["encoder_keys"]), "crop_seconds": float(rec["crop_seconds"]),
                "grid_rate": float(rec["grid_rate"]) if rec["grid_rate"] is not None else None,
                "clip_predictions": clip, "features": rec.get("features", "per-encoder mean -> L2 -> concat"),
            })
        spec = {
            "format": FORMAT, "version": VERSION, "axes": list(AXES), "members": spec_members,
            "encoders": identities,
            "weights": {k: str(Path(v).resolve()) for k, v in (weights or {}).items()},
            "source": {"run": str(run.resolve()), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        }
        (tmp / PREDICTOR_FILE).write_text(json.dumps(spec, indent=2))
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_predictor_spec(model_dir: str | os.PathLike) -> dict:
    """``predictor.json`` of a predictor folder, checked for format and version."""
    f = Path(model_dir) / PREDICTOR_FILE
    if not f.is_file():
        raise PredictorError(f"{model_dir}: not a predictor folder (no {PREDICTOR_FILE}); make one with "
                             f"`mmmos ensemble ... --export DIR`")
    try:
        spec = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise PredictorError(f"{f}: invalid JSON ({e})") from e
    if spec.get("format") != FORMAT:
        raise PredictorError(f"{f}: not an mmmos predictor (format {spec.get('format')!r})")
    if spec.get("version") != VERSION:
        raise PredictorError(f"{f}: predictor format version {spec.get('version')} (this mmmos reads {VERSION})")
    if list(spec.get("axes", [])) != list(AXES):
        raise PredictorError(f"{f}: axes {spec.get('axes')} are not {list(AXES)}")
    for m in spec.get("members", []):
        for k in m["encoder_keys"]:
            if k not in spec.get("encoders", {}):
                raise PredictorError(f"{f}: member {m['name']} needs encoder {k}, which has no identity record")
    if not spec.get("members"):
        raise PredictorError(f"{f}: no members")
    return spec


# =============================================================================================
# windows and features
# =============================================================================================
def plan_windows(duration: float, window: float = 10.0, hop: float = 10.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window starts, ends (seconds) and weights for a clip of ``duration`` seconds.

    ``duration <= window``: one window ``[0, duration)``, weight 1.  Otherwise windows start at
    ``k * hop`` until one reaches the end; the last is the remainder ``[k hop, duration)``.
    Weights are each window's length over the sum of lengths."""
    if not window > 0 or not hop > 0 or hop > window + 1e-12:
        raise ValueError(f"window and hop must be positive with hop <= window (got window {window}, hop {hop})")
    if not duration > 0:
        raise ValueError(f"clip duration must be positive, got {duration}")
    if duration <= window:
        return np.zeros(1), np.array([float(duration)]), np.ones(1)
    n = int(math.ceil((duration - window) / hop - 1e-9)) + 1
    starts = np.arange(n, dtype=np.float64) * hop
    ends = np.minimum(starts + window, duration)
    lengths = ends - starts
    return starts, ends, lengths / lengths.sum()


@dataclass(frozen=True)
class _Info:
    name: str
    frame_rate: float
    dim: int


@dataclass(frozen=True)
class _ClipMeta:
    duration: float


class _MemoryGroup:
    """One clip's frames behind the part of the ``cache_store`` group API that
    ``mmmos.features.FeatureBank`` reads, so predictions use the sweep's own feature code."""

    def __init__(self, info: _Info, frames: np.ndarray, duration: float):
        self.info = info
        self.root = None
        self._frames = frames
        self._meta = _ClipMeta(float(duration))

    def read(self, clip_id: str) -> np.ndarray:
        return self._frames

    def clip(self, clip_id: str) -> _ClipMeta:
        return self._meta


@dataclass
class Member:
    """One ensemble member: a head with its z-score statistics and encoder keys (feature order)."""

    name: str
    head: Any
    z_mean: np.ndarray
    z_std: np.ndarray
    encoder_keys: list[str]
    grid_rate: float | None
    clip_predictions: bool = True

    def window_scores(self, frames: dict[str, np.ndarray], infos: dict[str, _Info], duration: float,
                      starts: np.ndarray, window: float) -> np.ndarray:
        """Scores ``(n_windows, 4)`` on 0-10 for windows starting at ``starts`` (one whole-clip
        window when the clip is within ``window``)."""
        import torch

        from mmmos.cache_store.features import FeatureBank

        groups = [_MemoryGroup(infos[k], frames[k], duration) for k in self.encoder_keys]
        bank = FeatureBank(groups, ["clip"], window, self.head.needs_frames, self.grid_rate)
        idx = np.zeros(len(starts), np.int64)
        st = None if duration <= window else np.asarray(starts, np.float64)
        with torch.inference_mode():
            if self.head.needs_frames:
                x, lengths = bank.frame_batch(idx, st)
                z = self.head(torch.from_numpy(x), torch.from_numpy(lengths))
            else:
                z = self.head(torch.from_numpy(bank.pooled(idx, st)), None)
        y = z.float().numpy().astype(np.float64) * self.z_std + self.z_mean
        return np.clip(y, 0.0, 10.0) if self.clip_predictions else y


# =============================================================================================
# the predictor
# =============================================================================================
@dataclass
class ClipResult:
    """Scores of one clip (``scores`` None and ``error`` set when it could not be scored)."""

    clip_id: str
    path: str | None
    scores: np.ndarray | None = None  # (4,)
    duration: float | None = None
    windows: list[tuple[float, float, float, np.ndarray]] = field(default_factory=list)  # start, end, weight, (4,)
    error: str | None = None
    source: str | None = None  # "audio", "cache" or "audio+cache"


def _norm_path(p: str | os.PathLike) -> str:
    return os.path.normcase(os.path.abspath(os.path.normpath(str(p))))


def _same_identity_fields(a: dict, b: dict) -> list[str]:
    """Identity fields (other than weights path, sha256, compute precision, stored dtype) that differ."""
    diff = []
    for k in ("name", "sample_rate", "frame_rate", "dim", "code_version"):
        if _jsonable(a.get(k)) != _jsonable(b.get(k)):
            diff.append(f"{k}: model {b.get(k)!r}, encoder {a.get(k)!r}")
    ca = {k: v for k, v in _jsonable(a.get("config") or {}).items() if k != "compute_precision"}
    cb = {k: v for k, v in _jsonable(b.get("config") or {}).items() if k != "compute_precision"}
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
    diff = _same_identity_fields(got, record)
    if diff:
        raise PredictorError(f"{name}: the encoder differs from the one the model was trained with "
                             f"({'; '.join(diff)}); its frames would not match the heads")


class Predictor:
    """An exported ensemble ready to score audio.  Build with :meth:`Predictor.load`."""

    def __init__(self, spec: dict, members: list[Member], weights: dict[str, str], device: str | None,
                 cache: str | os.PathLike | None = None, window: float = 10.0, hop: float = 10.0,
                 batch_size: int = 8, lazy: bool = False, model_dir: str | None = None):
        plan_windows(window, window, hop)  # validates window/hop
        self.spec = spec
        self.model_dir = model_dir
        self.members = members
        self.window, self.hop = float(window), float(hop)
        self.batch_size = int(batch_size)
        self.records: dict[str, dict] = {k: spec["encoders"][k] for m in members for k in m.encoder_keys}
        self.infos = {k: _Info(r["name"], float(r["frame_rate"]), int(r["dim"])) for k, r in self.records.items()}
        self.key_of = {r["name"]: k for k, r in self.records.items()}
        from mmmos.extract import select_device

        self.device = select_device(device)
        unused = sorted(set(weights) - set(self.key_of))
        if unused:
            warnings.warn(f"weights given for {', '.join(unused)}, which this model does not use "
                          f"(it needs: {', '.join(sorted(self.key_of))})", stacklevel=3)
        self.weights = {n: p for n, p in weights.items() if n in self.key_of}
        self._encoders: dict[str, Any] = {}
        self._encoder_errors: dict[str, str] = {}
        self._cache_groups: dict[str, Any] = {}
        self._cache_paths: dict[str, dict[str, str]] = {}
        self.cache_notes: list[str] = []
        if cache is not None:
            self._open_cache(cache)
        for key in self.records:
            try:
                self._encoder(key)
            except MissingWeightsError as e:
                if not lazy:  # with a cache, only clips that are not cached need this encoder
                    raise
                self._encoder_errors[key] = str(e)

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, model_dir: str | os.PathLike, weights: dict[str, str] | None = None, device: str | None = None,
             *, cache: str | os.PathLike | None = None, window: float = 10.0, hop: float = 10.0,
             batch_size: int = 8) -> "Predictor":
        """Load a predictor folder.  ``weights`` maps encoder names to local weights (files or HF
        folders); ``device`` runs the encoders (None/"auto": cuda -> mps -> cpu).  With ``cache``,
        an encoder whose weights are unavailable is an error only for clips not in the cache."""
        from mmmos.heads import build_head_from_config

        d = Path(model_dir)
        spec = read_predictor_spec(d)
        members = []
        for m in spec["members"]:
            name = _safe_member_name(m["name"])
            sd = _torch_load(d / m.get("file", f"members/{name}.pt"))
            head = build_head_from_config(m["head_config"])
            try:
                head.load_state_dict(sd, strict=True)
            except RuntimeError as e:
                where = d / m.get("file", f"members/{name}.pt")
                raise PredictorError(f"{where}: weights do not fit the head {m['head_config']}: {e}") from e
            head.eval()
            members.append(Member(name, head, np.asarray(m["z_mean"], np.float64), np.asarray(m["z_std"], np.float64),
                                  list(m["encoder_keys"]), m.get("grid_rate"), bool(m.get("clip_predictions", True))))
        return cls(spec, members, dict(weights or {}), device, cache=cache, window=window, hop=hop,
                   batch_size=batch_size, lazy=cache is not None, model_dir=str(d))

    def _weights_for(self, key: str) -> str | None:
        rec = self.records[key]
        name = rec["name"]
        if name in self.weights:
            return self.weights[name]
        default = (self.spec.get("weights") or {}).get(name)
        if default:
            return default
        if rec.get("weights") and Path(rec["weights"]).exists():
            return rec["weights"]
        if rec.get("weights") is None and rec.get("sha256") is None:
            return None  # built in, weight-free
        raise MissingWeightsError(f"no weights for {name}: pass --weights {name}=PATH (the model was trained with "
                                  f"{rec.get('weights')}, sha256 {rec.get('sha256')})")

    def _encoder(self, key: str):
        if key in self._encoders:
            return self._encoders[key]
        if key in self._encoder_errors:
            raise MissingWeightsError(self._encoder_errors[key])
        from mmmos.extract import load_encoder

        rec = self.records[key]
        path = self._weights_for(key)
        try:
            enc = load_encoder(rec["name"], path, device=self.device)
        except Exception as e:  # noqa: BLE001 - re-raised naming the encoder
            raise PredictorError(f"{rec['name']}: cannot load weights {path}: {e}") from e
        check_encoder_identity(enc.identity(), rec)
        self._encoders[key] = enc
        return enc

    def _precision(self, key: str) -> str:
        want = (self.records[key].get("config") or {}).get("compute_precision", "fp32")
        return "fp16" if want == "fp16" and str(self.device).startswith("cuda") else "fp32"

    # -- cache -----------------------------------------------------------------------------
    def _open_cache(self, cache: str | os.PathLike) -> None:
        from mmmos.cache_store import open_store

        store = open_store(cache)
        stored = {i.key for i in store.encoders()}
        for key, rec in self.records.items():
            if key in stored:
                self._cache_groups[key] = store.group(key)
            else:
                other = [k for k in stored if k.rsplit("-", 1)[0] == rec["name"]]
                self.cache_notes.append(f"{cache}: no frames of {key} (the model's {rec['name']} identity"
                                        + (f"; it holds {', '.join(sorted(other))}" if other else "")
                                        + "): computing them from audio")

    def _cached(self, key: str, clip_id: str, path: str | None) -> str | None:
        """The cache's clip id for this clip (by source path, else by clip id), or None."""
        g = self._cache_groups.get(key)
        if g is None:
            return None
        if path is not None:
            if key not in self._cache_paths:
                self._cache_paths[key] = {_norm_path(ci.path): cid for cid, ci in g.index.items() if ci.path}
            hit = self._cache_paths[key].get(_norm_path(path))
            if hit is not None:
                return hit
        return clip_id if clip_id in g else None

    # -- frames ----------------------------------------------------------------------------
    def _as_stored(self, key: str, frames: np.ndarray) -> np.ndarray:
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

    def _frames_from_wave(self, wave: np.ndarray, sr: int, keys: Iterable[str]) -> dict[str, np.ndarray]:
        from mmmos.extract.runner import embed_many
        from mmmos.core.audio import resample

        out, at_rate = {}, {}
        for key in keys:
            enc = self._encoder(key)
            if enc.sample_rate not in at_rate:
                at_rate[enc.sample_rate] = resample(wave, sr, enc.sample_rate)
            w = at_rate[enc.sample_rate]
            name = self.records[key]["name"]
            if len(w) < enc.min_samples():
                raise PredictorError(f"clip of {len(w)} samples at {enc.sample_rate} Hz is shorter than one {name} "
                                     f"frame (needs {enc.min_samples()})")
            errs: list[str] = []
            got = embed_many(enc, {"clip": w}, self.batch_size, self._precision(key),
                             on_error=lambda c, e: errs.append(f"{type(e).__name__}: {e}"))
            if "clip" not in got:
                raise PredictorError(f"{name} failed: {'; '.join(errs) or 'no frames'}")
            out[key] = self._as_stored(key, got["clip"])
        return out

    # -- scoring ---------------------------------------------------------------------------
    def score_frames(self, frames: dict[str, np.ndarray], duration: float) -> tuple[np.ndarray, list]:
        """Clip scores ``(4,)`` and windows ``[(start, end, weight, scores)]`` from stored-dtype frames."""
        starts, ends, weights = plan_windows(duration, self.window, self.hop)
        per_member = [m.window_scores(frames, self.infos, duration, starts, self.window) for m in self.members]
        win = np.mean(per_member, axis=0)  # (n_windows, 4)
        clip = weights @ win
        return clip, [(float(s), float(e), float(w), win[i]) for i, (s, e, w) in enumerate(zip(starts, ends, weights))]

    def predict_wave(self, wave: np.ndarray, sr: int) -> dict:
        """Scores of one clip given as an array: 1-D mono, or 2-D with the shorter axis as channels
        (averaged).  Returns ``{"PQ", "PC", "CE", "CU", "duration", "windows"}``; raises
        :class:`PredictorError` for empty or non-finite audio or a clip shorter than one frame."""
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
        frames = self._frames_from_wave(x, sr, self.records)
        clip, windows = self.score_frames(frames, len(x) / sr)
        return {**{a: float(v) for a, v in zip(AXES, clip)}, "duration": len(x) / sr,
                "windows": [{"start": s, "end": e, "weight": w, **{a: float(v) for a, v in zip(AXES, sc)}}
                            for s, e, w, sc in windows]}

    def _predict_one(self, clip_id: str, path: str | None, decoded) -> ClipResult:
        res = ClipResult(clip_id=clip_id, path=path)
        frames: dict[str, np.ndarray] = {}
        duration = None
        try:
            for key in self.records:
                cid = self._cached(key, clip_id, path)
                if cid is not None:
                    g = self._cache_groups[key]
                    frames[key] = g.read(cid)
                    duration = duration if duration is not None else float(g.clip(cid).duration)
            todo = [k for k in self.records if k not in frames]
            if todo:
                if path is None:
                    raise PredictorError("the manifest row has no audio path (and the clip is not in the cache)")
                wave, sr = decoded()
                duration = len(wave) / sr
                frames.update(self._frames_from_wave(wave, sr, todo))
            res.source = "cache" if not todo else ("audio" if len(todo) == len(self.records) else "audio+cache")
            res.duration = duration
            res.scores, res.windows = self.score_frames(frames, duration)
        except Exception as e:  # noqa: BLE001 - one bad clip never stops the run
            res.error = _error_text(e)
            res.scores, res.windows = None, []
        return res

    def predict_items(self, items: Sequence[tuple[str, str | None]], progress: bool = False) -> Iterator[ClipResult]:
        """Score ``(clip_id, path)`` items one by one, in order; audio of the next item is decoded
        in a background thread while the current one is scored."""
        from mmmos.core.audio import load_audio

        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(items), unit="clip", desc="predict", file=sys.stderr, dynamic_ncols=True)
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                def submit(i):
                    if i >= len(items):
                        return None
                    cid, path = items[i]
                    needs_audio = path is not None and any(self._cached(k, cid, path) is None for k in self.records)
                    return pool.submit(load_audio, path) if needs_audio else None

                fut = submit(0)
                for i, (cid, path) in enumerate(items):
                    cur, fut = fut, submit(i + 1)
                    yield self._predict_one(cid, path, (lambda f=cur, p=path: f.result() if f else load_audio(p)))
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()

    def predict_files(self, paths: Sequence[str | os.PathLike], clip_ids: Sequence[str] | None = None,
                      per_window: bool = False, progress: bool = False):
        """A polars table (see :func:`results_table`) for audio files; clip ids default to the paths."""
        paths = [str(p) for p in paths]
        ids = [str(c) for c in clip_ids] if clip_ids is not None else paths
        if len(ids) != len(paths):
            raise ValueError(f"{len(ids)} clip ids for {len(paths)} paths")
        return results_table(list(self.predict_items(list(zip(ids, paths)), progress)), per_window)


def _error_text(e: BaseException) -> str:
    from mmmos.core.audio import AudioError

    if isinstance(e, (AudioError, PredictorError)):
        return str(e)
    return f"{type(e).__name__}: {e}"


# =============================================================================================
# tables
# =============================================================================================
def results_table(results: Sequence[ClipResult], per_window: bool = False):
    """One row per clip: ``path, clip_id, PQ, PC, CE, CU, duration, n_windows, error``.

    ``per_window`` adds, after each clip's row, one row per window with ``window_start``,
    ``window_end`` (seconds) and ``weight`` set (they are null on clip rows)."""
    import polars as pl

    rows = []
    for r in results:
        base = {"path": r.path, "clip_id": r.clip_id}
        sc = r.scores if r.scores is not None else [None] * len(AXES)
        row = {**base, **{a: (float(v) if v is not None else None) for a, v in zip(AXES, sc)},
               "duration": r.duration, "n_windows": len(r.windows) if r.error is None else None, "error": r.error}
        if per_window:
            row.update(window_start=None, window_end=None, weight=None)
        rows.append(row)
        if per_window:
            for s, e, w, ws in r.windows:
                rows.append({**base, **{a: float(v) for a, v in zip(AXES, ws)}, "duration": r.duration,
                             "n_windows": None, "error": None, "window_start": s, "window_end": e, "weight": w})
    schema = {"path": pl.Utf8, "clip_id": pl.Utf8, **{a: pl.Float64 for a in AXES}, "duration": pl.Float64,
              "n_windows": pl.Int64, "error": pl.Utf8}
    if per_window:
        schema.update(window_start=pl.Float64, window_end=pl.Float64, weight=pl.Float64)
    df = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    order = ["path", "clip_id"] + (["window_start", "window_end", "weight"] if per_window else []) + \
        list(AXES) + ["duration", "n_windows", "error"]
    return df.select(order)


def output_format(path: str | None) -> str:
    """"csv", "jsonl" or "parquet" from an output file name (None: CSV to stdout)."""
    if path is None:
        return "csv"
    fmt = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise PredictorError(f"--out {path}: unknown output format; use a .csv, .jsonl or .parquet file name")
    return fmt


def write_table(df, path: str | None) -> None:
    """Write ``df`` as CSV/JSONL/Parquet by extension; CSV to stdout when ``path`` is None."""
    fmt = output_format(path)
    if path is None:
        sys.stdout.write(df.write_csv())
        sys.stdout.flush()
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        df.write_csv(path)
    elif fmt == "jsonl":
        df.write_ndjson(path)
    else:
        df.write_parquet(path)


# =============================================================================================
# inputs and the command line
# =============================================================================================
def expand_inputs(inputs: Sequence[str], data_root: str | None = None) -> list[tuple[str, str | None]]:
    """``(clip_id, path)`` items from files, folders (recursive) and manifests, in input order.

    A folder gives its audio files (clip id = path relative to the folder); a ``.csv``,
    ``.tsv``, ``.json``, ``.jsonl`` or ``.ndjson`` file is read with ``load_manifest``; anything
    else (a missing path too) is taken as an audio file whose clip id is the path as written,
    so a bad one becomes an error row."""
    from mmmos.core.manifests import ManifestError, load_manifest

    items: list[tuple[str, str | None]] = []
    for inp in inputs:
        p = Path(inp)
        if p.is_dir() or (p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES):
            try:
                df = load_manifest(p, data_root=data_root)
            except ManifestError as e:
                raise PredictorError(str(e)) from e
            ids, paths = df["clip_id"].to_list(), df["path"].to_list()
            items.extend((str(c), (str(q) if q else None)) for c, q in zip(ids, paths))
        else:
            items.append((str(inp), str(inp)))
    return items


def parse_weights(items: Sequence[str] | None) -> dict[str, str]:
    """``NAME=PATH`` items (repeatable or comma-separated), as ``mmmos extract --weights``."""
    from mmmos.extract import parse_weights as parse

    try:
        return parse(items)
    except ValueError as e:
        raise PredictorError(str(e)) from None


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``mmmos predict``."""
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="audio files, folders (searched recursively) or manifests (Track 2 list, CSV with a path "
                        "column, AES JSONL)")
    p.add_argument("--model", required=True, help="predictor folder written by `mmmos ensemble ... --export DIR`")
    p.add_argument("--weights", action="append",
                   help="NAME=PATH local encoder weights, e.g. wavlm=/models/wavlm-base-plus (repeatable or "
                        "comma-separated); each file's sha256 must equal the model's record")
    p.add_argument("--cache", help="a frame cache to read instead of running encoders, for clips it holds with the "
                                   "model's encoder identity (matched by path, else clip id)")
    p.add_argument("--out", help="output file: .csv, .jsonl or .parquet (default: CSV to stdout)")
    p.add_argument("--window", type=float, default=10.0, help="window length in seconds for long audio (default 10)")
    p.add_argument("--hop", type=float, default=10.0,
                   help="window hop in seconds, at most --window (default 10); the last window is the remainder")
    p.add_argument("--per-window", action="store_true",
                   help="add one row per window (window_start, window_end, weight) after each clip's row")
    p.add_argument("--data-root", help="folder that replaces /your_path/ in Track 2 lists and roots relative paths")
    p.add_argument("--device", default="auto", help="encoder device: auto (cuda -> mps -> cpu), cpu, cuda, mps")
    p.add_argument("--batch-size", type=int, default=8, help="equal-shape chunks of one clip per encoder forward")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_predict(args: argparse.Namespace) -> int:
    """``mmmos predict``: 0 when every clip was scored, 3 when some rows carry an error,
    2 for a usage problem (bad model folder, weights that do not match, bad output name)."""
    try:
        output_format(args.out)
        plan_windows(1.0, args.window, args.hop)
        weights = parse_weights(args.weights)
        items = expand_inputs(args.inputs, args.data_root)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred = Predictor.load(args.model, weights, None if args.device == "auto" else args.device,
                                  cache=args.cache, window=args.window, hop=args.hop, batch_size=args.batch_size)
        for w in caught:
            print(f"mmmos predict: warning: {w.message}", file=sys.stderr)
    except (PredictorError, ValueError) as e:
        print(f"mmmos predict: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - e.g. a cache that cannot be opened
        print(f"mmmos predict: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    for note in pred.cache_notes:
        print(f"mmmos predict: {note}", file=sys.stderr)
    t0 = time.perf_counter()
    results = list(pred.predict_items(items, progress=not args.no_progress))
    write_table(results_table(results, args.per_window), args.out)
    bad = [r for r in results if r.error is not None]
    from_cache = sum(r.source == "cache" for r in results)
    print(f"mmmos predict: {len(results) - len(bad)} of {len(results)} clips scored in "
          f"{time.perf_counter() - t0:.1f} s ({from_cache} from the cache)"
          + (f" -> {args.out}" if args.out else ""), file=sys.stderr)
    if bad:
        print(f"mmmos predict: {len(bad)} clips failed (error column):", file=sys.stderr)
        for r in bad[:10]:
            print(f"  {r.clip_id}: {r.error}", file=sys.stderr)
        if len(bad) > 10:
            print(f"  … and {len(bad) - 10} more", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="mmmos predict", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_predict_arguments(ap)
    sys.exit(run_predict(ap.parse_args()))
