"""Stacking ensembles without leakage: out-of-fold figures, grouped folds, recovered weights, features, outputs.

Sweeps are built by hand (no training): each member's predictions are a known function of the labels plus
noise, so what the meta-model should learn is known in advance.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from mmmos import ensemble as se
from mmmos.app.cli import main as mmmos_main
from mmmos.core.manifests import read_answer_file
from mmmos.core.metrics import evaluate
from mmmos.core.tasks.track1 import TRACK1
from mmmos.ensemble.folds import group_ids, grouped_folds
from mmmos.ensemble.meta import choose_alpha, fit_ridge
from mmmos.ensemble.stack_features import SIGMA, axis_features, bin_columns, choose_layout, gaussian_bins
from mmmos.ensemble.sweep_reader import Sweep, align

AXES = ("PQ", "PC", "CE", "CU")


def _truth(set_name: str, n: int, n_sys: int, rng: np.random.Generator, axes=AXES, lo=0.0, hi=10.0):
    mid, spread = (lo + hi) / 2, (hi - lo) / 6
    y = np.clip(mid + spread * rng.standard_normal((n, len(axes))), lo, hi)
    return pl.DataFrame({
        "clip_id": [f"{set_name}/sys{i % n_sys:02d}-utt{i:04d}" for i in range(n)],
        "system": [f"{set_name}_sys{i % n_sys:02d}" for i in range(n)],
        "domain": [("speech", "music", "sound")[i % 3] for i in range(n)],
        **{a: y[:, k] for k, a in enumerate(axes)},
    })


def make_stack_sweep(root: Path, members: dict, sizes: dict[str, tuple[int, int]], seed: int = 0,
                     labelled: tuple[str, ...] | None = None) -> tuple[Path, dict[str, pl.DataFrame]]:
    """A finished sweep; ``members``: name -> f(y, rng) -> predictions; ``sizes``: set -> (clips, systems)."""
    rng = np.random.default_rng(seed)
    run = root / "run"
    truths = {s: _truth(s, n, k, rng) for s, (n, k) in sizes.items()}
    for s, t in truths.items():
        t.write_csv(root / f"{s}.csv")
    for name, f in members.items():
        d = run / "configs" / name
        (d / "predictions").mkdir(parents=True)
        tabs = []
        for s, t in truths.items():
            p = np.clip(f(t.select(AXES).to_numpy(), rng), 0, 10)
            pred = t.select("clip_id", "system", "domain").with_columns(
                *[pl.Series(a, p[:, k]) for k, a in enumerate(AXES)])
            pred.write_parquet(d / "predictions" / f"{s}.parquet")
            tabs.append(evaluate(pred, t, s).table)
        pl.concat(tabs).write_parquet(d / "metrics.parquet")
        (d / "config.json").write_text(json.dumps({"config": {"name": name, "head": "mlp", "loss": "l1"}}))
        (d / "DONE").write_text("ok\n")
    labels = {s: str(root / f"{s}.csv") for s in (labelled if labelled is not None else sizes)}
    (run / "run.json").write_text(json.dumps({"store": str(root / "cache.zarr"), "encoders": {}, "labels": labels}))
    return run, truths


def noise(rng_scale: float = 1.5):
    return lambda y, rng: 5 + rng_scale * rng.standard_normal(y.shape)


def informative(sd: float):
    return lambda y, rng: y + sd * rng.standard_normal(y.shape)


def composite_srcc(pred: pl.DataFrame, truth: pl.DataFrame) -> float:
    j = truth.join(pred, on="clip_id", suffix="_p")
    p = np.mean([j[f"{a}_p"].to_numpy() for a in AXES], axis=0)
    y = np.mean([j[a].to_numpy() for a in AXES], axis=0)
    return float(stats.spearmanr(p, y).statistic)


def row_of(result, strategy: str) -> dict:
    return result.table.filter(pl.col("strategy") == strategy).row(0, named=True)


# ---------------------------------------------------------------------------------------------
# no leakage
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    """60 noisy members, 40 dev clips in 10 systems: a meta-model can fit dev perfectly and learn nothing."""
    members = {f"m{i:02d}": informative(6.0) for i in range(60)}
    run, truths = make_stack_sweep(tmp_path_factory.mktemp("overfit"), members, {"dev": (40, 10), "test": (200, 10)})
    sweep = se.load_sweep(run)
    return sweep, truths, se.evaluate_strategies(sweep, ["all", "stack"])


def test_out_of_fold_figures_differ_from_in_sample_on_an_overfitting_case(overfit):
    sweep, truths, result = overfit
    res = result.stack
    in_sample = composite_srcc(res.in_sample, truths["dev"])
    oof = composite_srcc(res.predictions["dev"], truths["dev"])
    assert in_sample > 0.95          # what a leaky evaluation would report
    assert oof < in_sample - 0.2     # what is reported
    assert row_of(result, "stack")["dev/utt_SRCC"] == pytest.approx(oof, abs=1e-12)
    # the honest dev figure is in line with the held-out test set, the in-sample one is not
    test = composite_srcc(res.predictions["test"], truths["test"])
    assert abs(oof - test) < abs(in_sample - test)
    assert any("in-sample" in n and "out-of-fold" in n for n in result.notes)


def test_out_of_fold_prediction_equals_a_refit_without_the_fold(overfit):
    """Independent re-computation of one axis: each fold predicted by ridge fitted on the other folds only."""
    sweep, truths, result = overfit
    res = result.stack
    members = res.members
    sp = sweep.predictions["dev"]
    X = np.stack([sp.values[sweep.index(m), :, 0] for m in members], axis=1)
    ids = sp.clip_ids
    y = truths["dev"].join(pl.DataFrame({"clip_id": ids}), on="clip_id", how="right")["PQ"].to_numpy()
    folds = dict(zip(res.folds["clip_id"], res.folds["fold"]))
    groups = dict(zip(res.folds["clip_id"], res.folds["group"]))
    fold = np.array([folds[c] for c in ids])
    got = dict(zip(res.predictions["dev"]["clip_id"], res.predictions["dev"]["PQ"]))
    for f in range(res.n_folds):
        tr = fold != f
        alpha, _ = choose_alpha(X[tr], y[tr], [groups[c] for c, t in zip(ids, tr) if t], 5, 0)
        Xs_mu, Xs_sd = X[tr].mean(0), X[tr].std(0)
        Z = (X[tr] - Xs_mu) / Xs_sd
        w = np.linalg.solve(Z.T @ Z + alpha * np.eye(Z.shape[1]), Z.T @ (y[tr] - y[tr].mean()))
        want = np.clip(y[tr].mean() + ((X[~tr] - Xs_mu) / Xs_sd) @ w, 0, 10)
        assert np.allclose([got[c] for c, t in zip(ids, tr) if not t], want, atol=1e-8)


def test_grouped_folds_keep_each_system_on_one_side(overfit):
    _, _, result = overfit
    folds = result.stack.folds
    per_group = folds.group_by("group").agg(pl.col("fold").n_unique().alias("k"))
    assert per_group["k"].max() == 1
    for f in range(result.stack.n_folds):
        fit = set(folds.filter(pl.col("fold") != f)["group"])
        held = set(folds.filter(pl.col("fold") == f)["group"])
        assert held and not fit & held


def test_grouped_folds_unit():
    rng = np.random.default_rng(3)
    groups = [f"s{int(g)}" for g in rng.integers(0, 23, size=500)]
    a = grouped_folds(groups, 5, seed=1)
    assert np.array_equal(a, grouped_folds(groups, 5, seed=1))       # seeded
    assert not np.array_equal(a, grouped_folds(groups, 5, seed=2))
    for g in set(groups):
        assert len({a[i] for i, x in enumerate(groups) if x == g}) == 1
    sizes = np.bincount(a)
    assert len(sizes) == 5 and sizes.max() - sizes.min() < 60         # balanced
    assert grouped_folds(["a", "a", "b", "b", "b"], 5).max() == 1      # k capped at the number of groups
    with pytest.raises(ValueError):
        grouped_folds(["a", "a"], 5)
    # clips without a system are their own groups (they cannot leak a system)
    assert group_ids([None, "x", None], ["c1", "c2", "c3"]) == ["clip:c1", "system:x", "clip:c3"]


# ---------------------------------------------------------------------------------------------
# what the meta-model learns
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def one_good(tmp_path_factory):
    members = {"good": informative(0.4), **{f"noise{i}": noise() for i in range(7)}}
    run, truths = make_stack_sweep(tmp_path_factory.mktemp("onegood"), members,
                                   {"dev": (240, 24), "pam_dev": (120, 12), "test": (200, 20)})
    sweep = se.load_sweep(run)
    return sweep, truths, se.evaluate_strategies(sweep, ["all", "stack"])


def test_stacking_recovers_the_informative_member_and_beats_the_mean_out_of_fold(one_good):
    sweep, truths, result = one_good
    res = result.stack
    good = res.members.index("good")
    for a in AXES:
        coef = res.models[a].coef
        assert coef[good] > 0.8
        assert np.abs(np.delete(coef, good)).max() < 0.1
    stack_dev, mean_dev = row_of(result, "stack")["dev/utt_SRCC"], row_of(result, "all")["dev/utt_SRCC"]
    assert stack_dev > mean_dev + 0.1                                   # out of fold
    assert row_of(result, "stack")["test/utt_SRCC"] > row_of(result, "all")["test/utt_SRCC"] + 0.1
    doc = result.members["stack"]["stack"]
    assert doc["fit_set"] == "dev" and "out-of-fold" in doc["figures"]
    assert doc["axes"]["PQ"]["coefficients"] == pytest.approx(list(res.models["PQ"].coef))


def test_ridge_closed_form_equals_normal_equations():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 6)) * [1, 2, 3, 0.5, 1, 4] + 3
    y = X @ [1, 0, -1, 2, 0, 0.5] + rng.standard_normal(50)
    m = fit_ridge(X, y, 2.5)
    mu, sd = X.mean(0), X.std(0)
    Z = (X - mu) / sd
    w = np.linalg.solve(Z.T @ Z + 2.5 * np.eye(6), Z.T @ (y - y.mean()))
    assert np.allclose(m.predict(X), y.mean() + Z @ w, atol=1e-10)
    assert np.allclose(fit_ridge(X, y, 1e-9).coef, np.linalg.lstsq(np.c_[np.ones(50), X], y, rcond=None)[0][1:],
                       atol=1e-6)


def test_stacked_scores_are_clamped_to_the_task_range(tmp_path):
    # a squashed member: the meta-model learns a gain > 1, which would push extremes outside 0-10
    members = {"squash": lambda y, rng: 0.4 * y + 3 + 0.05 * rng.standard_normal(y.shape), "other": noise()}
    run, _ = make_stack_sweep(tmp_path, members, {"dev": (120, 12), "test": (120, 12)})
    sweep = se.load_sweep(run)
    sp = sweep.predictions["test"]
    sp.values[sweep.index("squash"), :5, :] = 10.0  # -> ~17.5 before clamping
    res = se.fit_stack(sweep, ["squash", "other"])
    got = res.predictions["test"].select(AXES).to_numpy()
    assert got.max() == 10.0 and got.min() >= 0.0
    assert np.all(got[:5] == 10.0)


# ---------------------------------------------------------------------------------------------
# features: saved distributions and Gaussian bins (Track 1)
# ---------------------------------------------------------------------------------------------
def test_gaussian_bins_of_a_scalar_member():
    p = gaussian_bins(np.array([3.0, 1.0]), 1.0, 5.0)
    c = np.linspace(1, 5, 20)
    want = np.exp(-((3.0 - c) ** 2) / (2 * SIGMA ** 2))
    assert p.shape == (2, 20) and np.allclose(p.sum(1), 1) and np.allclose(p[0], want / want.sum())


def _track1_sweep(rng: np.random.Generator, n: int = 150) -> tuple[Sweep, np.ndarray]:
    """In memory: member 'dist' saved distributions (peaked at the label), member 'scalar' did not."""
    axes, lo, hi = TRACK1.axes, TRACK1.lo, TRACK1.hi
    t = _truth("dev", n, 15, rng, axes, lo, hi)
    y = t.select(axes).to_numpy()
    base = t.select("clip_id", "system", "domain")
    dist = gaussian_bins(y, lo, hi, 0.2)                            # (n, axes, 20)
    mean = dist @ np.linspace(lo, hi, 20)
    f_dist = base.with_columns(*[pl.Series(a, mean[:, k]) for k, a in enumerate(axes)],
                               *[pl.Series(c, dist[:, k, b]) for k, a in enumerate(axes)
                                 for b, c in enumerate(bin_columns(a))])
    sc = np.clip(y + 0.8 * rng.standard_normal(y.shape), lo, hi)
    f_scalar = base.with_columns(*[pl.Series(a, sc[:, k]) for k, a in enumerate(axes)])
    sp = align("dev", [f_dist, f_scalar], axes)
    truth = t.select("clip_id", "system", *axes)
    sweep = Sweep(Path("."), ["dist", "scalar"], {}, pl.DataFrame(), ["dev"], {"dev": sp}, {"dev": truth}, {}, [],
                  TRACK1)
    return sweep, dist


def test_saved_distributions_add_20_features_and_scalar_members_become_gaussians():
    sweep, dist = _track1_sweep(np.random.default_rng(5))
    sp = sweep.predictions["dev"]
    assert sp.has_dist.tolist() == [True, False]
    layout = choose_layout(["dist", "scalar"], sp.has_dist.tolist(), "auto")
    assert layout.bins and layout.n_features == 2 * 21
    X = axis_features(layout, sp.values[:, :, 0], [sp.dists[0][:, 0], None], TRACK1.lo, TRACK1.hi)
    assert X.shape == (150, 42)
    assert np.allclose(X[:, 2:22], dist[:, 0])                                  # the saved bins
    assert np.allclose(X[:, 22:], gaussian_bins(sp.values[1, :, 0], TRACK1.lo, TRACK1.hi))
    assert choose_layout(["dist", "scalar"], [True, False], "scores").n_features == 2
    res = se.fit_stack(sweep, ["dist", "scalar"], se.StackOptions())
    assert res.layout.bins and len(res.models["MI"].coef) == 42
    got = res.predictions["dev"].select(TRACK1.axes).to_numpy()
    assert got.min() >= TRACK1.lo and got.max() <= TRACK1.hi


def test_partial_distribution_columns_are_an_error(tmp_path):
    run, _ = make_stack_sweep(tmp_path, {"a": informative(0.5), "b": noise()}, {"dev": (30, 6)})
    f = run / "configs" / "a" / "predictions" / "dev.parquet"
    df = pl.read_parquet(f)
    df.with_columns(*[pl.lit(0.05).alias(c) for c in bin_columns("PQ")]).write_parquet(f)
    with pytest.raises(se.EnsembleError, match="distribution columns"):
        se.load_sweep(run)


# ---------------------------------------------------------------------------------------------
# command line, outputs, availability
# ---------------------------------------------------------------------------------------------
def test_cli_stack_outputs_and_answer(one_good, tmp_path, capsys):
    sweep, truths, _ = one_good
    out, answer = tmp_path / "ens", tmp_path / "answer.txt"
    rc = mmmos_main(["ensemble", str(sweep.run_dir), "--strategies", "all,dev-top-2,stack", "--out", str(out),
                     "--stack-members", "dev-top-2", "--answer", str(answer), "--answer-strategy", "stack",
                     "--answer-set", "test"])
    assert rc == 0
    md = (out / "table_iv.md").read_text()
    assert "| stack (fitted on dev, out-of-fold) | 2 |" in md and "| stack (fitted on dev) | 2 |" in md
    members = json.loads((out / "members.json").read_text())
    st = members["strategies"]["stack"]
    assert st["members"] == members["strategies"]["dev-top-2"]["members"]
    assert set(st["stack"]["axes"]) == set(AXES) and st["stack"]["member_selection"] == "dev-top-2"
    assert any("chosen by ranking on dev" in n for n in members["notes"])
    table = pl.read_parquet(out / "table_iv.parquet")
    assert table.filter(pl.col("strategy") == "stack")["fit_set"].to_list() == ["dev"]
    long = pl.read_parquet(out / "metrics.parquet").filter(pl.col("strategy") == "stack")
    assert set(long.filter(pl.col("set") == "dev")["fit"]) == {"out-of-fold"}
    assert set(long.filter(pl.col("set") == "test")["fit"]) == {"fitted on dev"}
    pred = pl.read_parquet(out / "predictions" / "stack" / "test.parquet")
    ans = read_answer_file(answer)
    assert ans["clip_id"].to_list() == pred["clip_id"].to_list()
    assert np.allclose(ans.select(AXES).to_numpy(), pred.select(AXES).to_numpy())


@pytest.mark.parametrize("args, msg", [
    (["--stack-folds", "1"], "--stack-folds must be >= 2"),
    (["--stack-members", "top-3"], "--stack-members: unknown strategy"),
    (["--stack-fit", "nope"], None),
])
def test_cli_bad_stack_options(one_good, tmp_path, capsys, args, msg):
    sweep, _, _ = one_good
    rc = mmmos_main(["ensemble", str(sweep.run_dir), "--strategies", "all,stack", "--out", str(tmp_path / "e"), *args])
    if msg is None:  # an unknown fitting set: the strategy is unavailable, the others still run
        assert rc == 0
        members = json.loads((tmp_path / "e" / "members.json").read_text())
        assert "nope" in members["strategies"]["stack"]["unavailable"]
    else:
        assert rc == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0]


def test_fit_set_without_labels_is_unavailable(tmp_path):
    run, _ = make_stack_sweep(tmp_path, {"a": informative(0.5), "b": noise()}, {"dev": (30, 6), "test": (30, 6)},
                              labelled=("test",))
    result = se.evaluate_strategies(se.load_sweep(run), ["all", "stack"])
    assert "no labels" in result.members["stack"]["unavailable"]
    assert row_of(result, "all")["status"] == "ok"


def test_lightgbm_meta_model(one_good):
    pytest.importorskip("lightgbm")
    sweep, _, _ = one_good
    res = se.fit_stack(sweep, sweep.configs, se.StackOptions(model="lightgbm"))
    assert set(res.predictions) == {"dev", "pam_dev", "test"}


def test_lightgbm_absent_is_a_user_error(one_good):
    from mmmos.ensemble.meta import lightgbm_available

    if lightgbm_available():
        pytest.skip("lightgbm is installed")
    sweep, _, _ = one_good
    with pytest.raises(se.EnsembleError, match="lightgbm"):
        se.evaluate_strategies(sweep, ["stack"], stack=se.StackOptions(model="lightgbm"))


# ---------------------------------------------------------------------------------------------
# export: a stacked predictor gives the ensemble's numbers
# ---------------------------------------------------------------------------------------------
REAL_MEMBERS = ["bienc-mlp-utmos", "bienc-mlp-contrastive", "bienc-mlp-ccc"]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A tiny real run: demo corpus (clips within the 10 s window) -> logmel cache -> 3 configurations."""
    torch = pytest.importorskip("torch")
    from mmmos import sweep
    from mmmos.app.demos.track2_corpus import make_demo_corpus
    from mmmos.extract.runner import ExtractConfig, run_extract

    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        d = tmp_path_factory.mktemp("stack_real")
        corpus = make_demo_corpus(d / "corpus", n_train=40, n_dev=16, n_pam=10, durations=(2.0, 8.0))
        store = str(d / "cache.zarr")
        rep = run_extract(ExtractConfig(manifests=[corpus["train"], corpus["dev"], corpus["pam_dev"]], store=store,
                                        encoders=["logmel"], progress=False))
        assert not rep.failures
        cfgs = [c for c in sweep.paper_configs({"bienc": ("logmel",), "trienc": ("logmel",)}) if c.name in REAL_MEMBERS]
        for c in cfgs:
            c.epochs, c.lr = 2, 1e-3
        res = sweep.run_sweep(cfgs, store, d / "run", sweep.load_labels("train", corpus["train"]),
                              sweep.load_labels("dev", corpus["dev"]),
                              [sweep.load_labels("pam_dev", corpus["pam_dev"])], progress=False)
        assert all("error" not in r for r in res.values()), res
        yield {"dir": d, "corpus": corpus, "run": d / "run"}
    finally:
        torch.set_num_threads(n_threads)


def test_exported_stacked_predictor_reproduces_the_ensemble(real_run, capsys):
    from mmmos.app.predict import Predictor, read_predictor_spec

    d, run = real_run["dir"], real_run["run"]
    ens, model = d / "ens", d / "stacked"
    rc = mmmos_main(["ensemble", str(run), "--strategies", "all,stack", "--out", str(ens), "--stack-folds", "3",
                     "--export-strategy", "stack", "--export", str(model)])
    assert rc == 0, capsys.readouterr().err
    spec = read_predictor_spec(model)
    stack_doc = json.loads((ens / "members.json").read_text())["strategies"]["stack"]["stack"]
    assert spec["version"] == 2 and spec["stack"]["features"]["members"] == [m["name"] for m in spec["members"]]
    for a in AXES:
        assert spec["stack"]["axes"][a]["coefficients"] == stack_doc["axes"][a]["coefficients"]
    out = d / "pam.parquet"
    assert mmmos_main(["predict", real_run["corpus"]["pam_dev"], "--model", str(model), "--out", str(out),
                       "--no-progress"]) == 0
    got = pl.read_parquet(out)
    want = pl.read_parquet(ens / "predictions" / "stack" / "pam_dev.parquet")
    j = want.join(got, on="clip_id", suffix="_pred")
    assert j.height == want.height == got.height
    # members' own scores agree with the sweep to ~1e-6 (fp16 frame rounding, see test_predict); the meta-model
    # scales that by its coefficients (2-epoch members are nearly collinear: large weights of opposite signs)
    gap = np.abs(j.select([f"{a}_pred" for a in AXES]).to_numpy() - j.select(AXES).to_numpy()).max(axis=0)
    scale = np.array([1 + np.abs(spec["stack"]["axes"][a]["coefficients"]).sum() for a in AXES])
    assert np.all(gap <= 2e-6 * scale), (gap, scale)
    # not the mean of the members: the meta-model is applied
    mean = pl.read_parquet(ens / "predictions" / "all" / "pam_dev.parquet").join(got, on="clip_id", suffix="_pred")
    assert np.abs(mean.select(AXES).to_numpy() - mean.select([f"{a}_pred" for a in AXES]).to_numpy()).max() > 1e-3
    pred = Predictor.load(model)
    assert pred.stack is not None and pred.stack.fit_set == "dev"
    # the meta-model alone, on the members' own sweep predictions: the ensemble's numbers to rounding
    files = [pl.read_parquet(run / "configs" / m.name / "predictions" / "pam_dev.parquet").sort("clip_id")
             for m in pred.members]
    stacked = pred.stack.apply(np.stack([f.select(AXES).to_numpy() for f in files]))
    np.testing.assert_allclose(stacked, want.sort("clip_id").select(AXES).to_numpy(), rtol=0, atol=1e-9)


def test_a_stack_record_that_does_not_fit_the_members_is_refused(real_run, tmp_path):
    from mmmos.app.predict import PredictorError, read_predictor_spec

    d, run = real_run["dir"], real_run["run"]
    model = tmp_path / "m"
    assert mmmos_main(["ensemble", str(run), "--strategies", "stack", "--out", str(tmp_path / "e"),
                       "--stack-folds", "3", "--export-strategy", "stack", "--export", str(model)]) == 0
    f = model / "predictor.json"
    good = json.loads(f.read_text())
    bad = json.loads(f.read_text())
    bad["stack"]["features"]["members"] = bad["stack"]["features"]["members"][::-1]
    f.write_text(json.dumps(bad))
    with pytest.raises(PredictorError, match="not the predictor's members"):
        read_predictor_spec(model)
    bad = dict(good, version=1)
    f.write_text(json.dumps(bad))
    with pytest.raises(PredictorError, match="cannot have a stack record"):
        read_predictor_spec(model)
    bad = json.loads(json.dumps(good))
    bad["stack"]["axes"]["PQ"]["coefficients"] = [1.0]
    f.write_text(json.dumps(bad))
    with pytest.raises(PredictorError, match="coefficients per axis"):
        read_predictor_spec(model)


def test_public_recipe_is_sklearn_ridge_alpha_1_on_the_20_bins_fitted_in_sample():
    from sklearn.linear_model import Ridge

    sweep, dist = _track1_sweep(np.random.default_rng(7))
    sp = sweep.predictions["dev"]
    res = se.fit_stack(sweep, ["dist", "scalar"], se.StackOptions(recipe="public"))
    assert not res.layout.scores and res.layout.n_features == 40      # no score column per member
    truth = sweep.truth["dev"]
    for k, axis in enumerate(TRACK1.axes):
        # the public features: the saved softmax, the scalar member's sigma-0.35 Gaussian, concatenated
        X = np.concatenate([sp.dists[0][:, k], gaussian_bins(sp.values[1, :, k], TRACK1.lo, TRACK1.hi, 0.35)], axis=1)
        y = pl.DataFrame({"clip_id": sp.clip_ids}).join(truth, on="clip_id", how="left",
                                                       maintain_order="left")[axis].to_numpy()
        ref = Ridge(alpha=1.0).fit(X, y)
        np.testing.assert_allclose(res.models[axis].coef, ref.coef_, atol=1e-8)
        assert res.models[axis].intercept == pytest.approx(ref.intercept_, abs=1e-8)
        want = np.clip(ref.predict(X), TRACK1.lo, TRACK1.hi)             # in-sample, clipped to 1..5
        got = pl.DataFrame({"clip_id": sp.clip_ids}).join(res.predictions["dev"], on="clip_id",
                                                          maintain_order="left")[axis].to_numpy()
        np.testing.assert_allclose(got, want, atol=1e-8)
    assert "IN-SAMPLE" in res.to_json()["figures"] and res.to_json()["recipe"] == "public"
    # the default stays out-of-fold, with a score column per member and a cross-validated alpha
    oof = se.fit_stack(sweep, ["dist", "scalar"], se.StackOptions())
    assert oof.layout.scores and oof.layout.n_features == 42 and "out-of-fold" in oof.to_json()["figures"]
    with pytest.raises(se.EnsembleError, match="stack-recipe"):
        se.StackOptions(recipe="leaky").check()
