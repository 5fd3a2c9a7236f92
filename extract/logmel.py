"""Built-in, weight-free log-mel "encoders": the no-download default and a baseline.

80 log-mel bands at 16 kHz, 25 ms Hann window, 20 ms hop, so frames line up with
WavLM's 50 Hz grid (frame k covers ~[k/50, (k+1)/50) s).  No centre padding, so a
clip of n samples gives floor((n - 400) / 320) + 1 frames, like WavLM.
"""
from __future__ import annotations

import numpy as np

from .base import FrameEncoder, tiled_chunks

N_FFT = 400
HOP = 320


def _mel_filterbank(n_mels: int, n_fft: int, sr: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney-style triangular filters on the HTK mel scale (no area norm; the log
    compresses scale anyway).  Shape (n_mels, n_fft // 2 + 1)."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)

    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower = (freqs[None, :] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    upper = (edges[2:, None] - freqs[None, :]) / (edges[2:, None] - edges[1:-1, None])
    return np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)


class LogMelEncoder(FrameEncoder):
    name = "logmel"
    needs_weights = False  # built in
    sample_rate = 16000
    n_mels, n_fft, hop = 80, N_FFT, HOP

    def __init__(self, n_mels: int | None = None, device: str = "cpu"):
        n_mels = n_mels or type(self).n_mels
        self.frame_rate = self.sample_rate / self.hop
        self._max_frames = max(1, int(30 * self.frame_rate))  # chunks of at most 30 s
        super().__init__(device=device, weights=None,
                         config={"n_mels": n_mels, "n_fft": self.n_fft, "hop": self.hop, "fmin": 0.0, "fmax": 8000.0,
                                 "log": "ln(power+1e-6)",
                                 "chunking": f"tiled {self._max_frames} frames, {self.n_fft - self.hop}-sample context"})
        self.dim = n_mels
        self._fb = _mel_filterbank(n_mels, self.n_fft, self.sample_rate, 0.0, 8000.0)
        self._win = np.hanning(self.n_fft + 1)[:-1].astype(np.float32)  # periodic Hann

    @classmethod
    def from_weights(cls, weights=None, device: str = "cpu", n_mels: int | None = None, **_):
        if weights:
            raise ValueError("the logmel encoder has no weights; drop --weights for it")
        return cls(n_mels=n_mels, device="cpu")  # numpy: no device to choose

    def split(self, wave):
        return tiled_chunks(wave, hop=self.hop, context=self.n_fft - self.hop, max_frames=self._max_frames)

    def forward_batch(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        t = self.expected_frames(x.shape[-1])
        if t < 1:
            return np.zeros((x.shape[0], 0, self.dim), np.float32)
        idx = np.arange(self.n_fft)[None, :] + self.hop * np.arange(t)[:, None]
        frames = x[:, idx] * self._win  # (B, T, N_FFT)
        power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
        return np.log(power @ self._fb.T + 1e-6).astype(np.float32)

    def expected_frames(self, n_samples: int) -> int:
        return max(0, (n_samples - self.n_fft) // self.hop + 1)

    def min_samples(self) -> int:
        return self.n_fft


class LogMelSlowEncoder(LogMelEncoder):
    """40 log-mel bands over 160 ms windows at 6.25 Hz (M2D's rate): the demo's second
    built-in encoder, so the demo exercises multi-rate crops and the common time grid."""

    name = "logmel_slow"
    n_mels, n_fft, hop = 40, 2560, 2560
