"""Official system-level truth (issue 18): MusicEval's system_mos_phase1.csv replaces the clip-label means at
system level; a hand-worked example where the two disagree."""
from __future__ import annotations

import math

import pytest

from mmmos.app.cli import main
from mmmos.core.system_truth import is_system_table, read_system_truth
from mmmos.core.truth import TruthFileError

P = "audiomos2025-track1-"
# clip labels (overall, textual) and predictions, two clips per system
CLIPS = {"S001_P001": ((1.0, 3.0), (1.2, 3.0)), "S001_P002": ((2.0, 4.0), (1.8, 3.0)),
         "S002_P003": ((3.0, 2.0), (3.6, 2.0)), "S002_P004": ((4.0, 3.0), (3.4, 2.2)),
         "S003_P005": ((2.0, 4.0), (2.4, 4.0)), "S003_P006": ((3.0, 5.0), (2.6, 4.4))}
# official means: MI ranks the systems the other way round from the clip-label means; S004 has no clips here
OFFICIAL = "SYS,overall,textual\nS001,4.0,3.5\nS002,2.0,2.5\nS003,3.0,4.5\nS004,3.3,3.3\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "dev_mos_list.txt").write_text("".join(f"{P}{c}.wav,{y[0]},{y[1]}\n" for c, (y, _) in CLIPS.items()))
    (tmp_path / "answer.txt").write_text("".join(f"{P}{c},{p[0]:.8f},{p[1]:.8f}\n" for c, (_, p) in CLIPS.items()))
    (tmp_path / "system_mos_phase1.csv").write_text(OFFICIAL)
    return tmp_path


def _table(path):
    import polars as pl

    t = pl.read_csv(path)
    return {(r["level"], r["axis"], r["metric"]): (r["value"], r["n"]) for r in t.iter_rows(named=True)}


def test_hand_worked_system_figures_against_the_official_means(files, capsys):
    # System prediction means: MI S001 1.5, S002 3.5, S003 2.5; TA 3.0, 2.1, 4.2.
    # Clip-label means MI 1.5, 3.5, 2.5 (same order: system SRCC 1); official MI 4.0, 2.0, 3.0 (reversed: -1).
    assert main(["score", "--task", "track1", "--pred", str(files / "answer.txt"), "--truth",
                 str(files / "dev_mos_list.txt"), "--out", str(files / "clip.csv")]) == 0
    clip = _table(files / "clip.csv")
    assert clip[("system", "MI", "SRCC")] == (pytest.approx(1.0), 3)
    assert main(["score", "--task", "track1", "--pred", str(files / "answer.txt"), "--truth",
                 str(files / "dev_mos_list.txt"), "--system-truth", str(files / "system_mos_phase1.csv"),
                 "--out", str(files / "off.csv")]) == 0
    out = capsys.readouterr().out
    assert "official means" in out and "S004" in out
    off = _table(files / "off.csv")
    assert off[("system", "MI", "SRCC")] == (pytest.approx(-1.0), 3)
    assert off[("system", "MI", "LCC")][0] == pytest.approx(-1.0)
    assert off[("system", "MI", "KTAU")][0] == pytest.approx(-1.0)
    assert off[("system", "MI", "MSE")][0] == pytest.approx((2.5 ** 2 + 1.5 ** 2 + 0.5 ** 2) / 3)
    # TA: predictions 3.0, 2.1, 4.2 vs official 3.5, 2.5, 4.5 -> same order; centred (-.1, -1, 1.1) . (0, -1, 1)
    assert off[("system", "TA", "SRCC")][0] == pytest.approx(1.0)
    assert off[("system", "TA", "LCC")][0] == pytest.approx(2.1 / math.sqrt(2.22 * 2))
    assert off[("system", "TA", "MSE")][0] == pytest.approx((0.5 ** 2 + 0.4 ** 2 + 0.3 ** 2) / 3)
    # composite: predictions (MI+TA)/2 = 2.25, 2.8, 3.35 vs official 3.75, 2.25, 3.75
    assert off[("system", "composite", "MSE")][0] == pytest.approx((1.5 ** 2 + 0.55 ** 2 + 0.4 ** 2) / 3)
    # the utterance level still comes from the clip labels
    assert off[("utterance", "MI", "MSE")] == clip[("utterance", "MI", "MSE")]


def test_the_official_file_alone_as_truth(files, capsys):
    assert main(["score", "--task", "track1", "--pred", str(files / "answer.txt"), "--truth",
                 str(files / "system_mos_phase1.csv"), "--out", str(files / "o.csv")]) == 0
    t = _table(files / "o.csv")
    assert t[("system", "MI", "SRCC")] == (pytest.approx(-1.0), 3)  # systems from the clip ids
    assert t[("utterance", "MI", "SRCC")][1] == 0 and math.isnan(t[("utterance", "MI", "SRCC")][0])


def test_recognition_and_errors(files, capsys):
    off = files / "system_mos_phase1.csv"
    assert is_system_table(off, "track1") and not is_system_table(files / "dev_mos_list.txt", "track1")
    assert not is_system_table(off, "track2")  # PQ..CU are not its columns
    assert read_system_truth(off, "track1")["MI"].to_list() == [4.0, 2.0, 3.0, 3.3]
    bad = files / "bad.csv"
    bad.write_text("SYS,overall,textual\nS001,4.0,x\n")
    with pytest.raises(TruthFileError, match="textual"):
        read_system_truth(bad, "track1")
    assert main(["score", "--task", "track1", "--pred", str(files / "answer.txt"), "--truth",
                 str(files / "dev_mos_list.txt"), "--system-truth", str(files / "dev_mos_list.txt")]) == 2
    assert "not a system table" in capsys.readouterr().err
