"""Tests for mmmos.metrics: metric values vs scipy and independent formulas, system level, evaluate."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import polars as pl
import pytest
from scipy import stats

from mmmos.core.metrics import (
    ALL_AXES,
    AXES,
    LEVELS,
    METRICS,
    UndefinedMetricWarning,
    evaluate,
    format_markdown,
    ktau,
    lcc,
    mse,
    srcc,
    system_means,
    wide_table,
)


def tau_b_by_pairs(p: np.ndarray, y: np.ndarray) -> float:
    """Kendall tau-b counted pair by pair: (C - D) / sqrt((n0 - ties_p) (n0 - ties_y))."""
    conc = disc = ties_p = ties_y = 0
    for i, j in itertools.combinations(range(len(p)), 2):
        dp, dy = np.sign(p[j] - p[i]), np.sign(y[j] - y[i])
        ties_p += dp == 0
        ties_y += dy == 0
        if dp * dy > 0:
            conc += 1
        elif dp * dy < 0:
            disc += 1
    n0 = len(p) * (len(p) - 1) // 2
    return (conc - disc) / math.sqrt((n0 - ties_p) * (n0 - ties_y))


# --- metric functions --------------------------------------------------------------------------


@pytest.mark.parametrize("seed,n", [(0, 5), (1, 37), (2, 200)])
def test_metrics_match_scipy_and_formulas_on_random_vectors(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.uniform(0, 10, n)
    p = y + rng.normal(0, 2, n)
    assert mse(p, y) == pytest.approx(np.mean((p - y) ** 2), rel=1e-12)
    assert lcc(p, y) == pytest.approx(stats.pearsonr(p, y).statistic, abs=1e-12)
    assert lcc(p, y) == pytest.approx(np.corrcoef(p, y)[0, 1], abs=1e-10)
    assert srcc(p, y) == pytest.approx(stats.spearmanr(p, y).statistic, abs=1e-12)
    assert srcc(p, y) == pytest.approx(np.corrcoef(stats.rankdata(p), stats.rankdata(y))[0, 1], abs=1e-10)
    assert ktau(p, y) == pytest.approx(stats.kendalltau(p, y).statistic, abs=1e-12)
    assert ktau(p, y) == pytest.approx(tau_b_by_pairs(p, y), abs=1e-10)


@pytest.mark.parametrize("seed", [3, 4])
def test_metrics_with_ties_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Labels on a 0.1 grid like means of 10 integer ratings, predictions rounded: many ties on both sides.
    y = rng.integers(0, 101, 60) / 10.0
    y[:10] = 5.0
    p = np.round(y + rng.normal(0, 1.5, 60))
    assert len(np.unique(p)) < len(p) and len(np.unique(y)) < len(y)
    assert srcc(p, y) == pytest.approx(stats.spearmanr(p, y).statistic, abs=1e-12)
    assert srcc(p, y) == pytest.approx(np.corrcoef(stats.rankdata(p), stats.rankdata(y))[0, 1], abs=1e-10)
    assert ktau(p, y) == pytest.approx(stats.kendalltau(p, y, variant="b").statistic, abs=1e-12)
    assert ktau(p, y) == pytest.approx(tau_b_by_pairs(p, y), abs=1e-10)
    assert lcc(p, y) == pytest.approx(stats.pearsonr(p, y).statistic, abs=1e-12)


def test_ktau_is_tau_b_on_a_hand_worked_example() -> None:
    # Pairs: 4 concordant, 0 discordant, one tie in p only, one tie in y only, 6 pairs in all:
    # tau-b = 4 / sqrt((6 - 1) * (6 - 1)) = 0.8 (tau-a would be 4/6, tau-c 0.888...).
    p = np.array([1.0, 2.0, 2.0, 3.0])
    y = np.array([1.0, 2.0, 3.0, 3.0])
    assert ktau(p, y) == pytest.approx(0.8, abs=1e-12)


@pytest.mark.parametrize("fn", [lcc, srcc, ktau])
def test_constant_input_gives_nan_with_warning(fn) -> None:
    y = np.array([1.0, 4.0, 2.0, 8.0])
    with pytest.warns(UndefinedMetricWarning, match="predictions are constant"):
        assert math.isnan(fn(np.full(4, 5.0), y))
    with pytest.warns(UndefinedMetricWarning, match="labels are constant"):
        assert math.isnan(fn(y, np.full(4, 3.0)))


@pytest.mark.parametrize("fn", [lcc, srcc, ktau])
def test_fewer_than_two_pairs_gives_nan(fn) -> None:
    with pytest.warns(UndefinedMetricWarning, match="at least 2 pairs"):
        assert math.isnan(fn([1.0], [2.0]))
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(fn([], []))


def test_mse_defined_for_constant_and_single_pair_nan_for_empty() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mse(np.full(3, 5.0), [4.0, 5.0, 7.0]) == pytest.approx((1 + 0 + 4) / 3)
        assert mse([2.0], [5.0]) == 9.0
    with pytest.warns(UndefinedMetricWarning, match="no pairs"):
        assert math.isnan(mse([], []))


@pytest.mark.parametrize("fn", [mse, lcc, srcc, ktau])
def test_bad_vectors_are_errors(fn) -> None:
    with pytest.raises(ValueError, match="NaN"):
        fn([1.0, float("nan"), 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="length"):
        fn([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="1-D"):
        fn(np.ones((2, 2)), np.ones((2, 2)))


# --- system level --------------------------------------------------------------------------------

# Three systems with 1, 2 and 3 clips. Per system (equal weight per clip):
#   A: pred 2            label 3          -> (2, 3)
#   B: pred 4, 6         label 5, 7       -> (5, 6)
#   C: pred 1, 2, 9      label 2, 2, 8    -> (4, 4)
# Over systems p = [2, 5, 4], y = [3, 6, 4]:
#   MSE = (1 + 1 + 0) / 3 = 2/3; LCC = 39/42 = 13/14 (deviations -5/3, 4/3, 1/3 and -4/3, 5/3, -1/3);
#   ranks agree exactly, so SRCC = KTAU = 1.
HAND_SYSTEMS = ["A", "B", "B", "C", "C", "C"]
HAND_PRED = [2.0, 4.0, 6.0, 1.0, 2.0, 9.0]
HAND_LABEL = [3.0, 5.0, 7.0, 2.0, 2.0, 8.0]


def hand_tables() -> tuple[pl.DataFrame, pl.DataFrame]:
    ids = [f"clip{i}" for i in range(6)]
    # Every axis carries the same numbers shifted by a constant, so every axis (and the composite)
    # has the same hand-worked system-level values.
    pred = pl.DataFrame({"clip_id": ids, **{a: [v + k for v in HAND_PRED] for k, a in enumerate(AXES)}})
    truth = pl.DataFrame(
        {"clip_id": ids, "system": HAND_SYSTEMS, **{a: [v + k for v in HAND_LABEL] for k, a in enumerate(AXES)}}
    )
    return pred, truth


def test_system_means_weight_each_clip_equally() -> None:
    df = pl.DataFrame({"system": HAND_SYSTEMS, "p": HAND_PRED, "y": HAND_LABEL})
    means = system_means(df, ["p"], ["y"])
    assert means["system"].to_list() == ["A", "B", "C"]
    assert means["p"].to_list() == [2.0, 5.0, 4.0]
    assert means["y"].to_list() == [3.0, 6.0, 4.0]
    assert means["n_clips"].to_list() == [1, 2, 3]


def test_system_means_refuses_unfiltered_rows() -> None:
    with pytest.raises(ValueError, match="no system id"):
        system_means(pl.DataFrame({"system": ["A", None], "p": [1.0, 2.0], "y": [1.0, 2.0]}), ["p"], ["y"])
    with pytest.raises(ValueError, match="null/NaN"):
        system_means(pl.DataFrame({"system": ["A", "B"], "p": [1.0, float("nan")], "y": [1.0, 2.0]}), ["p"], ["y"])


def test_evaluate_system_level_hand_worked() -> None:
    pred, truth = hand_tables()
    table = evaluate(pred, truth, "hand").table
    for axis in ALL_AXES:
        sys_rows = table.filter((pl.col("level") == "system") & (pl.col("axis") == axis))
        got = dict(zip(sys_rows["metric"], sys_rows["value"]))
        assert got["MSE"] == pytest.approx(2 / 3, abs=1e-12)
        assert got["LCC"] == pytest.approx(13 / 14, abs=1e-12)
        assert got["SRCC"] == pytest.approx(1.0, abs=1e-12)
        assert got["KTAU"] == pytest.approx(1.0, abs=1e-12)
        assert sys_rows["n"].to_list() == [3] * 4
        utt = table.filter((pl.col("level") == "utterance") & (pl.col("axis") == axis))
        got = dict(zip(utt["metric"], utt["value"]))
        assert got["MSE"] == pytest.approx(np.mean((np.array(HAND_PRED) - np.array(HAND_LABEL)) ** 2))
        assert got["KTAU"] == pytest.approx(stats.kendalltau(HAND_PRED, HAND_LABEL).statistic)
        assert utt["n"].to_list() == [6] * 4


# --- evaluate --------------------------------------------------------------------------------------


def random_tables(n: int = 40, seed: int = 0, n_systems: int = 5) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = [f"c{i:03d}" for i in range(n)]
    labels = {a: rng.integers(0, 101, n) / 10.0 for a in AXES}
    truth = pl.DataFrame({"clip_id": ids, "system": [f"sys{i % n_systems}" for i in range(n)], **labels})
    pred = pl.DataFrame({"clip_id": ids, **{a: labels[a] + rng.normal(0, 1.5, n) for a in AXES}})
    return pred, truth


def value(table: pl.DataFrame, level: str, axis: str, metric: str) -> float:
    row = table.filter((pl.col("level") == level) & (pl.col("axis") == axis) & (pl.col("metric") == metric))
    assert row.height == 1
    return row["value"][0]


def test_evaluate_long_form_layout() -> None:
    pred, truth = random_tables()
    table = evaluate(pred, truth, "dev").table
    assert table.columns == ["set", "level", "axis", "metric", "value", "n"]
    assert table.height == len(LEVELS) * len(ALL_AXES) * len(METRICS) == 40
    assert table.select("level", "axis", "metric").rows() == [
        (lv, a, m) for lv in LEVELS for a in ALL_AXES for m in METRICS
    ]
    assert set(table["set"]) == {"dev"}
    assert table["value"].is_nan().sum() == 0


def test_evaluate_matches_scipy_per_axis_and_composite_is_mean_of_axes() -> None:
    pred, truth = random_tables(seed=5)
    # Shuffle the prediction rows: the join must align by clip_id, not by position.
    pred = pred.sample(fraction=1.0, shuffle=True, seed=1)
    table = evaluate(pred, truth).table
    p_sorted = pred.sort("clip_id")
    t_sorted = truth.sort("clip_id")
    for axis in AXES:
        p, y = p_sorted[axis].to_numpy(), t_sorted[axis].to_numpy()
        assert value(table, "utterance", axis, "LCC") == pytest.approx(stats.pearsonr(p, y).statistic, abs=1e-12)
        assert value(table, "utterance", axis, "SRCC") == pytest.approx(stats.spearmanr(p, y).statistic, abs=1e-12)
        assert value(table, "utterance", axis, "KTAU") == pytest.approx(stats.kendalltau(p, y).statistic, abs=1e-12)
        assert value(table, "utterance", axis, "MSE") == pytest.approx(np.mean((p - y) ** 2), rel=1e-12)
    pc = p_sorted.select(AXES).to_numpy().mean(axis=1)
    yc = t_sorted.select(AXES).to_numpy().mean(axis=1)
    assert value(table, "utterance", "composite", "MSE") == pytest.approx(np.mean((pc - yc) ** 2), rel=1e-12)
    assert value(table, "utterance", "composite", "SRCC") == pytest.approx(stats.spearmanr(pc, yc).statistic, abs=1e-12)
    # System level of the composite: per-system means of the per-clip composite.
    systems = t_sorted["system"].to_numpy()
    names = sorted(set(systems))
    ps = np.array([pc[systems == s].mean() for s in names])
    ys = np.array([yc[systems == s].mean() for s in names])
    assert value(table, "system", "composite", "LCC") == pytest.approx(stats.pearsonr(ps, ys).statistic, abs=1e-12)
    assert value(table, "system", "composite", "MSE") == pytest.approx(np.mean((ps - ys) ** 2), rel=1e-12)


def test_missing_ids_are_reported_both_ways_and_overlap_is_scored() -> None:
    pred, truth = random_tables(n=30, seed=2)
    pred = pred.filter(~pl.col("clip_id").is_in(["c003", "c010"]))
    extra = pl.DataFrame({"clip_id": ["zz1", "zz0"], **{a: [1.0, 2.0] for a in AXES}})
    pred = pl.concat([pred, extra])
    ev = evaluate(pred, truth, "dev")
    assert ev.missing_in_pred == ("c003", "c010")
    assert ev.missing_in_truth == ("zz1", "zz0")
    assert (ev.n_pred, ev.n_truth, ev.n_matched) == (30, 30, 28)
    common = truth.filter(~pl.col("clip_id").is_in(["c003", "c010"]))
    p = pred.filter(pl.col("clip_id").is_in(common["clip_id"].implode()))
    assert value(ev.table, "utterance", "PQ", "SRCC") == pytest.approx(
        stats.spearmanr(p["PQ"].to_numpy(), common["PQ"].to_numpy()).statistic, abs=1e-12
    )
    assert value_n(ev.table, "utterance", "PQ") == 28
    text = "\n".join(ev.summary_lines())
    assert "2 truth clips have no prediction (first: c003, c010)" in text
    assert "2 predicted clips are not in the truth (first: zz1, zz0)" in text


def value_n(table: pl.DataFrame, level: str, axis: str) -> int:
    ns = table.filter((pl.col("level") == level) & (pl.col("axis") == axis))["n"].unique().to_list()
    assert len(ns) == 1
    return ns[0]


@pytest.mark.parametrize("how", ["no column", "all null"])
def test_no_system_ids_gives_system_level_na(how: str) -> None:
    pred, truth = random_tables()
    truth = truth.drop("system") if how == "no column" else truth.with_columns(pl.lit(None, dtype=pl.String).alias("system"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no spurious warnings for the absent level
        ev = evaluate(pred, truth, "nosys")
    sys_rows = ev.table.filter(pl.col("level") == "system")
    assert sys_rows.height == 20
    assert sys_rows["n"].to_list() == [0] * 20
    assert sys_rows["value"].is_nan().all()
    assert not ev.has_systems and ev.n_systems == 0
    utt = ev.table.filter(pl.col("level") == "utterance")
    assert not utt["value"].is_nan().any()
    md = format_markdown(ev.table)
    system_block = md.split("**nosys — system level**")[1]
    assert system_block.count("n/a") == 5 * 5  # n and 4 metrics for each of the 5 axes
    assert "system level: n/a" in "\n".join(ev.summary_lines())


def test_clips_without_system_are_left_out_of_system_level_and_counted() -> None:
    pred, truth = random_tables(n=40, seed=7)
    no_sys = ["c000", "c005", "c011"]
    truth_partial = truth.with_columns(
        pl.when(pl.col("clip_id").is_in(no_sys)).then(None).otherwise(pl.col("system")).alias("system")
    )
    ev = evaluate(pred, truth_partial)
    assert ev.has_systems and ev.n_without_system == 3 and ev.n_systems == 5
    # Same numbers as scoring only the clips that have a system id.
    keep = ~pl.col("clip_id").is_in(no_sys)
    ref = evaluate(pred.filter(keep), truth.filter(keep)).table
    got = ev.table.filter(pl.col("level") == "system")
    exp = ref.filter(pl.col("level") == "system")
    assert got["value"].to_list() == pytest.approx(exp["value"].to_list(), abs=1e-12)
    # The utterance level still uses every clip.
    assert value_n(ev.table, "utterance", "PQ") == 40
    assert "3 clips without a system id" in "\n".join(ev.summary_lines())


def test_null_labels_are_excluded_per_axis_and_counted() -> None:
    pred, truth = random_tables(n=30, seed=3)
    truth = truth.with_columns(
        pl.when(pl.col("clip_id") == "c001").then(None).otherwise(pl.col("PQ")).alias("PQ"),
        pl.when(pl.col("clip_id").is_in(["c002", "c003"])).then(float("nan")).otherwise(pl.col("CE")).alias("CE"),
    )
    ev = evaluate(pred, truth)
    assert ev.excluded_labels == {"PQ": 1, "PC": 0, "CE": 2, "CU": 0, "composite": 3}
    assert value_n(ev.table, "utterance", "PQ") == 29
    assert value_n(ev.table, "utterance", "PC") == 30
    assert value_n(ev.table, "utterance", "CE") == 28
    assert value_n(ev.table, "utterance", "composite") == 27
    kept = truth.filter(pl.col("clip_id") != "c001")
    p = pred.filter(pl.col("clip_id") != "c001")
    assert value(ev.table, "utterance", "PQ", "LCC") == pytest.approx(
        stats.pearsonr(p["PQ"].to_numpy(), kept["PQ"].to_numpy()).statistic, abs=1e-12
    )


def test_constant_predictions_give_nan_and_a_warning_not_a_crash() -> None:
    pred, truth = random_tables()
    pred = pred.with_columns(pl.lit(5.0).alias("PC"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = evaluate(pred, truth, "const")
    messages = [str(w.message) for w in caught if issubclass(w.category, UndefinedMetricWarning)]
    # One warning per (level, axis), naming both, not one per metric.
    assert len(messages) == 2
    assert "utterance level, PC" in messages[0] and "system level, PC" in messages[1]
    assert all("predictions are constant" in m for m in messages)
    for level in LEVELS:
        assert math.isnan(value(ev.table, level, "PC", "LCC"))
        assert math.isnan(value(ev.table, level, "PC", "SRCC"))
        assert math.isnan(value(ev.table, level, "PC", "KTAU"))
        assert not math.isnan(value(ev.table, level, "PC", "MSE"))
        assert not math.isnan(value(ev.table, level, "PQ", "LCC"))
    assert any("PC" in n for n in ev.notes)
    assert "| PC | 40 | " in format_markdown(ev.table) and "NaN" in format_markdown(ev.table)


def test_single_system_gives_nan_correlations_at_system_level() -> None:
    pred, truth = random_tables(n_systems=1)
    with pytest.warns(UndefinedMetricWarning, match="at least 2 pairs"):
        ev = evaluate(pred, truth)
    assert value_n(ev.table, "system", "PQ") == 1
    assert math.isnan(value(ev.table, "system", "PQ", "SRCC"))
    assert not math.isnan(value(ev.table, "system", "PQ", "MSE"))


def test_evaluate_rejects_bad_input() -> None:
    pred, truth = random_tables(n=10)
    with pytest.raises(ValueError, match="more than once"):
        evaluate(pl.concat([pred, pred.head(1)]), truth)
    with pytest.raises(ValueError, match="more than once"):
        evaluate(pred, pl.concat([truth, truth.head(1)]))
    with pytest.raises(ValueError, match="null/NaN score"):
        evaluate(pred.with_columns(pl.when(pl.col("clip_id") == "c002").then(float("nan")).otherwise(pl.col("CU")).alias("CU")), truth)
    with pytest.raises(ValueError, match="share no clip ids"):
        evaluate(pred.with_columns(pl.col("clip_id") + "_x"), truth)
    with pytest.raises(ValueError, match="missing columns"):
        evaluate(pred.drop("CE"), truth)
    with pytest.raises(ValueError, match="no labels"):
        evaluate(pred, truth.with_columns(*[pl.lit(None, dtype=pl.Float64).alias(a) for a in AXES]))


# --- presentation ----------------------------------------------------------------------------------


def test_wide_table_and_markdown() -> None:
    pred, truth = random_tables()
    long_a = evaluate(pred, truth, "dev").table
    long_b = evaluate(pred, truth.drop("system"), "pam").table
    long_df = pl.concat([long_a, long_b])
    wide = wide_table(long_df)
    assert wide.select("set", "level").rows() == [("dev", "utterance"), ("dev", "system"), ("pam", "utterance"), ("pam", "system")]
    metric_cols = [f"{a}_{m}" for a in ALL_AXES for m in METRICS]
    assert wide.columns == ["set", "level", *metric_cols, *[f"{a}_n" for a in ALL_AXES]]
    assert wide.row(0, named=True)["CE_KTAU"] == value(long_a, "utterance", "CE", "KTAU")
    assert wide.row(1, named=True)["composite_n"] == 5
    assert wide.row(3, named=True)["PQ_n"] == 0

    md = format_markdown(long_df, digits=4)
    assert md.count("| axis | n | MSE | LCC | SRCC | KTAU |") == 4
    pq_srcc = value(long_a, "utterance", "PQ", "SRCC")
    assert f"| PQ | 40 | {value(long_a, 'utterance', 'PQ', 'MSE'):.4f} | " in md
    assert f"{pq_srcc:.4f}" in md
