"""A toy encoder for tests/test_toy_encoder.py: one module, registered by one line in ``ENCODERS``.

Frames: per 20-ms hop, the RMS and the zero-crossing rate of the window, and their product (3-d, 50 Hz).
Built in (no weights), numpy only."""
from __future__ import annotations

import numpy as np

from mmmos.extract.base import FrameEncoder

HOP = 320


class ToyEncoder(FrameEncoder):
    name = "toy"
    sample_rate = 16000
    frame_rate = 16000 / HOP
    dim = 3
    needs_weights = False

    def __init__(self, device: str = "cpu"):
        super().__init__(device=device, config={"features": "rms,zcr,rms*zcr", "hop": HOP})

    @classmethod
    def from_weights(cls, weights=None, device: str | None = "cpu", **options) -> "ToyEncoder":
        if weights:
            raise ValueError("toy: no weights")
        return cls()

    def forward_batch(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[1] // HOP
        w = x[:, : n * HOP].reshape(len(x), n, HOP)
        rms = np.sqrt((w ** 2).mean(-1))
        zcr = (np.diff(np.sign(w), axis=-1) != 0).mean(-1)
        return np.stack([rms, zcr, rms * zcr], axis=-1).astype(np.float32)

    def expected_frames(self, n_samples: int) -> int:
        return int(n_samples) // HOP

    def min_samples(self) -> int:
        return HOP
