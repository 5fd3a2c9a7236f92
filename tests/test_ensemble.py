"""select_ensemble: rankings, strategy membership, ensemble means, metrics, answer files, errors.

The sweep directories are built by hand (no training): predictions = labels + noise per
configuration, and metrics.parquet holds hand-chosen ranking values so every top-K and the
dev ∩ PAM intersection is known in advance.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from mmmos import ensemble as se
from mmmos.app import ensemble_cmd
from mmmos.app.cli import main as mmmos_main
from mmmos.app.scoring import score
from mmmos.core.errors import UserError
from mmmos.core.manifests import read_answer_file
from mmmos.core.metrics import evaluate

AXES = ("PQ", "PC", "CE", "CU")

# name -> (dev SRCC, pam SRCC); ties on purpose: c_b/c_c tie on dev, c_d/c_e tie on pam
RANKING = {
    "c_a": (0.90, 0.70),
    "c_b": (0.80, 0.95),
    "c_c": (0.80, 0.60),
    "c_d": (0.70, 0.85),
    "c_e": (0.60, 0.85),
    "c_f": (float("nan"), 0.50),
}


def make_truth(path: Path, set_name: str, n: int, rng: np.random.Generator) -> pl.DataFrame:
    y = np.clip(5 + 1.5 * rng.standard_normal((n, 4)), 0, 10)
    df = pl.DataFrame({
        "clip_id": [f"{set_name}/clip{i:04d}.wav" for i in range(n)],
        "path": [f"/audio/{set_name}/clip{i:04d}.wav" for i in range(n)],
        "system": [f"{set_name}_sys{i % 5}" for i in range(n)],
        "domain": [("speech", "music", "sound")[i % 3] for i in range(n)],
        **{a: y[:, k] for k, a in enumerate(AXES)},
    })
    df.write_csv(path)
    return df


def make_fake_sweep(root: Path, ranking: dict[str, tuple[float, float]] = RANKING, n: int = 30,
                    with_pam: bool = True, extra_sets: tuple[str, ...] = (), seed: int = 0) -> Path:
    """A finished sweep directory: configs/<name>/{DONE, config.json, predictions, metrics.parquet}."""
    rng = np.random.default_rng(seed)
    run = root / "run"
    sets = ["dev"] + (["pam_dev"] if with_pam else []) + list(extra_sets)
    truths = {s: make_truth(root / f"{s}.csv", s, n, rng) for s in sets}
    heads = ["mlp", "blstm_t", "blstm_h"]
    losses = ["utmos", "contrastive", "dcq", "ccc"]
    for i, (name, (dev_v, pam_v)) in enumerate(ranking.items()):
        d = run / "configs" / name
        (d / "predictions").mkdir(parents=True)
        rows = []
        for s, t in truths.items():
            y = t.select(AXES).to_numpy()
            p = np.clip(y + (0.3 + 0.2 * i) * rng.standard_normal(y.shape), 0, 10)
            pred = t.select("clip_id", "system", "domain").with_columns(
                *[pl.Series(a, p[:, k]) for k, a in enumerate(AXES)])
            pred.write_parquet(d / "predictions" / f"{s}.parquet")
            rows += evaluate(pred, t, s).table.to_dicts()
        met = pl.DataFrame(rows)
        # the ranking values are set by hand (what rank() must read)
        hand = {"dev": dev_v, "pam_dev": pam_v}
        met = met.with_columns(
            pl.when((pl.col("axis") == "composite") & (pl.col("level") == "utterance") & (pl.col("metric") == "SRCC")
                    & pl.col("set").is_in(list(hand)))
            .then(pl.col("set").replace_strict(hand, default=None, return_dtype=pl.Float64))
            .otherwise(pl.col("value")).alias("value"))
        met.write_parquet(d / "metrics.parquet")
        cfg = {"name": name, "encoders": ["encA", "encB"], "head": heads[i % 3], "loss": losses[i % 4]}
        (d / "config.json").write_text(json.dumps({"config": cfg}))
        (d / "DONE").write_text("ok\n")
    (run / "run.json").write_text(json.dumps({"store": str(root / "cache.zarr"), "encoders": {"encA": "encA-0"},
                                              "labels": {"train": str(root / "train.csv"),
                                                         **{s: str(root / f"{s}.csv") for s in sets}}}))
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_fake_sweep(tmp_path_factory.mktemp("ens"))


@pytest.fixture(scope="module")
def sweep(run_dir):
    return se.load_sweep(run_dir)


def cli(argv: list[str]) -> int:
    """``mmmos ensemble ARGV`` through the real dispatcher (user errors: one line on stderr, status 2)."""
    return mmmos_main(["ensemble", *argv])


def cmd(argv: list[str]) -> int:
    """The command module alone (user errors raise)."""
    p = argparse.ArgumentParser()
    ensemble_cmd.add_arguments(p)
    return ensemble_cmd.run_cli(p.parse_args(argv))


# ---------------------------------------------------------------------------------------------
# ranking and membership
# ---------------------------------------------------------------------------------------------
def test_load_sweep(sweep, run_dir):
    assert sweep.configs == sorted(RANKING)
    assert sweep.sets == ["dev", "pam_dev"]  # run.json order; train has no predictions
    assert set(sweep.truth) == {"dev", "pam_dev"}
    assert sweep.predictions["dev"].values.shape == (6, 30, 4)


def test_rank_ties_by_name_and_nan_last(sweep):
    dev = se.rank(sweep, "dev")
    assert [c for c, _ in dev] == ["c_a", "c_b", "c_c", "c_d", "c_e", "c_f"]
    assert math.isnan(dev[-1][1])
    pam = se.rank(sweep, "pam_dev")
    assert [c for c, _ in pam] == ["c_b", "c_d", "c_e", "c_a", "c_c", "c_f"]
    assert [v for _, v in pam] == [0.95, 0.85, 0.85, 0.70, 0.60, 0.50]


def test_rank_mse_lower_is_better(sweep):
    got = se.rank(sweep, "dev", metric="MSE")
    m = sweep.metrics.filter((pl.col("set") == "dev") & (pl.col("level") == "utterance")
                             & (pl.col("axis") == "composite") & (pl.col("metric") == "MSE"))
    expect = sorted(zip(m["config"], m["value"]), key=lambda t: (t[1], t[0]))
    assert got == [(c, v) for c, v in expect]
    assert got[0][1] <= got[-1][1]


@pytest.mark.parametrize("strategy,top,expected", [
    ("all", 12, ["c_a", "c_b", "c_c", "c_d", "c_e", "c_f"]),
    ("dev-top-2", 12, ["c_a", "c_b"]),
    ("dev-top-3", 12, ["c_a", "c_b", "c_c"]),  # c_b/c_c tie: both in, by name
    ("pam-top-2", 12, ["c_b", "c_d"]),  # c_d/c_e tie at the cut: c_d by name
    ("pam-top-1", 12, ["c_b"]),
    # dev top-3 = {a, b, c}; pam top-3 = {b, d, e} -> {b}
    ("submitted", 3, ["c_b"]),
    # dev top-4 = {a, b, c, d}; pam top-4 = {b, d, e, a} -> a, b, d (dev order)
    ("submitted", 4, ["c_a", "c_b", "c_d"]),
    ("submitted", 12, ["c_a", "c_b", "c_c", "c_d", "c_e", "c_f"]),
])
def test_strategy_membership(sweep, strategy, top, expected):
    assert se.select(strategy, sweep, top=top) == expected


def test_submitted_empty_intersection_is_unavailable(sweep):
    # dev top-1 = a, pam top-1 = b
    with pytest.raises(se.StrategyUnavailable, match="both"):
        se.select("submitted", sweep, top=1)


def test_too_many_members_unavailable(sweep):
    with pytest.raises(se.StrategyUnavailable, match="needs 7 configurations"):
        se.select("pam-top-7", sweep)


def test_unknown_strategy_and_member_errors(sweep):
    with pytest.raises(ValueError, match=r"unknown strategy 'best-3'.*submitted, all, pam-top-K, dev-top-K"):
        se.select("best-3", sweep)
    with pytest.raises(ValueError, match="unknown strategy 'pam-top-0'"):
        se.select("pam-top-0", sweep)
    with pytest.raises(ValueError, match=r"unknown member\(s\) nope; valid: c_a, c_b, c_c, c_d, c_e, c_f"):
        se.select("custom", sweep, members=["c_a", "nope"])
    with pytest.raises(ValueError, match="more than once"):
        se.select("custom", sweep, members=["c_a", "c_a"])
    with pytest.raises(ValueError, match="unknown ranking metric"):
        se.rank(sweep, "dev", metric="RMSE")
    with pytest.raises(ValueError, match="needs an explicit member list"):
        se.select("custom", sweep)


def test_cli_unknown_names_exit_2(run_dir, tmp_path, capsys):
    assert cli([str(run_dir), "--strategies", "submitted,top-5", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown strategy 'top-5'" in err and "pam-top-K" in err
    assert cli([str(run_dir), "--members", "c_a,zz", "--out", str(tmp_path / "o")]) == 2
    assert "unknown member(s) zz; valid: c_a, c_b" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# ensemble predictions and metrics
# ---------------------------------------------------------------------------------------------
def test_two_member_ensemble_is_the_mean(sweep, run_dir):
    got = se.ensemble_predictions(sweep, ["c_c", "c_a"], "pam_dev")
    a = pl.read_parquet(run_dir / "configs/c_a/predictions/pam_dev.parquet")
    c = pl.read_parquet(run_dir / "configs/c_c/predictions/pam_dev.parquet").sample(fraction=1.0, shuffle=True, seed=1)
    j = a.join(c, on="clip_id", suffix="_c")
    expect = {r["clip_id"]: [(r[x] + r[f"{x}_c"]) / 2 for x in AXES] for r in j.iter_rows(named=True)}
    assert got.columns == ["clip_id", "system", "domain", *AXES]
    assert got.height == 30
    for r in got.iter_rows(named=True):
        np.testing.assert_allclose([r[x] for x in AXES], expect[r["clip_id"]], rtol=0, atol=1e-12)
    # one member: its own predictions
    one = se.ensemble_predictions(sweep, ["c_a"], "pam_dev")
    np.testing.assert_array_equal(one.select(AXES).to_numpy(), a.select(AXES).to_numpy())


def test_ensemble_metrics_equal_evaluate_scorer_and_scipy(run_dir, tmp_path):
    out = tmp_path / "ens"
    table = se.run_ensembles(run_dir, ["submitted", "pam-top-2"], out=out, top=4)
    members = json.loads((out / "members.json").read_text())
    assert members["strategies"]["submitted"]["members"] == ["c_a", "c_b", "c_d"]
    row = table.filter(pl.col("strategy") == "pam-top-2").row(0, named=True)
    assert row["n_members"] == 2 and row["members"] == "c_b,c_d" and row["status"] == "ok"

    pred_file = out / "predictions" / "pam-top-2" / "pam_dev.parquet"
    truth_file = run_dir.parent / "pam_dev.csv"
    scored = score(pred_file, truth_file, set_name="pam_dev").table
    long = pl.read_parquet(out / "metrics.parquet").filter(
        (pl.col("strategy") == "pam-top-2") & (pl.col("set") == "pam_dev")).drop("strategy")
    assert long.sort("level", "axis", "metric").equals(scored.sort("level", "axis", "metric"))

    # independent: composite SRCC/KTAU/MSE by hand from the member files and the truth CSV
    b = pl.read_parquet(run_dir / "configs/c_b/predictions/pam_dev.parquet")
    d = pl.read_parquet(run_dir / "configs/c_d/predictions/pam_dev.parquet")
    t = pl.read_csv(truth_file)
    j = t.join(b, on="clip_id", suffix="_b").join(d, on="clip_id", suffix="_d")
    p = np.mean([(j[f"{a}_b"].to_numpy() + j[f"{a}_d"].to_numpy()) / 2 for a in AXES], axis=0)
    y = np.mean([j[a].to_numpy() for a in AXES], axis=0)
    assert row["pam_dev/utt_SRCC"] == pytest.approx(stats.spearmanr(p, y).statistic, abs=1e-12)
    assert row["pam_dev/utt_KTAU"] == pytest.approx(stats.kendalltau(p, y).statistic, abs=1e-12)
    assert row["pam_dev/utt_MSE"] == pytest.approx(float(np.mean((p - y) ** 2)), abs=1e-12)
    sysm = pl.DataFrame({"s": j["system"], "p": p, "y": y}).group_by("s").mean()
    assert row["pam_dev/sys_LCC"] == pytest.approx(stats.pearsonr(sysm["p"], sysm["y"]).statistic, abs=1e-12)
    md = (out / "table_iv.md").read_text()
    assert "**pam_dev** (composite)" in md and "| pam-top-2 | 2 |" in md


def test_answer_file_round_trip(run_dir, tmp_path, capsys):
    out, ans = tmp_path / "ens", tmp_path / "sub" / "answer.txt"
    assert cli([str(run_dir), "--out", str(out), "--top", "4", "--answer", str(ans)]) == 0
    assert "answer file" in capsys.readouterr().out
    lines = ans.read_text().splitlines()
    assert len(lines) == 30 and lines[0].startswith("pam_dev/clip0000.wav,")  # default set: first non-dev
    assert len(lines[0].split(",")) == 5
    back = read_answer_file(ans)
    saved = pl.read_parquet(out / "predictions" / "submitted" / "pam_dev.parquet")
    np.testing.assert_array_equal(back.select(AXES).to_numpy(), saved.select(AXES).to_numpy())  # exact floats
    scored = score(ans, run_dir.parent / "pam_dev.csv", set_name="pam_dev").table
    row = pl.read_parquet(out / "table_iv.parquet").filter(pl.col("strategy") == "submitted").row(0, named=True)
    for lv, short in (("utterance", "utt"), ("system", "sys")):
        for m in ("MSE", "LCC", "SRCC", "KTAU"):
            v = scored.filter((pl.col("axis") == "composite") & (pl.col("level") == lv) & (pl.col("metric") == m))
            assert v["value"][0] == pytest.approx(row[f"pam_dev/{short}_{m}"], abs=1e-12)


def test_answer_for_unavailable_strategy_errors(run_dir, tmp_path, capsys):
    rc = cli([str(run_dir), "--out", str(tmp_path / "e"), "--top", "1", "--answer", str(tmp_path / "a.txt")])
    assert rc == 2
    assert "submitted is unavailable" in capsys.readouterr().err
    assert not (tmp_path / "a.txt").exists()


def test_custom_members_and_truth_override(run_dir, tmp_path):
    # override dev labels with a Parquet clip table whose labels are shifted by +1 on every axis
    t = pl.read_csv(run_dir.parent / "dev.csv")
    shifted = t.select("clip_id", "system", *[(pl.col(a) + 1.0).alias(a) for a in AXES])
    shifted.write_parquet(tmp_path / "dev_shift.parquet")
    sw = se.load_sweep(run_dir, truth={"dev": str(tmp_path / "dev_shift.parquet")})
    res = se.evaluate_strategies(sw, ["all"], members=["c_e", "c_a"])
    assert list(res.members) == ["all", "custom"]
    assert res.members["custom"]["members"] == ["c_e", "c_a"]
    pred = se.ensemble_predictions(sw, ["c_a", "c_e"], "dev")
    expect = evaluate(pred, shifted, "dev").table
    got = res.metrics.filter((pl.col("strategy") == "custom") & (pl.col("set") == "dev")).drop("strategy")
    assert got.equals(expect)
    with pytest.raises(ValueError, match="no configuration has predictions for set 'test'"):
        se.load_sweep(run_dir, truth={"test": str(tmp_path / "dev_shift.parquet")})


# ---------------------------------------------------------------------------------------------
# incomplete sweeps
# ---------------------------------------------------------------------------------------------
def test_missing_pam_set_reports_unavailable(tmp_path, capsys):
    run = make_fake_sweep(tmp_path, with_pam=False, extra_sets=("test",))
    out = tmp_path / "ens"
    table = se.run_ensembles(run, out=out)
    status = dict(zip(table["strategy"], table["status"]))
    for s in ("submitted", "pam-top-8", "pam-top-4", "pam-top-1"):
        assert status[s].startswith("unavailable: ") and "pam_dev" in status[s]
    assert status["all"] == "ok"
    assert status["dev-top-8"].startswith("unavailable: needs 8 configurations")
    assert table.filter(pl.col("strategy") == "all")["test/utt_SRCC"][0] is not None
    assert table.filter(pl.col("strategy") == "submitted")["test/utt_SRCC"][0] is None
    md = (out / "table_iv.md").read_text()
    assert "| submitted | — |" in md and "- pam-top-1: unavailable" in md
    # CLI: default answer set is "test" (first set other than dev), for an available strategy
    ans = tmp_path / "a.txt"
    assert cli([str(run), "--out", str(out), "--answer", str(ans), "--answer-strategy", "all"]) == 0
    assert read_answer_file(ans)["clip_id"][0] == "test/clip0000.wav"


def test_config_lacking_a_set_in_metrics_is_unavailable(tmp_path):
    run = make_fake_sweep(tmp_path)
    f = run / "configs" / "c_c" / "metrics.parquet"
    pl.read_parquet(f).filter(pl.col("set") != "pam_dev").write_parquet(f)
    sw = se.load_sweep(run)
    with pytest.raises(se.StrategyUnavailable, match="no recorded SRCC for c_c"):
        se.rank(sw, "pam_dev")
    assert se.select("dev-top-1", sw) == ["c_a"]


def test_clip_missing_from_member_names_it(tmp_path):
    run = make_fake_sweep(tmp_path)
    f = run / "configs" / "c_d" / "predictions" / "dev.parquet"
    pl.read_parquet(f).filter(pl.col("clip_id") != "dev/clip0007.wav").write_parquet(f)
    sw = se.load_sweep(run)
    with pytest.raises(ValueError, match=r"member c_d has no prediction for 1 clip.*'dev/clip0007.wav'"):
        se.ensemble_predictions(sw, ["c_a", "c_d"], "dev")
    assert se.ensemble_predictions(sw, ["c_a", "c_b"], "dev").height == 30  # others unaffected
    with pytest.raises(ValueError, match="c_d has no prediction"):
        se.evaluate_strategies(sw, ["all"])


def test_bad_prediction_file_and_unfinished_config(tmp_path):
    run = make_fake_sweep(tmp_path)
    (run / "configs" / "c_e" / "DONE").unlink()
    sw = se.load_sweep(run)
    assert "c_e" not in sw.configs and any("c_e" in n for n in sw.notes)
    f = run / "configs" / "c_a" / "predictions" / "dev.parquet"
    df = pl.read_parquet(f)
    df.with_columns(pl.when(pl.col("clip_id") == "dev/clip0003.wav").then(None).otherwise(pl.col("PC"))
                    .alias("PC")).write_parquet(f)
    with pytest.raises(ValueError, match=r"c_a/predictions/dev.parquet: 1 clips have a missing.*clip0003"):
        se.load_sweep(run)


def test_missing_truth_file_is_a_clear_error(tmp_path):
    run = make_fake_sweep(tmp_path)
    (tmp_path / "pam_dev.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"labels for set 'pam_dev'.*--truth pam_dev=PATH"):
        se.load_sweep(run)
