"""Window planning for long audio, and the window length a predictor uses by default.

A clip no longer than the window is one window with weight 1, scored from all its frames -- exactly the
sweep's whole-clip dev/evaluation prediction.  A longer clip is cut into windows starting at 0, hop,
2 hop, ... until a window reaches the clip's end; the **last window is the short remainder**
``[k hop, duration)`` (not a full window moved back), so no audio is counted twice when hop = window.
Window scores are averaged with weights ``(t1 - t0) / sum(t1 - t0)``: each window's share of the audio.

The default window is the crop the members were trained on (``crop_seconds``): heads trained on 5-s crops
are applied to 5-s windows, not 10-s ones.  An explicit window (``--window``) wins; the hop defaults to
the window.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .errors import PredictorError


def plan_windows(duration: float, window: float = 10.0, hop: float = 10.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window starts, ends (seconds) and weights for a clip of ``duration`` seconds (see the module doc)."""
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


def resolve_window(crops: Sequence[float], window: float | None = None,
                   hop: float | None = None) -> tuple[float, float]:
    """``(window, hop)`` in seconds: ``window`` defaults to the members' training crop, ``hop`` to the window.

    Raises :class:`PredictorError` for a bad window/hop, or when members trained on different crops
    and no window is given (no single window fits them all)."""
    if window is None:
        distinct = sorted({float(c) for c in crops})
        if len(distinct) != 1:
            raise PredictorError(f"the members were trained on crops of {', '.join(f'{c:g}' for c in distinct)} s; "
                                 f"choose the window with --window SECONDS")
        window = distinct[0]
    hop = window if hop is None else hop
    if not (math.isfinite(window) and math.isfinite(hop) and window > 0 and hop > 0) or hop > window + 1e-12:
        raise PredictorError(f"--window {window:g} / --hop {hop:g}: both must be positive with hop <= window")
    return float(window), float(hop)


__all__ = ["plan_windows", "resolve_window"]
