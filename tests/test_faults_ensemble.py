"""Fault injection for ensembles, report and scoring: order-free system ties, damaged files end in one line.

Each test here failed before its fix: system means were an order-dependent float sum (tied systems split at
random), and a damaged Parquet/answer file or a missing run folder ended in a traceback.
"""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from test_ensemble import make_fake_sweep  # pytest puts tests/ on the path

from mmmos import ensemble as se
from mmmos.app import ensemble_cmd
from mmmos.app.cli import main as mmmos_main
from mmmos.core.errors import UserError
from mmmos.core.metrics import METRIC_REGISTRY, evaluate, system_means

AXES = ("PQ", "PC", "CE", "CU")


# ---------------------------------------------------------------------------------------------
# system-level ties
# ---------------------------------------------------------------------------------------------
def _tied_case() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Systems A and B have equal mean predictions (0.1+0.2+0.3 vs 0.3+0.2+0.1: a running sum differs in
    the last bit), C and D differ; labels give every system a distinct mean."""
    preds = {"A": [0.1, 0.2, 0.3], "B": [0.3, 0.2, 0.1], "C": [0.5, 0.5, 0.5], "D": [0.05, 0.05, 0.05]}
    labels = {"A": [5.0, 5.0, 5.0], "B": [6.0, 6.0, 6.0], "C": [7.0, 7.0, 7.0], "D": [1.0, 2.0, 3.0]}
    ids, systems, p, y = [], [], [], []
    for s in preds:
        for k in range(3):
            ids.append(f"{s}-utt{k}")
            systems.append(s)
            p.append(preds[s][k])
            y.append(labels[s][k] + 0.01 * k)
    pred = pl.DataFrame({"clip_id": ids, **{a: p for a in AXES}})
    truth = pl.DataFrame({"clip_id": ids, "system": systems, **{a: y for a in AXES}})
    return pred, truth


def test_system_means_are_exact_and_row_order_free():
    pred, truth = _tied_case()
    df = truth.join(pred, on="clip_id", suffix="_p").select("system", "PQ_p", "PQ")
    means = system_means(df, ["PQ_p"], ["PQ"])
    assert means["system"].to_list() == ["A", "B", "C", "D"]
    assert means["PQ_p"][0] == means["PQ_p"][1]  # tie kept exactly
    for seed in range(20):
        again = system_means(df.sample(fraction=1.0, shuffle=True, seed=seed), ["PQ_p"], ["PQ"])
        assert again.equals(means)


def test_shuffled_rows_give_bit_identical_metrics_equal_to_a_hand_computation():
    pred, truth = _tied_case()
    base = evaluate(pred, truth, "t").table
    for seed in range(20):
        p2 = pred.sample(fraction=1.0, shuffle=True, seed=seed)
        t2 = truth.sample(fraction=1.0, shuffle=True, seed=100 + seed)
        got = evaluate(p2, t2, "t").table
        assert got["value"].to_list() == base["value"].to_list()  # bit for bit (NaN-free here)
    # by hand: system means with the tie (A = B = 0.2), labels 5.01, 6.01, 7.01, 2.01
    p_sys = np.array([0.2, 0.2, 0.5, 0.05])
    y_sys = np.array([5.01, 6.01, 7.01, 2.01])
    row = base.filter((pl.col("level") == "system") & (pl.col("axis") == "PQ"))
    look = dict(zip(row["metric"], row["value"]))
    assert look["SRCC"] == pytest.approx(stats.spearmanr(p_sys, y_sys).statistic, abs=1e-12)
    assert look["KTAU"] == pytest.approx(stats.kendalltau(p_sys, y_sys).statistic, abs=1e-12)
    assert look["SRCC"] == pytest.approx(0.9486832980505138, abs=1e-12)  # ranks (1.5, 1.5, 3, ... ) by hand


def test_metric_registry_directions_drive_ranking(tmp_path):
    assert {n: m.higher_is_better for n, m in METRIC_REGISTRY.items()} == {
        "MSE": False, "LCC": True, "SRCC": True, "KTAU": True}
    sw = se.load_sweep(make_fake_sweep(tmp_path))
    for name, m in METRIC_REGISTRY.items():
        values = [v for _, v in se.rank(sw, "pam_dev", metric=name) if not np.isnan(v)]
        assert values == sorted(values, reverse=m.higher_is_better)


def test_command_default_strategies_match_the_stage():
    assert tuple(ensemble_cmd.DEFAULT_STRATEGIES.split(",")) == se.DEFAULT_STRATEGIES


# ---------------------------------------------------------------------------------------------
# damaged files and missing folders: one line, exit 2
# ---------------------------------------------------------------------------------------------
def _one_error_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    for n in needles:
        assert n in err, err
    return err


@pytest.mark.parametrize("target", ["predictions/dev.parquet", "metrics.parquet"])
def test_corrupt_parquet_in_a_run_is_one_line(tmp_path, capsys, target):
    run = make_fake_sweep(tmp_path)
    f = run / "configs" / "c_b" / target
    f.write_bytes(b"PAR1 this is not parquet\n\x00\x01garbage")
    with pytest.raises(UserError, match="c_b"):
        se.load_sweep(run)
    assert mmmos_main(["ensemble", str(run), "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capsys, str(f), "not a readable Parquet file")


def test_missing_run_folder_is_one_line(tmp_path, capsys):
    assert mmmos_main(["ensemble", str(tmp_path / "nope")]) == 2
    _one_error_line(capsys, "nope", "no such run folder")
    assert mmmos_main(["report", str(tmp_path / "nope")]) == 2
    _one_error_line(capsys, "nope")


def test_corrupt_ensemble_outputs_for_report_are_one_line(tmp_path, capsys):
    run = make_fake_sweep(tmp_path)
    se.run_ensembles(run)
    (run / "ensembles" / "table_iv.parquet").write_bytes(b"garbage")
    assert mmmos_main(["report", str(run)]) == 2
    _one_error_line(capsys, "table_iv.parquet", "not a readable Parquet file")
    (run / "ensembles" / "members.json").write_text("{not json")
    assert mmmos_main(["report", str(run)]) == 2
    _one_error_line(capsys, "members.json")


def _truth_csv(tmp_path):
    t = pl.DataFrame({"clip_id": ["a", "b", "c"], "system": ["s1", "s2", "s3"],
                      **{a: [1.0, 2.0, 3.0] for a in AXES}})
    t.write_csv(tmp_path / "truth.csv")
    return tmp_path / "truth.csv"


@pytest.mark.parametrize("name,content,needle", [
    ("pred.parquet", b"PAR1garbagePAR1", "not a readable Parquet file"),
    ("answer.txt", b"a,1,2,3,4\nb,1,2\n", "5 fields"),
    ("answer.txt", b"\xff\xfe\x00binary", "not UTF-8"),
])
def test_corrupt_prediction_files_for_score_are_one_line(tmp_path, capsys, name, content, needle):
    truth = _truth_csv(tmp_path)
    f = tmp_path / name
    f.write_bytes(content)
    assert mmmos_main(["score", "--pred", str(f), "--truth", str(truth)]) == 2
    _one_error_line(capsys, str(f), needle)


def test_corrupt_truth_parquet_for_score_and_ensemble_is_one_line(tmp_path, capsys):
    bad = tmp_path / "t.parquet"
    bad.write_bytes(b"garbage")
    ans = tmp_path / "a.txt"
    ans.write_text("a,1,2,3,4\n")
    assert mmmos_main(["score", "--pred", str(ans), "--truth", str(bad)]) == 2
    _one_error_line(capsys, str(bad), "not a readable Parquet file")
    (tmp_path / "r").mkdir()
    run = make_fake_sweep(tmp_path / "r")
    assert mmmos_main(["ensemble", str(run), "--truth", f"dev={bad}", "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capsys, "labels for set 'dev'", str(bad))
