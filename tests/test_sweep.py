"""Stage 2: features from the cache, the sweep, resume, determinism and bad input."""
import argparse

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from mmmos import sweep
from mmmos.cache_store import CacheError, open_store
from mmmos.cache_store.features import FeatureBank, grid_pool
from mmmos.core.errors import UserError
from synthetic_cache import make_synthetic

SETS = {"bienc": ("encA",), "trienc": ("encA", "encB")}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    store, sets = make_synthetic(d, n_train=96, n_dev=32, n_pam=24, missing_label=3)
    return d, str(store), sets


def _labels(sets):
    return (sweep.load_labels("train", sets["train"]), sweep.load_labels("dev", sets["dev"]),
            [sweep.load_labels("pam_dev", sets["pam_dev"])])


def _cfgs(names, epochs=4):
    cfgs = [c for c in sweep.paper_configs(SETS) if c.name in names]
    for c in cfgs:
        c.lr, c.epochs = 3e-3, epochs
    return cfgs


# -- features ------------------------------------------------------------------------------
def _l2(x):
    return x / np.linalg.norm(x)


def test_pooled_crop_features_match_an_independent_computation(synth):
    _, store, _ = synth
    st = open_store(store)
    groups = [st.group("encA"), st.group("encB")]
    ids = [c for c in groups[0].clip_ids() if groups[0].clip(c).duration > 10][:4]
    ids += [c for c in groups[0].clip_ids() if groups[0].clip(c).duration < 10][:2]
    bank = FeatureBank(groups, ids, crop_seconds=10.0)
    starts = np.array([0.0, 3.3, 7.29, 1.0, 0.0, 0.0])
    got = bank.pooled(np.arange(len(ids)), starts)
    for i, (cid, t0) in enumerate(zip(ids, starts)):
        want = np.concatenate([_l2(g.read_crop(cid, t0, 10.0).astype(np.float64).mean(0)) for g in groups])
        np.testing.assert_allclose(got[i], want, rtol=1e-4, atol=1e-5)
    whole = bank.pooled(np.arange(len(ids)))
    for i, cid in enumerate(ids):
        want = np.concatenate([_l2(g.read(cid).astype(np.float64).mean(0)) for g in groups])
        np.testing.assert_allclose(whole[i], want, rtol=1e-4, atol=1e-5)


def test_grid_pool_by_loops():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((101, 3)).astype(np.float32)
    got = grid_pool(x, 50.0, 6.25, 13)
    for k in range(13):
        a, b = k * 8, min((k + 1) * 8, 101)
        np.testing.assert_allclose(got[k], x[a:b].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(grid_pool(x, 6.25, 6.25, 5), x[:5])


def test_frame_batch_crops_the_grid_and_masks(synth):
    _, store, _ = synth
    st = open_store(store)
    groups = [st.group("encA"), st.group("encB")]
    ids = groups[0].clip_ids()[:5]
    bank = FeatureBank(groups, ids, 10.0, frames=True)
    assert bank.grid_rate == 6.25 and bank.dim == 18
    x, lengths = bank.frame_batch(np.arange(5))
    for i, cid in enumerate(ids):
        n = int(lengths[i])
        a = groups[0].read(cid).astype(np.float32)
        b = groups[1].read(cid).astype(np.float32)
        assert n == min(int(np.ceil(len(a) / 8 - 1e-9)), len(b))
        want_a = np.stack([_l2(a[k * 8: (k + 1) * 8].mean(0)) for k in range(n)])
        np.testing.assert_allclose(x[i, :n, :12], want_a, atol=2e-3)
        np.testing.assert_allclose(x[i, :n, 12:], np.stack([_l2(r) for r in b[:n]]), atol=2e-3)
        assert not x[i, n:].any()
    long = [i for i, c in enumerate(ids) if groups[0].clip(c).duration > 10]
    if long:
        xc, lc = bank.frame_batch(np.array(long), np.full(len(long), 2.0))
        assert (lc <= int(np.ceil(10 * 6.25)) + 1).all()


# -- the sweep ------------------------------------------------------------------------------
def test_sweep_learns_beats_shuffled_control_and_resumes(synth, tmp_path):
    d, store, sets = synth
    tr, dv, ev = _labels(sets)
    names = ["trienc-mlp-utmos", "trienc-blstm_t-ccc", "trienc-blstm_h-dcq", "bienc-mlp-contrastive"]
    res = sweep.run_sweep(_cfgs(names, epochs=10), store, tmp_path / "run", tr, dv, ev, progress=False)
    assert all("error" not in r for r in res.values()), res
    summary = pl.read_parquet(tmp_path / "run" / "summary.parquet")
    assert summary.height == 4
    top = summary.sort("dev/utt_SRCC", descending=True).row(0, named=True)
    best = top["dev/utt_SRCC"]
    # the best configuration again, on training labels shuffled across clips
    shuf = tr.table.with_columns(pl.struct(list(sweep.AXES)).shuffle(seed=1).struct.unnest())
    shuf_path = tmp_path / "train_shuffled.csv"
    shuf.write_csv(shuf_path)
    sweep.run_sweep(_cfgs([top["config"]], epochs=10), store, tmp_path / "ctrl", sweep.load_labels("train", shuf_path), dv, ev,
                    progress=False)
    ctrl = pl.read_parquet(tmp_path / "ctrl" / "summary.parquet")["dev/utt_SRCC"][0]
    print(f"best dev SRCC {best:.3f} ({top['config']}) vs shuffled-label control {ctrl:.3f}")
    assert best > 0.7 and best - ctrl > 0.4
    # outputs per configuration
    cdir = tmp_path / "run" / "configs" / "trienc-mlp-utmos"
    for f in ("model.pt", "config.json", "train_log.jsonl", "metrics.parquet", "predictions/dev.parquet",
              "predictions/pam_dev.parquet", "DONE"):
        assert (cdir / f).exists(), f
    pred = pl.read_parquet(cdir / "predictions/dev.parquet")
    assert pred.columns == ["clip_id", "system", "domain", "PQ", "PC", "CE", "CU"]
    assert pred.select(pl.min_horizontal(sweep.AXES).min()).item() >= 0
    m = pl.read_parquet(cdir / "metrics.parquet")
    assert m.height == 2 * 2 * 5 * 4 and set(m["set"]) == {"dev", "pam_dev"}
    # metrics agree with scipy on the saved predictions
    truth = dv.table.join(pred, on="clip_id", suffix="_p")
    comp_p = truth.select(pl.mean_horizontal([f"{a}_p" for a in sweep.AXES])).to_series().to_numpy()
    comp_y = truth.select(pl.mean_horizontal(list(sweep.AXES))).to_series().to_numpy()
    ok = ~np.isnan(comp_y)
    got = m.filter((pl.col("set") == "dev") & (pl.col("level") == "utterance") & (pl.col("axis") == "composite")
                   & (pl.col("metric") == "SRCC"))["value"][0]
    assert got == pytest.approx(spearmanr(comp_p[ok], comp_y[ok]).statistic, abs=1e-12)
    # missing labels were excluded and counted
    log = (cdir / "train_log.jsonl").read_text()
    assert "3 clips with a missing/NaN label are excluded" in log
    # resume: nothing retrained, nothing rewritten
    mtime = (cdir / "model.pt").stat().st_mtime_ns
    again = sweep.run_sweep(_cfgs(names, epochs=10), store, tmp_path / "run", tr, dv, ev, progress=False)
    assert all(r == {"skipped": True} for r in again.values())
    assert (cdir / "model.pt").stat().st_mtime_ns == mtime


def test_cpu_determinism(synth, tmp_path):
    _, store, sets = synth
    tr, dv, ev = _labels(sets)
    for run in ("a", "b"):
        sweep.run_sweep(_cfgs(["trienc-blstm_t-utmos", "trienc-mlp-dcq"], epochs=2), store, tmp_path / run, tr, dv,
                        ev, progress=False)
    for name in ("trienc-blstm_t-utmos", "trienc-mlp-dcq"):
        a = pl.read_parquet(tmp_path / "a" / "configs" / name / "predictions" / "dev.parquet")
        b = pl.read_parquet(tmp_path / "b" / "configs" / name / "predictions" / "dev.parquet")
        assert a.equals(b)


def test_missing_encoder_and_foreign_run_dir_are_refused(synth, tmp_path):
    _, store, sets = synth
    tr, dv, ev = _labels(sets)
    with pytest.raises(CacheError, match=r"no frames of m2d, wavlm .*mmmos extract --encoders m2d,wavlm"):
        sweep.run_sweep(sweep.paper_configs()[:1], store, tmp_path / "r", tr, dv, ev, progress=False)
    sweep.run_sweep(_cfgs(["bienc-mlp-utmos"], epochs=1), store, tmp_path / "r", tr, dv, ev, progress=False)
    other, _ = make_synthetic(tmp_path / "other", n_train=8, n_dev=4, n_pam=2, seed=5)
    with pytest.raises(UserError, match="different cache"):
        sweep.run_sweep(_cfgs(["bienc-mlp-utmos"], epochs=1), str(other), tmp_path / "r", tr, dv, ev, progress=False)


def test_unknown_head_or_loss_lists_valid_names():
    base = dict(ablation=False, sets="bienc=a,trienc=a+b", only=None, heads=None, losses=None, epochs=1, patience=1,
                lr=1e-3, seed=1, crop=10.0, device="cpu")
    with pytest.raises(UserError, match="valid: mlp"):
        sweep.configs_from_args(argparse.Namespace(**{**base, "heads": "transformer"}))
    with pytest.raises(UserError, match="valid: utmos"):
        sweep.configs_from_args(argparse.Namespace(**{**base, "losses": "l1"}))
    assert len(sweep.configs_from_args(argparse.Namespace(**base))) == 16
    abl = sweep.configs_from_args(argparse.Namespace(**{**base, "ablation": True, "sets": "bienc=a,trienc=a+b+c"}))
    assert len(abl) == 7 and {c.head for c in abl} == {"mlp"} and {c.loss for c in abl} == {"utmos"}


def test_eval_set_without_systems_reports_na(synth, tmp_path):
    _, store, sets = synth
    tr, dv, _ = _labels(sets)
    nosys = pl.read_csv(sets["pam_dev"]).with_columns(pl.lit(None, dtype=pl.String).alias("system"))
    p = tmp_path / "nosys.csv"
    nosys.write_csv(p)
    sweep.run_sweep(_cfgs(["bienc-mlp-utmos"], epochs=1), store, tmp_path / "r", tr, dv,
                    [sweep.load_labels("nosys", p)], progress=False)
    m = pl.read_parquet(tmp_path / "r" / "configs" / "bienc-mlp-utmos" / "metrics.parquet")
    sysrows = m.filter((pl.col("set") == "nosys") & (pl.col("level") == "system"))
    assert sysrows.height == 20 and sysrows["value"].is_nan().all() and (sysrows["n"] == 0).all()
    assert "n/a" in (tmp_path / "r" / "summary.md").read_text()


def test_changed_settings_retrain_instead_of_skipping(synth, tmp_path):
    _, store, sets = synth
    tr, dv, ev = _labels(sets)
    sweep.run_sweep(_cfgs(["bienc-mlp-utmos"], epochs=1), store, tmp_path / "r", tr, dv, ev, progress=False)
    same = sweep.run_sweep(_cfgs(["bienc-mlp-utmos"], epochs=1), store, tmp_path / "r", tr, dv, ev, progress=False)
    assert same == {"bienc-mlp-utmos": {"skipped": True}}
    changed = sweep.run_sweep(_cfgs(["bienc-mlp-utmos"], epochs=2), store, tmp_path / "r", tr, dv, ev, progress=False)
    assert changed["bienc-mlp-utmos"]["config"]["epochs"] == 2
