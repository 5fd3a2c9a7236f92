"""The device-resident feature bank (mmmos/sweep/device_bank.py), checked on the CPU: the torch path gives the
numpy path's features and, in a sweep, its predictions; the memory guard falls back to the host path."""
import logging

import numpy as np
import polars as pl
import pytest

from mmmos import sweep
from mmmos.cache_store import open_store
from mmmos.cache_store.features import FeatureBank
from mmmos.sweep.device_bank import TorchBank, device_bank
from synthetic_cache import make_synthetic

SETS = {"bienc": ("encA",), "trienc": ("encA", "encB")}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    store, sets = make_synthetic(d, n_train=48, n_dev=16, n_pam=8, missing_label=0)
    return d, str(store), sets


def _bank(store, frames):
    st = open_store(store)
    groups = [st.group("encA"), st.group("encB")]
    return FeatureBank(groups, groups[0].clip_ids(), crop_seconds=10.0, frames=frames)


def test_torch_bank_matches_numpy_bank(synth):
    _, store, _ = synth
    bank = _bank(store, frames=True)
    tb = device_bank(bank, "cpu", force=True)
    assert isinstance(tb, TorchBank) and device_bank(bank, "cpu", force=True) is tb  # uploaded once
    assert len(bank.long) and len(bank.long) < len(bank)  # both kinds of clip are exercised
    rng = np.random.default_rng(3)
    for _ in range(4):
        idx = rng.permutation(len(bank))[:12]
        starts = bank.random_starts(idx, rng)
        for s in (starts, None):
            np.testing.assert_allclose(tb.pooled(idx, s).numpy(), bank.pooled(idx, s), rtol=1e-6, atol=1e-6)
            x, lengths = tb.frame_batch(idx, s)
            want_x, want_len = bank.frame_batch(idx, s)
            np.testing.assert_array_equal(lengths, want_len)
            np.testing.assert_array_equal(x.numpy(), want_x)  # pure indexing: exactly equal


def test_cpu_keeps_the_numpy_path_unless_asked(synth, monkeypatch):
    _, store, _ = synth
    bank = _bank(store, frames=False)
    monkeypatch.delenv("MMMOS_DEVICE_BANK", raising=False)
    assert device_bank(bank, "cpu") is bank
    monkeypatch.setenv("MMMOS_DEVICE_BANK", "1")
    assert isinstance(device_bank(bank, "cpu"), TorchBank)
    monkeypatch.setenv("MMMOS_DEVICE_BANK", "0")
    assert device_bank(bank, "cuda") is bank  # forced off: no device is touched


def test_memory_guard_falls_back_to_the_host_path(synth, caplog):
    _, store, _ = synth
    bank = _bank(store, frames=True)
    with caplog.at_level(logging.WARNING, logger="mmmos.sweep"):
        got = device_bank(bank, "cpu", force=True, budget=1024)
    assert got is bank
    lines = [r for r in caplog.records if "do not fit" in r.getMessage()]
    assert len(lines) == 1


def _labels(sets):
    return (sweep.load_labels("train", sets["train"]), sweep.load_labels("dev", sets["dev"]),
            [sweep.load_labels("pam_dev", sets["pam_dev"])])


def test_sweep_predictions_equal_on_both_paths(synth, tmp_path, monkeypatch):
    _, store, sets = synth
    tr, dv, ev = _labels(sets)
    names = ["trienc-mlp-utmos", "trienc-blstm_t-utmos", "trienc-blstm_h-ccc"]

    def cfgs():
        out = [c for c in sweep.paper_configs(SETS) if c.name in names]
        for c in out:
            c.lr, c.epochs = 3e-3, 2
        return out

    for run, flag in (("host", "0"), ("torch", "1")):
        monkeypatch.setenv("MMMOS_DEVICE_BANK", flag)
        res = sweep.run_sweep(cfgs(), store, tmp_path / run, tr, dv, ev, progress=False)
        assert all("error" not in r for r in res.values()), res
    for name in names:
        for s in ("dev", "pam_dev"):
            a = pl.read_parquet(tmp_path / "host" / "configs" / name / "predictions" / f"{s}.parquet")
            b = pl.read_parquet(tmp_path / "torch" / "configs" / name / "predictions" / f"{s}.parquet")
            assert a["clip_id"].equals(b["clip_id"])
            for ax in sweep.AXES:
                np.testing.assert_allclose(b[ax].to_numpy(), a[ax].to_numpy(), rtol=0, atol=1e-5)
