"""The submission archive (issue 18): the answer step also writes the zip the challenge takes (Track 1:
answer.txt inside, the exact bytes); a task without an archive gets none."""
from __future__ import annotations

import zipfile

import polars as pl

from mmmos.core.manifests import read_answer_file, submission_path, write_answer_file, write_submission


def _answer(tmp_path, task, name="answer.txt"):
    axes = ["MI", "TA"] if task == "track1" else ["PQ", "PC", "CE", "CU"]
    ids = ["audiomos2025-track1-S002_P044.wav", "audiomos2025-track1-S001_P001.wav"] if task == "track1" \
        else ["a.wav", "b.wav"]
    df = pl.DataFrame({"clip_id": ids, **{a: [1.0 + i / 3, 4.25 - i] for i, a in enumerate(axes)}})
    p = tmp_path / name
    write_answer_file(df, p, task=task)
    return p


def test_track1_zip_holds_answer_txt_byte_for_byte(tmp_path):
    ans = _answer(tmp_path / "", "track1", "my_answer.txt")
    z = write_submission(ans, task="track1")
    assert z == tmp_path / "my_answer.zip" == submission_path(ans)
    with zipfile.ZipFile(z) as zf:
        assert zf.namelist() == ["answer.txt"]           # the name the challenge takes, whatever the file's
        assert zf.read("answer.txt") == ans.read_bytes()
        assert zf.testzip() is None
    assert ans.read_text().splitlines()[0].startswith("audiomos2025-track1-S001_P001,")
    first = z.read_bytes()
    assert write_submission(ans, task="track1", out=tmp_path / "again.zip").read_bytes() == first  # reproducible


def test_track2_takes_no_archive(tmp_path):
    ans = _answer(tmp_path, "track2")
    assert write_submission(ans, task="track2") is None
    assert not (tmp_path / "answer.zip").exists()


def test_ensemble_answer_step_writes_the_zip(tmp_path):
    from mmmos.ensemble.outputs import write_answer

    class Result:  # the two fields write_answer reads
        members = {"submitted": {}}
        predictions = {"submitted": {"eval": pl.DataFrame({"clip_id": ["audiomos2025-track1-S003_P009.wav"],
                                                           "MI": [3.5], "TA": [2.0]})}}

    class Sweep:
        from mmmos.core.tasks import get_task
        task = get_task("track1")

    out = write_answer(Result(), "submitted", "eval", tmp_path / "sub" / "answer.txt", Sweep())
    with zipfile.ZipFile(tmp_path / "sub" / "answer.zip") as zf:
        assert zf.read("answer.txt") == out.read_bytes() == b"audiomos2025-track1-S003_P009,3.50000000,2.00000000\n"
    assert read_answer_file(out, task="track1")["MI"].to_list() == [3.5]
