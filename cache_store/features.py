"""Features for the heads, computed from cached frames (never from audio).

Pooled features (heads ``mlp``, ``blstm_h``)
    per encoder: mean of the frames inside the crop (valid frames only) ->
    L2-normalise -> concatenate encoders in the configuration's order.
    Clips no longer than the crop always use their whole-clip mean (precomputed);
    longer clips keep per-encoder prefix sums, so any crop mean costs O(dim).

Frame features (head ``blstm_t``)
    all encoders are brought onto one *common time grid* of rate ``g`` (default: the
    slowest encoder's rate, 6.25 Hz for WavLM+MuQ+M2D).  Grid step k covers
    ``[k/g, (k+1)/g)``; an encoder with rate r contributes the mean of its frames
    ``[floor(k r/g), ceil((k+1) r/g))`` (for r = g: exactly frame k).  Each encoder's
    grid frames are L2-normalised, then concatenated per step.  The grid length is
    the shortest span all encoders cover.  Stored once as fp16; a batch converts only
    the crop windows it uses.

A crop is chosen in seconds, ``[t0, t0 + crop)``, and mapped to each encoder's
frames with ``cache_store.frame_range`` so all encoders see the same audio.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mmmos.cache_store import frame_range

EPS = 1e-8


def l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), EPS)


def grid_pool(frames: np.ndarray, rate: float, grid_rate: float, k: int) -> np.ndarray:
    """Mean of an encoder's frames over each of the first ``k`` grid steps, float32 ``(k, dim)``."""
    t = len(frames)
    if math.isclose(rate, grid_rate):
        return frames[:k].astype(np.float32)
    ratio = rate / grid_rate
    starts = np.minimum(np.floor(np.arange(k) * ratio + 1e-9).astype(np.int64), t - 1)
    ends = np.clip(np.ceil((np.arange(k) + 1) * ratio - 1e-9).astype(np.int64), starts + 1, t)
    if np.array_equal(ends[:-1], starts[1:]):  # contiguous steps (integer ratios): one pass, no copy
        sums = np.add.reduceat(frames[: ends[-1]], starts, axis=0, dtype=np.float32)
        return sums / (ends - starts)[:, None].astype(np.float32)
    csum = np.concatenate([np.zeros((1, frames.shape[1]), np.float64), np.cumsum(frames, axis=0, dtype=np.float64)])
    return ((csum[ends] - csum[starts]) / (ends - starts)[:, None]).astype(np.float32)


@dataclass
class EncoderSpec:
    name: str
    frame_rate: float
    dim: int


class FeatureBank:
    """Everything a configuration needs from the cache for one set of clips.

    ``groups`` are ``cache_store`` encoder groups in feature order."""

    def __init__(self, groups, clip_ids: list[str], crop_seconds: float = 10.0, frames: bool = False,
                 grid_rate: float | None = None):
        self.clip_ids = list(clip_ids)
        self.crop = float(crop_seconds)
        self.specs = [EncoderSpec(g.info.name, g.info.frame_rate, g.info.dim) for g in groups]
        self.dim = sum(s.dim for s in self.specs)
        self.durations = np.array([groups[0].clip(c).duration for c in self.clip_ids], np.float64)
        n = len(self.clip_ids)
        self.full = np.zeros((n, self.dim), np.float32)  # normalised whole-clip pooled features
        self.long = np.flatnonzero(self.durations > self.crop)
        self._prefix: dict[int, list[np.ndarray]] = {}
        self._nframes = np.zeros((n, len(groups)), np.int64)
        self.grid_rate = grid_rate or min(s.frame_rate for s in self.specs)
        self.with_frames = frames
        grid_parts: list[np.ndarray] = []
        self.grid_offsets = np.zeros(n + 1, np.int64)
        long_set = set(self.long.tolist())
        for i, cid in enumerate(self.clip_ids):
            per_enc, col = [], 0
            for j, g in enumerate(groups):
                x = g.read(cid)
                self._nframes[i, j] = len(x)
                m = x.mean(axis=0, dtype=np.float32)
                self.full[i, col : col + len(m)] = l2n(m)
                col += len(m)
                if i in long_set:
                    self._prefix.setdefault(i, []).append(
                        np.concatenate([np.zeros((1, x.shape[1]), np.float32), np.cumsum(x, axis=0, dtype=np.float32)]))
                if frames:
                    per_enc.append(x)
            if frames:
                k = min(max(1, math.ceil(len(x) * self.grid_rate / s.frame_rate - 1e-9))
                        for x, s in zip(per_enc, self.specs))
                grid_parts.append(np.concatenate(
                    [l2n(grid_pool(x, s.frame_rate, self.grid_rate, k)) for x, s in zip(per_enc, self.specs)],
                    axis=1).astype(np.float16))
                self.grid_offsets[i + 1] = self.grid_offsets[i] + k
        self.grid = np.concatenate(grid_parts) if frames and grid_parts else None

    def __len__(self) -> int:
        return len(self.clip_ids)

    # -- pooled -----------------------------------------------------------------------
    def pooled(self, idx: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
        """Pooled features ``(B, D)`` for clips ``idx``; ``starts`` (seconds) selects crops,
        ``None`` the whole clip."""
        out = self.full[idx].copy()
        if starts is None:
            return out
        for b, (i, t0) in enumerate(zip(idx, starts)):
            if i not in self._prefix:
                continue
            col = 0
            for j, s in enumerate(self.specs):
                a, e = frame_range(float(t0), self.crop, s.frame_rate, int(self._nframes[i, j]))
                p = self._prefix[i][j]
                out[b, col : col + s.dim] = l2n((p[e] - p[a]) / (e - a))
                col += s.dim
        return out

    # -- frames -----------------------------------------------------------------------
    def frame_batch(self, idx: np.ndarray, starts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Padded grid frames ``(B, T, D)`` float32 and lengths ``(B,)``; crops when ``starts`` given."""
        if self.grid is None:
            raise RuntimeError("FeatureBank built without frames=True")
        spans = []
        for b, i in enumerate(idx):
            k = int(self.grid_offsets[i + 1] - self.grid_offsets[i])
            if starts is None:
                a, e = 0, k
            else:
                a, e = frame_range(float(starts[b]), self.crop, self.grid_rate, k)
            spans.append((int(self.grid_offsets[i]) + a, e - a))
        lengths = np.array([n for _, n in spans], np.int64)
        out = np.zeros((len(idx), int(lengths.max()), self.dim), np.float32)
        for b, (o, n) in enumerate(spans):
            out[b, :n] = self.grid[o : o + n]
        return out, lengths

    def random_starts(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One uniformly random crop start (seconds) per clip; 0 for clips within the crop."""
        d = self.durations[idx]
        return np.where(d > self.crop, rng.uniform(0, 1, len(idx)) * np.maximum(d - self.crop, 0), 0.0)
