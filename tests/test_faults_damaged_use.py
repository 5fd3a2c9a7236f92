"""Damaged cached frames are never used downstream: training refuses them (naming the clip and telling how to
repair), and ``predict --cache`` computes the clip fresh from its audio instead of reading the damaged entry."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmmos import sweep
from mmmos.cache_store import open_store
from synthetic_cache import make_synthetic
from test_faults_predict import _predictor, _write_cache, files  # noqa: F401 - module fixture reused

SETS = {"bienc": ("encA",), "trienc": ("encA", "encB")}


def _flip_first_chunk(group, clip_id: str) -> None:
    """Flip one bit in the middle of the clip's first stored chunk (Zarr layout ``c/0/0``)."""
    chunk = Path(group._location(clip_id)) / "c" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    chunk.write_bytes(bytes(raw))


def test_training_refuses_a_damaged_clip(tmp_path):
    store, sets = make_synthetic(tmp_path / "synth", n_train=24, n_dev=8, n_pam=6)
    g = open_store(store).group("encA")
    victim = sorted(g.clip_ids())[0]
    _flip_first_chunk(g, victim)
    cfg = [c for c in sweep.paper_configs(SETS) if c.name == "bienc-mlp-utmos"]
    for c in cfg:
        c.epochs, c.lr = 1, 3e-3
    res = sweep.run_sweep(cfg, str(store), tmp_path / "run", sweep.load_labels("train", sets["train"]),
                          sweep.load_labels("dev", sets["dev"]), [], progress=False)
    err = res["bienc-mlp-utmos"]["error"]
    assert "damaged cache entry" in err and repr(victim) in err and "mmmos extract" in err
    assert not (tmp_path / "run" / "configs" / "bienc-mlp-utmos" / "DONE").exists()


def test_predict_computes_a_damaged_cached_clip_fresh(tmp_path, files):  # noqa: F811 - pytest fixture
    model = _predictor(tmp_path)
    from mmmos.app.predict import Predictor

    clean = Predictor.load(model, device="cpu").predict_files([files["short3"]])
    store = _write_cache(tmp_path / "cache.zarr", {"a": files["short3"]})
    _flip_first_chunk(open_store(store).group(next(iter(open_store(store).encoders())).key), "a")
    with pytest.warns(RuntimeWarning, match="damaged cache entry"):
        pred = Predictor.load(model, device="cpu", cache=store)
        got = pred.predict_files([files["short3"]])
    assert got["error"].to_list() == [None]
    for axis in ("PQ", "PC", "CE", "CU"):
        assert got[axis].to_list() == pytest.approx(clean[axis].to_list(), abs=1e-6)
    assert any("computed fresh" in n for n in pred.cache_notes)
