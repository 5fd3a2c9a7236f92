"""Tests for mmmos.scoring: answer files, prediction/truth readers, score(), the `mmmos score` runner."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from mmmos.core.manifests import read_answer_file, write_answer_file
from mmmos.core.metrics import ALL_AXES, AXES, LEVELS, METRICS, evaluate
from mmmos.app.scoring import main_score, read_predictions, read_truth, score, write_metrics

HAND_ANSWER = (
    "audiomos2025-track2-sys0001-utt0001,7.5,3,6.25,5.0\n"
    "audiomos2025-track2-sys0001-utt0002,2,4.5,1e0,0\n"
    "\n"
    '"PAM/human_eval/audio/gen, v2/a clip.wav",10,9.99,8,7\n'
)
HAND_EXPECTED = {
    "clip_id": [
        "audiomos2025-track2-sys0001-utt0001",
        "audiomos2025-track2-sys0001-utt0002",
        "PAM/human_eval/audio/gen, v2/a clip.wav",
    ],
    "PQ": [7.5, 2.0, 10.0],
    "PC": [3.0, 4.5, 9.99],
    "CE": [6.25, 1.0, 8.0],
    "CU": [5.0, 0.0, 7.0],
}


# --- answer files and prediction readers ---------------------------------------------------------


def test_hand_written_answer_file_is_read_without_header(tmp_path: Path) -> None:
    f = tmp_path / "answer.txt"
    f.write_text(HAND_ANSWER)
    df = read_predictions(f)
    assert df.columns == ["clip_id", *AXES]
    assert df.to_dict(as_series=False) == HAND_EXPECTED  # first line kept as data, not taken for a header
    assert read_answer_file(f).to_dict(as_series=False) == HAND_EXPECTED


def test_answer_file_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ids = ["a", "b c", "PAM/human_eval/music/x y/1.wav", "audiomos2025-track2-sys0002-utt0009"]
    pred = pl.DataFrame({"clip_id": ids, **{a: rng.uniform(0, 10, 4) for a in AXES}})
    f = tmp_path / "answer.txt"
    write_answer_file(pred, f)
    lines = f.read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("a,") and lines[0].count(",") == 4
    back = read_predictions(f)
    assert back["clip_id"].to_list() == ids
    for a in AXES:  # exact: shortest round-trip float repr
        assert back[a].to_list() == pred[a].to_list()
    # Reading and writing again gives the same bytes.
    g = tmp_path / "again.txt"
    write_answer_file(back, g)
    assert g.read_bytes() == f.read_bytes()


def test_headed_csv_bom_and_parquet_predictions(tmp_path: Path) -> None:
    headed = tmp_path / "pred.csv"
    body = "".join(
        f'"{i}",{pq},{pc},{ce},{cu}\n' for i, pq, pc, ce, cu in zip(*HAND_EXPECTED.values())
    )
    headed.write_text("\ufeffwavID,PQ,PC,CE,CU\n" + body, encoding="utf-8")
    assert read_predictions(headed).to_dict(as_series=False) == HAND_EXPECTED

    long_names = tmp_path / "long.csv"
    long_names.write_text(
        "sample_id,Production_Quality,Production_Complexity,Content_Enjoyment,Content_Usefulness,extra\n"
        "007,1,2,3,4,x\n"
    )
    df = read_predictions(long_names)
    assert df.row(0) == ("007", 1.0, 2.0, 3.0, 4.0)  # ids stay strings (leading zeros kept)

    pq = tmp_path / "pred.parquet"
    pl.DataFrame({**HAND_EXPECTED, "system": ["s"] * 3, "domain": ["speech"] * 3}).write_parquet(pq)
    assert read_predictions(pq).to_dict(as_series=False) == HAND_EXPECTED


@pytest.mark.parametrize(
    "content,match",
    [
        ("a,1,2,3,4\nb,1,2,3\n", r"answer\.txt:2: .*5 fields"),
        ("a,1,2,3,4\nb,1,2,x,4\n", r"answer\.txt:2: .*CE"),
        ("a,1,2,3,4\nb,1,nan,3,4\n", r"answer\.txt:2: .*PC"),
        ("a,1,2,3,4\nb,1,inf,3,4\n", r"answer\.txt:2: .*PC"),
        ("a,1,2,3,4\n\na,1,2,3,4\n", r"answer\.txt:3: .*'a'"),
        ("a,b,1,2,3,4\n", r"answer\.txt:1: .*5 fields"),  # an unquoted comma in an id
        ("\n\n", "empty"),
        ("clip_id,PQ,PC,CE\na,1,2,3\n", "no CU column"),
        ("clip_id,PQ,PC,CE,CU\na,1,2,,4\n", "missing or non-finite"),
        ("clip_id,PQ,PC,CE,CU\na,1,2,bad,4\n", "non-numeric"),
        ("name,PQ,PC,CE,CU\na,1,2,3,4\n", "no clip id column"),
    ],
)
def test_bad_prediction_files_are_errors_naming_the_file(tmp_path: Path, content: str, match: str) -> None:
    f = tmp_path / "answer.txt"
    f.write_text(content)
    with pytest.raises(ValueError, match=match) as e:
        read_predictions(f)
    assert "answer.txt" in str(e.value)


def test_missing_prediction_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_predictions(tmp_path / "nope.txt")


def test_write_answer_file_refuses_non_finite(tmp_path: Path) -> None:
    pred = pl.DataFrame({"clip_id": ["a"], **{a: [float("nan") if a == "PC" else 1.0] for a in AXES}})
    with pytest.raises(ValueError, match="non-finite"):
        write_answer_file(pred, tmp_path / "x.txt")


# --- truth and scoring -----------------------------------------------------------------------------


def make_pair(tmp_path: Path, n: int = 24, systems: bool = True, seed: int = 0) -> tuple[Path, Path, pl.DataFrame, pl.DataFrame]:
    """A truth Parquet (with or without systems) and a matching answer file."""
    rng = np.random.default_rng(seed)
    ids = [f"audiomos2025-track2-sys{i % 4:04d}-utt{i:05d}" for i in range(n)]
    labels = {a: rng.integers(0, 101, n) / 10.0 for a in AXES}
    truth = pl.DataFrame({"clip_id": ids, **labels})
    if systems:
        truth = truth.with_columns(pl.Series("system", [f"sys{i % 4:04d}" for i in range(n)]))
    pred = pl.DataFrame({"clip_id": ids, **{a: np.clip(labels[a] + rng.normal(0, 1.0, n), 0, 10) for a in AXES}})
    truth_path = tmp_path / "truth.parquet"
    truth.write_parquet(truth_path)
    pred_path = tmp_path / "answer.txt"
    write_answer_file(pred, pred_path)
    return pred_path, truth_path, pred, truth


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_score_writes_long_form(tmp_path: Path, ext: str) -> None:
    pred_path, truth_path, pred, truth = make_pair(tmp_path)
    out = tmp_path / "out" / f"metrics.{ext}"
    ev = score(pred_path, truth_path, out)
    table = pl.read_csv(out) if ext == "csv" else pl.read_parquet(out)
    assert table.columns == ["set", "level", "axis", "metric", "value", "n"]
    assert table.height == 2 * 5 * 4
    assert table.select("level", "axis", "metric").rows() == [(lv, a, m) for lv in LEVELS for a in ALL_AXES for m in METRICS]
    assert set(table["set"]) == {"truth"}
    assert table["value"].to_list() == pytest.approx(ev.table["value"].to_list(), abs=1e-12)
    # Independent check of one utterance-level and one system-level number.
    p, y = pred["PQ"].to_numpy(), truth["PQ"].to_numpy()
    row = table.filter((pl.col("level") == "utterance") & (pl.col("axis") == "PQ") & (pl.col("metric") == "KTAU"))
    assert row["value"][0] == pytest.approx(stats.kendalltau(p, y).statistic, abs=1e-12)
    sys_ids = truth["system"].to_numpy()
    names = sorted(set(sys_ids))
    ps = [p[sys_ids == s].mean() for s in names]
    ys = [y[sys_ids == s].mean() for s in names]
    row = table.filter((pl.col("level") == "system") & (pl.col("axis") == "PQ") & (pl.col("metric") == "LCC"))
    assert row["value"][0] == pytest.approx(stats.pearsonr(ps, ys).statistic, abs=1e-12)
    assert row["n"][0] == 4


def test_score_without_systems_reports_system_level_na(tmp_path: Path) -> None:
    pred_path, truth_path, _, _ = make_pair(tmp_path, systems=False)
    out = tmp_path / "m.csv"
    ev = score(pred_path, truth_path, out, set_name="nosys")
    table = pl.read_csv(out)
    sys_rows = table.filter(pl.col("level") == "system")
    assert sys_rows.height == 20 and sys_rows["n"].to_list() == [0] * 20
    assert all(v is None or math.isnan(v) for v in sys_rows["value"].to_list())
    assert not ev.has_systems


def test_write_metrics_rejects_unknown_extension(tmp_path: Path) -> None:
    pred_path, truth_path, _, _ = make_pair(tmp_path)
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        write_metrics(score(pred_path, truth_path).table, tmp_path / "m.json")


def test_cli_prints_grid_counts_and_missing_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred_path, truth_path, pred, truth = make_pair(tmp_path)
    # Drop two predictions and add one unknown clip.
    partial = pl.concat([pred.slice(2), pl.DataFrame({"clip_id": ["stray"], **{a: [5.0] for a in AXES}})])
    write_answer_file(partial, pred_path)
    out = tmp_path / "m.parquet"
    code = main_score(["--pred", str(pred_path), "--truth", str(truth_path), "--out", str(out), "--set-name", "dev"])
    text = capsys.readouterr().out
    assert code == 0
    assert "clips: truth 24, predictions 23, matched 22" in text
    assert f"2 truth clips have no prediction (first: {truth['clip_id'][0]}, {truth['clip_id'][1]})" in text
    assert "1 predicted clips are not in the truth (first: stray)" in text
    assert "**dev — utterance level**" in text and "**dev — system level**" in text
    assert text.count("| composite |") == 2
    expected = evaluate(partial, truth, "dev").table
    srcc = expected.filter((pl.col("level") == "utterance") & (pl.col("axis") == "CU") & (pl.col("metric") == "SRCC"))["value"][0]
    assert f"| CU | 22 | " in text and f"{srcc:.3f}" in text
    assert pl.read_parquet(out).height == 40

    assert main_score(["--pred", str(pred_path), "--truth", str(truth_path), "--strict"]) == 1


def test_cli_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred_path, truth_path, _, _ = make_pair(tmp_path)
    assert main_score(["--pred", str(tmp_path / "missing.txt"), "--truth", str(truth_path)]) == 2
    assert "missing.txt" in capsys.readouterr().err
    assert main_score(["--pred", str(pred_path), "--truth", str(truth_path), "--out", str(tmp_path / "m.txt")]) == 2


def test_cli_without_systems_prints_na(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred_path, truth_path, _, _ = make_pair(tmp_path, systems=False)
    assert main_score(["--pred", str(pred_path), "--truth", str(truth_path)]) == 0
    text = capsys.readouterr().out
    assert "system level: n/a (the truth has no system ids)" in text
    assert "| PQ | n/a | n/a | n/a | n/a | n/a |" in text


# --- truth files ------------------------------------------------------------------------------------

TRACK2_HEADER = "sample_id,data_path,Production_Quality,Production_Complexity,Content_Enjoyment,Content_Usefulness\n"


def test_truth_from_track2_list(tmp_path: Path) -> None:
    f = tmp_path / "audiomos2025-track2-dev_list.csv"
    f.write_text(
        "\ufeff" + TRACK2_HEADER
        + '"speech_0001","/your_path/EARS/p001/a, b.wav",7.1,2.0,5.5,6.0\n'
        + '"music_0002","/your_path/MUSDB18/x y/mix.flac",8.3,6.1,7.7,7.9\n',
        encoding="utf-8",
    )
    truth = read_truth(f)
    assert truth.columns == ["clip_id", "system", *AXES]
    assert truth["clip_id"].to_list() == ["speech_0001", "music_0002"]
    assert truth["PQ"].to_list() == [7.1, 8.3] and truth["CU"].to_list() == [6.0, 7.9]


def test_truth_from_aes_jsonl_with_sys_tokens(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    f = tmp_path / "eval.jsonl"
    ratings = {}
    with f.open("w") as fh:
        for s in range(3):
            for u in range(2 + s):  # unequal clips per system
                cid = f"audiomos2025-track2-sys{s:05d}-utt{u:05d}"
                r = {k: rng.integers(0, 11, 10).tolist() for k in
                     ("Production_Quality", "Production_Complexity", "Content_Enjoyment", "Content_Usefulness")}
                ratings[cid] = r
                fh.write(json.dumps({"data_path": cid, **r}) + "\n")
    truth = read_truth(f)
    assert truth["clip_id"].to_list() == list(ratings)
    assert truth["system"].to_list() == [cid.split("-")[2] for cid in ratings]
    assert truth["PQ"].to_list() == pytest.approx([np.mean(r["Production_Quality"]) for r in ratings.values()])
    # And end to end: the system level has 3 systems.
    pred = pl.DataFrame({"clip_id": list(ratings), **{a: rng.uniform(0, 10, len(ratings)) for a in AXES}})
    pred_path = tmp_path / "answer.txt"
    write_answer_file(pred, pred_path)
    ev = score(pred_path, f)
    assert ev.n_systems == 3 and ev.n_matched == len(ratings)


def test_truth_from_plain_csv_manifest_and_clip_table(tmp_path: Path) -> None:
    manifest = tmp_path / "mine.csv"
    manifest.write_text(
        "path,PQ,PC,CE,CU,system\n"
        "a.wav,1,2,3,4,gen1\n"
        "b.wav,5,,7,8,gen2\n"  # PC label absent: kept as null, not an error
    )
    truth = read_truth(manifest)
    assert truth["system"].to_list() == ["gen1", "gen2"]
    assert truth["PC"].to_list() == [2.0, None]
    assert truth.height == 2

    table = tmp_path / "labels.csv"
    table.write_text("clip_id,system,PQ,PC,CE,CU\nx1,s1,1,2,3,4\nx2,,5,6,7,8\n")
    truth = read_truth(table)
    assert truth.rows() == [("x1", "s1", 1.0, 2.0, 3.0, 4.0), ("x2", None, 5.0, 6.0, 7.0, 8.0)]

    dup = tmp_path / "dup.csv"
    dup.write_text("clip_id,PQ,PC,CE,CU\nx1,1,2,3,4\nx1,5,6,7,8\n")
    with pytest.raises(ValueError, match=r"dup\.csv: 1 clip ids occur more than once"):
        read_truth(dup)
