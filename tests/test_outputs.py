"""mmmos.core.outputs: output paths refused before the work, files replaced whole."""
from __future__ import annotations

import pytest

from mmmos.core.errors import UserError
from mmmos.core.outputs import check_output_file, replace_whole


def test_paths_that_cannot_take_a_file_are_user_errors(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    for bad in (tmp_path / "d", tmp_path / "f" / "out.csv", tmp_path / "f" / "sub" / "out.csv"):
        with pytest.raises(UserError, match="--out"):
            check_output_file(bad)
    ok = check_output_file(tmp_path / "new" / "deeper" / "out.csv")
    assert ok.parent.is_dir() and list(ok.parent.iterdir()) == []  # the probe leaves nothing


def test_an_interrupted_write_keeps_the_old_file_whole(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old,complete\n")

    def half_then_ctrl_c(tmp):
        tmp.write_text("new,par")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replace_whole(target, half_then_ctrl_c)
    assert target.read_text() == "old,complete\n" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    replace_whole(target, lambda tmp: tmp.write_text("new,complete\n"))
    assert target.read_text() == "new,complete\n" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_score_refuses_an_unwritable_out_in_one_line(tmp_path, run_cli):
    pred, truth = tmp_path / "pred.txt", tmp_path / "truth.csv"
    pred.write_text("a,1,2,3,4\nb,2,3,4,5\nc,3,4,5,6\n")
    truth.write_text("clip_id,PQ,PC,CE,CU\na,1,2,3,4\nb,2,3,4,5\nc,3,4,5,7\n")
    (tmp_path / "m.csv").mkdir()
    rc, _, err = run_cli(["score", "--pred", pred, "--truth", truth, "--out", tmp_path / "m.csv"])
    assert rc == 2 and err.strip() == f"mmmos score: error: --out {tmp_path / 'm.csv'}: is a folder; give a file name"
    rc, _, err = run_cli(["score", "--pred", pred, "--truth", truth, "--out", tmp_path / "ok.csv"])
    assert rc == 0 and (tmp_path / "ok.csv").read_text().startswith("set,level,axis,metric,value,n")
