"""Fixtures shared by the test files: the real Track 2 lists, a WAV writer and an in-process CLI runner."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# tests never remember weight hashes in the user's home (tests/test_hash_memo.py sets its own file)
os.environ.setdefault("MMMOS_HASH_MEMO", "off")

def _track2_dir() -> Path:
    """The real Track 2 lists: $MMMOS_TRACK2_DIR, else ``shared/`` beside the checkout (as CI lays it out), else
    the workplace's ``/work/shared``."""
    if os.environ.get("MMMOS_TRACK2_DIR"):
        return Path(os.environ["MMMOS_TRACK2_DIR"])
    beside = Path(__file__).resolve().parents[2] / "shared" / "data" / "track2"
    return beside if beside.is_dir() else Path("/work/shared/data/track2")


TRACK2_DIR = _track2_dir()


@pytest.fixture(scope="session")
def track2_dir() -> Path:
    """The folder of the real AudioMOS 2025 Track 2 list files (tests skip when it is absent)."""
    if not (TRACK2_DIR / "combined_train.csv").is_file():
        pytest.skip(f"real Track 2 lists not found in {TRACK2_DIR} (set MMMOS_TRACK2_DIR)")
    return TRACK2_DIR


@pytest.fixture
def write_wav():
    """``write_wav(path, seconds, sr=16000, seed=0)``: a 16-bit mono WAV of low noise; returns the path."""

    def write(path: str | os.PathLike, seconds: float, sr: int = 16000, seed: int = 0) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        x = np.random.default_rng(seed).normal(0.0, 0.1, int(round(seconds * sr))).astype(np.float32)
        sf.write(p, x, sr, subtype="PCM_16", format="WAV")
        return p

    return write


@pytest.fixture
def run_cli(capsys):
    """``run_cli(argv) -> (exit status, stdout, stderr)`` through ``mmmos.app.cli.main`` in this process."""
    from mmmos.app.cli import main

    def run(argv: list[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err

    return run
