"""How the extraction pipeline feeds a device: per-device defaults, and a batch too large for the device's
memory halved until it fits (every clip still written, none failed)."""
from __future__ import annotations

import numpy as np

from mmmos.extract.base import FrameEncoder
from mmmos.extract.pipeline import embed_many, feed_settings


def test_feed_defaults_per_device(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    cpu = feed_settings("cpu")
    assert (cpu.batch_size, cpu.group_seconds, cpu.decode_workers, cpu.overlap) == (1, 120.0, 1, False)
    gpu = feed_settings("cuda")
    assert (gpu.batch_size, gpu.decode_workers, gpu.overlap) == (32, 8, True)
    assert gpu.group_seconds >= 4 * gpu.batch_size * 10.0  # four full batches of 10-s clips fit in one group
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert feed_settings("cuda").decode_workers == 1  # two cores: none left for a pool
    given = feed_settings("cuda", batch_size=4, group_seconds=30.0, decode_workers=2, overlap=False)
    assert (given.batch_size, given.group_seconds, given.decode_workers, given.overlap) == (4, 30.0, 2, False)


class OutOfMemoryError(RuntimeError):
    """Named as torch.cuda's: the pipeline recognises it by name."""


class SmallDevice(FrameEncoder):
    """Frames = input halves' means; a 'device' that holds at most ``fits`` inputs per forward."""

    name, sample_rate, dim = "small", 16000, 2

    def __init__(self, fits: int):
        super().__init__()
        self.fits, self.calls = fits, []

    def forward_batch(self, x):
        self.calls.append(len(x))
        if len(x) > self.fits:
            raise OutOfMemoryError("CUDA out of memory")
        h = x.shape[1] // 2
        return np.stack([x[:, :h].mean(1), x[:, h:].mean(1)], axis=1)[:, None, :].astype(np.float32)


def test_a_batch_that_runs_out_of_memory_is_halved():
    rng = np.random.default_rng(0)
    waves = {f"c{i}": rng.standard_normal(800).astype(np.float32) for i in range(8)}
    enc = SmallDevice(fits=2)
    errors = []
    got = embed_many(enc, waves, 8, on_error=lambda c, e: errors.append(c))
    assert not errors and sorted(got) == sorted(waves)
    assert enc.calls == [8, 4, 2, 2, 4, 2, 2]  # halved, never down to one clip at a time
    for cid, w in waves.items():
        np.testing.assert_allclose(got[cid], [[w[:400].mean(), w[400:].mean()]], rtol=1e-6)
