"""A new encoder is one module plus one registry line: a toy encoder registered by name goes through
extract, sweep and predict with no other change, and its traits come from its class."""
from __future__ import annotations

import argparse

import numpy as np
import polars as pl
import pytest
import torch

from mmmos import extract, sweep
from mmmos.app.demos.track2_corpus import make_demo_corpus
from mmmos.app.predict import add_arguments, export_predictor, run_cli
from mmmos.cache_store import open_store
from mmmos.core.audio import load_audio
from mmmos.extract.precision import resolve_precision
from mmmos.extract.runner import ExtractConfig, run_extract


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(extract.ENCODERS, "toy", "toy_encoder:ToyEncoder")  # the one registry line
    return "toy"


def test_traits_come_from_the_class(toy):
    assert extract.modality(toy) == "audio" and not extract.needs_weights(toy)
    assert toy in extract.WEIGHT_FREE and toy not in extract.TEXT_ENCODERS
    assert resolve_precision("bf16", "cpu", toy) == "fp32"  # no reduced path declared: computes fp32


def test_toy_encoder_through_extract_sweep_and_predict(toy, tmp_path):
    torch.set_num_threads(1)
    corpus = make_demo_corpus(tmp_path / "corpus", n_train=24, n_dev=8, n_pam=4)
    store = str(tmp_path / "cache.zarr")
    rep = run_extract(ExtractConfig(manifests=[corpus["train"], corpus["dev"]], store=store,
                                    encoders=[toy, "logmel"], progress=False))
    assert not rep.failures and rep.written[toy] == 32
    g = open_store(store).group(toy)
    cid = g.clip_ids()[0]
    w, _ = load_audio(g.clip(cid).path)
    want = extract.load_encoder(toy).embed(w)
    np.testing.assert_allclose(g.read(cid).astype(np.float32), want, rtol=1e-3, atol=1e-4)  # fp16 store

    cfgs = [c for c in sweep.paper_configs({"bienc": (toy,), "trienc": (toy, "logmel")})
            if c.name in ("bienc-mlp-utmos", "trienc-blstm_t-ccc")]
    for c in cfgs:
        c.epochs, c.lr = 2, 1e-3
    res = sweep.run_sweep(cfgs, store, tmp_path / "run", sweep.load_labels("train", corpus["train"]),
                          sweep.load_labels("dev", corpus["dev"]), [], progress=False)
    assert all("error" not in r for r in res.values()), res

    model = export_predictor(tmp_path / "run", ["bienc-mlp-utmos"], tmp_path / "model")
    p = argparse.ArgumentParser()
    add_arguments(p)
    out = tmp_path / "scores.parquet"
    assert run_cli(p.parse_args([corpus["dev"], "--model", str(model), "--out", str(out), "--no-progress"])) == 0
    got = pl.read_parquet(out)
    ref = pl.read_parquet(tmp_path / "run" / "configs" / "bienc-mlp-utmos" / "predictions" / "dev.parquet")
    j = got.join(ref, on="clip_id", suffix="_sweep").filter(pl.col("duration") <= 10.0)
    assert j.height >= 3
    axes = ["PQ", "PC", "CE", "CU"]
    np.testing.assert_allclose(j.select(axes).to_numpy(), j.select([f"{a}_sweep" for a in axes]).to_numpy(),
                               atol=1e-5)
