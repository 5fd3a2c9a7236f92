"""Track 1 manifests: MusicEval lists, eval list, prompt CSV, folder + one prompt, prompt tables; registries."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from mmmos.core.manifests import ManifestError, Problem, detect_format, load_manifest
from mmmos.core.prompts import prompt_key

P = "audiomos2025-track1-"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def musiceval(tmp_path) -> Path:
    """A MusicEval-phase1 folder in the real layout: sets/ lists, prompt tables at the root, wav/."""
    r = tmp_path / "MusicEval-phase1"
    write(r / "sets" / "train_mos_list.txt",
          f"{P}S002_P044.wav,3.2,4.0\n{P}S001_P001.wav,2.0,1.4\n{P}S003_P044.wav,5.0,1.0\n")
    write(r / "sets" / "dev_mos_list.txt", f"{P}S004_P002.wav,1.0,2.2\n")
    write(r / "prompt_info.txt", "id\ttext\nP044\tA calm piano piece\nP002\t  Rock anthem with guitars \n")
    write(r / "demo_prompt_info.txt", f"id\ttext\n{P}S001_P001.wav\tA demo prompt for S001\n")
    (r / "wav").mkdir()
    return r


def test_mos_list_with_prompts_systems_paths_and_split(musiceval):
    problems: list[Problem] = []
    df = load_manifest(musiceval / "sets" / "train_mos_list.txt", task="track1", problems=problems)
    assert problems == []
    assert df.columns == ["clip_id", "path", "system", "domain", "split", "MI", "TA", "prompt"]
    assert df["clip_id"].to_list() == [f"{P}S002_P044", f"{P}S001_P001", f"{P}S003_P044"]
    assert df["path"].to_list()[0] == str(musiceval / "wav" / f"{P}S002_P044.wav")
    assert df["system"].to_list() == ["S002", "S001", "S003"]
    assert set(df["split"]) == {"train"} and set(df["domain"]) == {"music"}
    assert df["MI"].to_list() == [3.2, 2.0, 5.0] and df["TA"].to_list() == [4.0, 1.4, 1.0]
    # S001 is a demo system: its prompt comes from demo_prompt_info.txt by file name
    assert df["prompt"].to_list() == ["A calm piano piece", "A demo prompt for S001", "A calm piano piece"]
    assert detect_format(musiceval / "sets" / "train_mos_list.txt") == "musiceval"


def test_data_root_gives_the_audio_folder(musiceval, tmp_path):
    lst = musiceval / "sets" / "dev_mos_list.txt"
    other = tmp_path / "audio"
    (other / "wav").mkdir(parents=True)
    assert load_manifest(lst, data_root=other, task="track1")["path"][0] == str(other / "wav" / f"{P}S004_P002.wav")
    flat = tmp_path / "flat"
    flat.mkdir()
    assert load_manifest(lst, data_root=flat, task="track1")["path"][0] == str(flat / f"{P}S004_P002.wav")
    # data_root is also searched for the prompt tables
    moved = write(tmp_path / "lists" / "dev_mos_list.txt", lst.read_text())
    df = load_manifest(moved, data_root=musiceval, task="track1")
    assert df["prompt"].to_list() == ["Rock anthem with guitars"]


@pytest.mark.parametrize("value, words", [("3.3", "not a multiple of 0.2"), ("5.2", "outside"), ("0.8", "outside"),
                                          ("x", "not a number")])
def test_bad_labels_name_file_and_line(musiceval, value, words):
    lst = write(musiceval / "sets" / "train_mos_list.txt", f"{P}S002_P044.wav,3.2,4.0\n{P}S003_P044.wav,{value},2.0\n")
    with pytest.raises(ManifestError, match=words) as e:
        load_manifest(lst, task="track1")
    assert f"{lst}:2:" in str(e.value)


def test_check_labels_off_reads_any_number(musiceval):
    lst = write(musiceval / "sets" / "train_mos_list.txt", f"{P}S002_P044.wav,3.3,7\n")
    assert load_manifest(lst, task="track1", check_labels=False)["MI"].to_list() == [3.3]


def test_eval_list(musiceval):
    lst = write(musiceval / "eval_list.txt", f"{P}S004_P002\n{P}S001_P001\n")
    assert detect_format(lst) == "eval_list"
    df = load_manifest(lst, task="track1")
    assert df["split"].to_list() == ["test", "test"]
    assert df["path"].to_list() == [str(musiceval / "wav" / f"{P}S004_P002.wav"),
                                    str(musiceval / "wav" / f"{P}S001_P001.wav")]
    assert df["prompt"].to_list() == ["Rock anthem with guitars", "A demo prompt for S001"]
    assert df["MI"].null_count() == 2


def test_missing_and_empty_prompts_are_problem_rows(musiceval):
    write(musiceval / "prompt_info.txt", "id\ttext\nP044\tA calm piano piece\nP002\t \n")
    lst = write(musiceval / "sets" / "train_mos_list.txt",
                f"{P}S002_P044.wav,3.2,4.0\n{P}S005_P777.wav,2.0,2.0\n{P}S004_P002.wav,1.0,1.0\n"
                f"{P}S006_P001.wav,1.0,1.0\n")
    problems: list[Problem] = []
    df = load_manifest(lst, task="track1", problems=problems)
    assert df.height == 4 and df["prompt"].to_list() == ["A calm piano piece", None, None, None]
    got = {(p.kind, p.row, p.clip_id) for p in problems}
    assert got == {("missing_prompt", 1, f"{P}S005_P777"), ("empty_prompt", 2, f"{P}S004_P002"),
                   ("missing_prompt", 3, f"{P}S006_P001")}
    by_row = {p.row: p.message for p in problems}
    assert "P777" in by_row[1] and str(musiceval / "prompt_info.txt") in by_row[1]
    assert str(musiceval / "demo_prompt_info.txt") in by_row[3]  # S006 is a demo system
    with pytest.warns(UserWarning, match="3 clip"):
        load_manifest(lst, task="track1")


def test_no_prompt_table_names_the_folders_searched(tmp_path):
    lst = write(tmp_path / "x" / "sets" / "train_mos_list.txt", f"{P}S002_P044.wav,3.2,4.0\n")
    problems: list[Problem] = []
    df = load_manifest(lst, task="track1", problems=problems)
    assert df["prompt"].to_list() == [None]
    (p,) = problems
    assert p.kind == "missing_prompt" and str(tmp_path / "x" / "sets") in p.message and "--prompts" in p.message


def test_prompts_folder_option(musiceval, tmp_path):
    elsewhere = tmp_path / "tables"
    write(elsewhere / "prompt_info.txt", "id\ttext\nP044\tElsewhere text\n")
    df = load_manifest(musiceval / "sets" / "train_mos_list.txt", task="track1", prompts=elsewhere,
                       problems=[])
    assert df["prompt"].to_list()[0] == "Elsewhere text"
    with pytest.raises(ManifestError, match="prompt folder not found"):
        load_manifest(musiceval / "sets" / "train_mos_list.txt", task="track1", prompts=tmp_path / "nope")


def test_plain_csv_with_prompts(tmp_path):
    csv_path = write(tmp_path / "mine.csv", 'path,prompt,MI,TA,system\na.wav,"Jazz, with sax",3.1,2.7,mine\n'
                                            "b.wav,,2,2,mine\nc.wav,Jazz,,,\n")
    problems: list[Problem] = []
    df = load_manifest(csv_path, task="track1", problems=problems)
    assert df["prompt"].to_list() == ["Jazz, with sax", None, "Jazz"]
    assert df["MI"].to_list() == [3.1, 2.0, None]  # a CSV needs labels in 1-5, not multiples of 0.2
    assert df["system"].to_list() == ["mine", "mine", None]
    assert [(p.kind, p.row, p.clip_id) for p in problems] == [("empty_prompt", 1, "b.wav")]
    bad = write(tmp_path / "bad.csv", "path,prompt,MI,TA\na.wav,x,6,2\n")
    with pytest.raises(ManifestError, match="outside"):
        load_manifest(bad, task="track1")


def test_folder_with_one_prompt(tmp_path):
    folder = tmp_path / "songs"
    for name in ("one.wav", "sub/two.flac"):
        write(folder / name, "x")
    df = load_manifest(folder, task="track1", prompt="  A lively folk tune ")
    assert df["clip_id"].to_list() == ["one.wav", "sub/two.flac"]
    assert df["prompt"].to_list() == ["A lively folk tune"] * 2
    problems: list[Problem] = []
    assert load_manifest(folder, task="track1", problems=problems)["prompt"].null_count() == 2
    assert [p.kind for p in problems] == ["missing_prompt"] * 2
    with pytest.raises(ManifestError, match="empty"):
        load_manifest(folder, task="track1", prompt="  ")


def test_track2_tables_have_a_null_prompt_and_refuse_prompt_options(musiceval, tmp_path):
    csv_path = write(tmp_path / "t2.csv", "path,PQ,prompt\na.wav,5,hello\n")
    df = load_manifest(csv_path)
    assert df.columns[-1] == "prompt" and df["prompt"].to_list() == [None]
    with pytest.raises(ManifestError, match="no text prompts"):
        load_manifest(csv_path, prompt="x")
    with pytest.raises(ManifestError, match="--task track1"):
        load_manifest(musiceval / "sets" / "train_mos_list.txt")


def test_prompt_key_is_what_extraction_uses():
    assert prompt_key("A calm piano piece") == prompt_key("A calm piano piece")
    assert prompt_key("A calm piano piece") != prompt_key("A calm piano piece.")


# ---------------------------------------------------------------------------------------------
# registries
# ---------------------------------------------------------------------------------------------
def test_registries_hold_track1_parts_and_track2_filters_exclude_them():
    from mmmos.core.tasks import TASKS, get_task
    from mmmos.extract import ENCODERS, TEXT_ENCODERS, WEIGHT_FREE
    from mmmos.heads import AUDIO_HEADS, HEADS
    from mmmos.losses import LOSSES, TRACK1_LOSSES, Z_LOSSES, coral_logits, coral_score, gaussian_target, loss_head_output
    from mmmos.losses import expected_score  # noqa: F401 - exported

    assert "track1" in TASKS and get_task("track1").score_range == (1.0, 5.0)
    assert {"roberta", "hashtext"} <= set(ENCODERS) and set(TEXT_ENCODERS) == {"roberta", "hashtext"}
    assert "hashtext" in WEIGHT_FREE and "roberta" not in WEIGHT_FREE
    assert {"kl_gaussian", "kl_onehot", "coral", "l1"} == set(TRACK1_LOSSES) and set(TRACK1_LOSSES) <= set(LOSSES)
    assert not set(Z_LOSSES) & set(TRACK1_LOSSES)
    assert [loss_head_output(n) for n in ("kl_gaussian", "kl_onehot", "coral", "l1")] == [
        "distribution", "distribution", "coral", "scores"]
    assert "dual_branch" in HEADS and "dual_branch" not in AUDIO_HEADS
    assert callable(gaussian_target) and callable(coral_logits) and callable(coral_score)


def test_no_warning_when_every_prompt_resolves(musiceval):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_manifest(musiceval / "sets" / "dev_mos_list.txt", task="track1")
