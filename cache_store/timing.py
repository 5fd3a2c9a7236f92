"""Frame timing: which frames of an encoder cover a span of seconds.

Frame ``k`` of an encoder with rate ``r`` (frames per second) covers about
``[k/r, (k+1)/r)``.  A crop ``[t0, t0 + d)`` therefore maps to frames
``[floor(t0*r), ceil((t0+d)*r))``, clipped to the frames the clip has, so encoders
with different rates see the same stretch of audio.
"""
from __future__ import annotations

import math

import numpy as np

_EPS = 1e-9  # keeps 10.0 s * 50 Hz == 500 exact despite float rounding


def frame_range(t0: float, duration: float, frame_rate: float, n_frames: int) -> tuple[int, int]:
    """Half-open frame interval ``[a, b)`` for the crop ``[t0, t0 + duration)``.

    Always returns at least one frame for a clip that has frames (a crop that falls
    inside the last partial frame still sees that frame)."""
    if n_frames <= 0:
        return 0, 0
    a = int(math.floor(t0 * frame_rate + _EPS))
    b = int(math.ceil((t0 + duration) * frame_rate - _EPS))
    a = min(max(a, 0), n_frames - 1)
    b = min(max(b, a + 1), n_frames)
    return a, b


def crop_mean(frames: np.ndarray, a: int, b: int) -> np.ndarray:
    """Mean of frames ``[a, b)`` in float32 (fp16 storage is summed in float32)."""
    return frames[a:b].mean(axis=0, dtype=np.float32)
