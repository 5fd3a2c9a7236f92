"""Ensemble members: a trained head with its z-score statistics, applied to one clip's windows.

Features are computed by the sweep's own code (``mmmos.cache_store.features.FeatureBank``) over the clip's
frames held in memory, so a window's features are exactly the sweep's crop features (per-encoder mean ->
L2 -> concat; for ``blstm_t`` the crop of the common time grid).  Each member predicts z-scores ->
``z * std + mean`` (training statistics) -> clamped to the task's score range (as the sweep reports them).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PredictorError
from .spec import PredictorSpec


@dataclass(frozen=True)
class EncoderInfoLite:
    """What the feature code reads of an encoder: name, frame rate, dimension."""

    name: str
    frame_rate: float
    dim: int


@dataclass(frozen=True)
class _ClipMeta:
    duration: float


class _MemoryGroup:
    """One clip's frames behind the part of the ``cache_store`` group API that ``FeatureBank`` reads."""

    def __init__(self, info: EncoderInfoLite, frames: np.ndarray, duration: float):
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
    score_range: tuple[float, float] = (0.0, 10.0)
    crop_seconds: float = 10.0

    def window_scores(self, frames: dict[str, np.ndarray], infos: dict[str, EncoderInfoLite], duration: float,
                      starts: np.ndarray, window: float) -> np.ndarray:
        """Scores ``(n_windows, n_axes)`` for windows starting at ``starts`` (one whole-clip window when the
        clip is within ``window``), clamped to the score range when the member was trained so."""
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
        return np.clip(y, *self.score_range) if self.clip_predictions else y


def torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with the file named in any error."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PredictorError(f"{path}: file not found") from None
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise PredictorError(f"{path}: cannot load safely ({type(e).__name__}: {e})") from e


def load_members(spec: PredictorSpec, model_dir: str | os.PathLike, score_range: tuple[float, float]) -> list[Member]:
    """Build every member's head from its config and load its weights (strict)."""
    from mmmos.heads import rebuild

    out = []
    for m in spec.members:
        where = Path(model_dir) / m.file
        sd = torch_load(where)
        try:
            head = rebuild(m.head_config, sd)
        except RuntimeError as e:
            raise PredictorError(f"{where}: weights do not fit the head {m.head_config}: {e}") from e
        out.append(Member(m.name, head, np.asarray(m.z_mean, np.float64), np.asarray(m.z_std, np.float64),
                          list(m.encoder_keys), m.grid_rate, m.clip_predictions, score_range, m.crop_seconds))
    return out


__all__ = ["EncoderInfoLite", "Member", "load_members", "torch_load"]
