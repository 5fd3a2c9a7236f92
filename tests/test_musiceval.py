"""MusicEval lists and prompt tables (fixtures written in the real formats), and the track1 task record."""
from __future__ import annotations

import os

import polars as pl
import pytest

from mmmos.core.errors import UserError
from mmmos.core.manifests.musiceval import (
    MusicEvalError, load_musiceval, read_eval_list, read_mos_list, read_prompt_csv, read_prompt_table,
)
from mmmos.core.tasks.track1 import TRACK1, clip_name, prompt_id_of, system_of

P = "audiomos2025-track1-"


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def root(tmp_path):
    """A MusicEval-phase1 folder: sets/ lists, prompt tables, eval list."""
    r = tmp_path / "MusicEval-phase1"
    write(r / "sets" / "train_mos_list.txt",
          f"{P}S002_P044.wav,3.2,4.0\n{P}S001_P010.wav,1.0,5.0\n\n{P}S034_P002.wav,4.8,2.6\n")
    write(r / "sets" / "dev_mos_list.txt", f"{P}S002_P001.wav,2.0,2.2\n{P}S040_P999.wav,3.0,3.0\n")
    write(r / "prompt_info.txt", "id\ttext\nP044\tA calm piano piece\nP002\t  Rock anthem with guitars \n"
                                 "P001\t\n")
    write(r / "demo_prompt_info.txt", f"ID\tText\tsource\n{P}S001_P010.wav\tLofi beat\tdemo\n")
    write(r / "eval_list.txt", f"{P}S002_P044\n{P}S006_P003\n")
    return r


def test_train_list_with_prompts(root):
    got = load_musiceval(root, "train")
    t = got.table
    assert t.columns == ["clip_id", "path", "system", "prompt_id", "prompt", "MI", "TA"]
    assert t["clip_id"].to_list() == [f"{P}S002_P044", f"{P}S001_P010", f"{P}S034_P002"]
    assert t["system"].to_list() == ["S002", "S001", "S034"]
    assert t["prompt_id"].to_list() == ["P044", "P010", "P002"]
    # S001 is a demo system: its text comes from demo_prompt_info.txt by full file name; text is stripped
    assert t["prompt"].to_list() == ["A calm piano piece", "Lofi beat", "Rock anthem with guitars"]
    assert t["MI"].to_list() == [3.2, 1.0, 4.8] and t["TA"].to_list() == [4.0, 5.0, 2.6]
    assert t["path"][0] == os.path.abspath(root / "wav" / f"{P}S002_P044.wav")
    assert got.problems == []


def test_missing_and_empty_prompts_are_problem_rows(root):
    got = load_musiceval(root, "dev")
    assert got.table.height == 2 and got.table["prompt"].to_list() == [None, None]
    kinds = {p.clip_id: p for p in got.problems}
    assert kinds[f"{P}S002_P001"].kind == "empty_prompt"
    missing = kinds[f"{P}S040_P999"]
    assert missing.kind == "missing_prompt" and missing.row == 1
    assert "P999" in missing.message and "prompt_info.txt" in missing.message and f"{P}S040_P999" in missing.message


def test_eval_list_and_demo_lookup_miss(root):
    got = load_musiceval(root, "eval")
    assert got.table["clip_id"].to_list() == [f"{P}S002_P044", f"{P}S006_P003"]
    assert got.table["MI"].to_list() == [None, None]
    (problem,) = got.problems  # S006 is a demo system; its file name is not in demo_prompt_info.txt
    assert problem.kind == "missing_prompt" and "demo_prompt_info.txt" in problem.message
    assert f"{P}S006_P003.wav" in problem.message


def test_wav_dir_and_sets_layout(tmp_path, root):
    rows = read_mos_list(root / "sets" / "train_mos_list.txt", wav_dir=tmp_path / "audio")
    assert rows[0]["path"] == os.path.abspath(tmp_path / "audio" / f"{P}S002_P044.wav")
    assert read_eval_list(root / "eval_list.txt")[1]["path"] == os.path.abspath(root / "wav" / f"{P}S006_P003.wav")


@pytest.mark.parametrize("line, what", [
    (f"{P}S002_P044.wav,3.3,4.0", "not a multiple of 0.2"),
    (f"{P}S002_P044.wav,5.2,4.0", "outside"),
    (f"{P}S002_P044.wav,0.8,4.0", "outside"),
    (f"{P}S002_P044.wav,3.2", "expected 3 fields"),
    (f"{P}S002_P044.wav,abc,4.0", "not a number"),
    (f"{P}S002_P044.wav,nan,4.0", "outside"),
    (f"{P}S002_P044,3.2,4.0", ".wav file name"),
])
def test_malformed_mos_lines_name_file_and_line(tmp_path, line, what):
    f = write(tmp_path / "sets" / "train_mos_list.txt", f"{P}S001_P001.wav,2.4,2.6\n{line}\n")
    with pytest.raises(MusicEvalError, match=what) as e:
        read_mos_list(f)
    assert str(e.value).startswith(f"{f}:2:") and isinstance(e.value, UserError)


def test_repeated_clip_is_an_error(tmp_path):
    f = write(tmp_path / "l.txt", f"{P}S001_P001.wav,2.4,2.6\n{P}S001_P001.wav,2.4,2.6\n")
    with pytest.raises(MusicEvalError, match="repeats line 1"):
        read_mos_list(f)


def test_float_multiples_of_point_two_are_accepted(tmp_path):
    values = [round(1 + 0.2 * k, 1) for k in range(21)]
    text = "".join(f"{P}S002_P{k:03d}.wav,{v},{v}\n" for k, v in enumerate(values))
    rows = read_mos_list(write(tmp_path / "l.txt", text))
    assert [r["MI"] for r in rows] == values


def test_prompt_table_errors(tmp_path):
    with pytest.raises(MusicEvalError, match="header must name"):
        read_prompt_table(write(tmp_path / "a.txt", "prompt\tdescription\nP1\tx\n"))
    with pytest.raises(MusicEvalError, match=r"b\.txt:3: id 'P1' repeats line 2"):
        read_prompt_table(write(tmp_path / "b.txt", "id\ttext\nP1\tx\nP1\ty\n"))
    with pytest.raises(MusicEvalError, match=r"c\.txt:2: expected 3"):
        read_prompt_table(write(tmp_path / "c.txt", "id\tsource\ttext\nP1\tx\n"))
    assert read_prompt_table(write(tmp_path / "d.txt", "id\ttext\nP1\tpiano\twith a tab\n")) == {"P1": "piano\twith a tab"}
    with pytest.raises(MusicEvalError, match="file not found"):
        load_musiceval(tmp_path / "nothing", "train")
    with pytest.raises(MusicEvalError, match="unknown split"):
        load_musiceval(tmp_path, "test")


def test_plain_csv(tmp_path):
    f = write(tmp_path / "mine" / "list.csv",
              "path,prompt,MI,textual,system\n"
              "a/one.wav,\"a song, with commas\",4.1,3.33,gen1\n"
              "/abs/two.wav,,,,\n"
              f"{P}S005_P001.wav,jazz,1,5,\n")
    got = read_prompt_csv(f)
    t = got.table
    assert t["clip_id"].to_list() == ["one", "two", f"{P}S005_P001"]
    assert t["path"].to_list() == [os.path.abspath(tmp_path / "mine" / "a" / "one.wav"), "/abs/two.wav",
                                   os.path.abspath(tmp_path / "mine" / f"{P}S005_P001.wav")]
    assert t["system"].to_list() == ["gen1", None, "S005"]
    assert t["prompt"].to_list() == ["a song, with commas", None, "jazz"]
    assert t["MI"].to_list() == [4.1, None, 1.0] and t["TA"].to_list() == [3.33, None, 5.0]
    assert [(p.kind, p.clip_id, p.row) for p in got.problems] == [("empty_prompt", "two", 1)]
    with pytest.raises(MusicEvalError, match=r"bad\.csv:2: MI '7' is outside"):
        read_prompt_csv(write(tmp_path / "bad.csv", "path,prompt,MI\nx.wav,p,7\n"))
    with pytest.raises(MusicEvalError, match="header must name 'path' and 'prompt'"):
        read_prompt_csv(write(tmp_path / "nohead.csv", "file,prompt\nx.wav,p\n"))


def test_track1_task_record():
    t = TRACK1
    assert t.axes == ("MI", "TA") and t.score_range == (1.0, 5.0) and t.name == "track1"
    assert t.axis_titles == {"MI": "overall", "TA": "textual"}
    assert t.axis_of_header("musiceval", "Overall") == "MI" and t.axis_of_header("csv", "ta") == "TA"
    assert (t.answer.decimals, t.answer.strip_suffix, t.answer.sort_ids) == (8, ".wav", True)
    assert system_of(f"{P}S002_P044.wav", None) == "S002"
    assert system_of(None, f"/data/wav/{P}S013_P7.wav") == "S013"
    assert system_of("S007_P001", None) == "S007"
    assert system_of("my_song.wav", "/x/my_song.wav") is None
    assert prompt_id_of(f"{P}S002_P044.wav") == "P044" and prompt_id_of(f"{P}S002") is None
    assert clip_name(f"/x/{P}S002_P044.WAV") == f"{P}S002_P044"
    assert t.domain_of("anything", None) == "music"


def test_table_is_polars_with_typed_columns(root):
    t = load_musiceval(root, "eval").table
    assert isinstance(t, pl.DataFrame)
    assert t.schema["MI"] == pl.Float64 and t.schema["prompt"] == pl.String
