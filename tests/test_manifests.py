"""mmmos.manifests: every manifest format, inference rules, validation and answer files."""
from __future__ import annotations

import json
import os

import numpy as np
import polars as pl
import pytest

from mmmos.core.manifests import (
    AXES,
    COLUMNS,
    SCHEMA,
    ManifestError,
    drop_duplicate_ids,
    infer_domain,
    infer_split,
    infer_system,
    load_manifest,
    read_answer_file,
    validate_manifest,
    write_answer_file,
)

LONG = ("Production_Quality", "Production_Complexity", "Content_Enjoyment", "Content_Usefulness")
TRACK2_HEADER = (
    "sample_id,data_path,Production_Quality,Production_Complexity,Content_Enjoyment,Content_Usefulness"
)


def write(path, text, bom=False):
    path.write_bytes((("\ufeff" if bom else "") + text).encode("utf-8"))
    return path


def check_schema(df: pl.DataFrame) -> None:
    assert tuple(df.columns) == COLUMNS
    assert dict(df.schema) == SCHEMA
    assert df.get_column("clip_id").null_count() == 0


def row(df: pl.DataFrame, clip_id: str) -> dict:
    hit = df.filter(pl.col("clip_id") == clip_id)
    assert hit.height == 1, clip_id
    return hit.row(0, named=True)


# --------------------------------------------------------------------------- Track 2 lists


def test_track2_list_bom_quotes_placeholder(tmp_path):
    text = "\n".join(
        [
            TRACK2_HEADER,
            "audiomos2025-track2-sys0v1wm-utt0dJodp,/your_path/EARS/p001/emo_amusement_freeform.wav,7.2,2.1,5.5,6.0",
            'audiomos2025-track2-sys1abcd-utt00001,"/your_path/MusicCaps/Artist, The Band/song one.wav",6.0,5.5,7.1,4.4',
            "audiomos2025-track2-sys2zzzz-utt00002,/your_path/AudioSet/eval/Y1234.flac,3.1,4.0,2.0,3.5",
            "",
        ]
    )
    manifest = write(tmp_path / "audiomos2025-track2-train_list.csv", text, bom=True)
    root = tmp_path / "data root"
    df = load_manifest(manifest, data_root=root)
    check_schema(df)
    assert df.height == 3
    a = row(df, "audiomos2025-track2-sys0v1wm-utt0dJodp")
    assert a["path"] == os.path.join(str(root), "EARS", "p001", "emo_amusement_freeform.wav")
    assert (a["system"], a["domain"], a["split"]) == ("sys0v1wm", "speech", "train")
    assert [a[x] for x in AXES] == [7.2, 2.1, 5.5, 6.0]
    b = row(df, "audiomos2025-track2-sys1abcd-utt00001")
    assert b["path"] == os.path.join(str(root), "MusicCaps", "Artist, The Band", "song one.wav")
    assert (b["system"], b["domain"]) == ("sys1abcd", "music")
    c = row(df, "audiomos2025-track2-sys2zzzz-utt00002")
    assert (c["system"], c["domain"], c["CU"]) == ("sys2zzzz", "sound", 3.5)


def test_track2_placeholder_without_data_root_uses_manifest_dir(tmp_path):
    manifest = write(
        tmp_path / "list.csv",
        TRACK2_HEADER + "\nx1,/your_path/LibriTTS/a b.wav,1,2,3,4\nx2,rel/c.wav,1,2,3,4\nx3,/abs/d.wav,1,2,3,4\n",
    )
    df = load_manifest(manifest)
    assert df.get_column("path").to_list() == [
        str(tmp_path / "LibriTTS" / "a b.wav"),
        str(tmp_path / "rel" / "c.wav"),
        "/abs/d.wav",
    ]
    assert df.get_column("split").to_list() == [None] * 3  # "list" names no split
    assert df.get_column("system").to_list() == [None] * 3
    assert df.get_column("domain").to_list() == ["speech", None, None]


def test_track2_without_labels_and_explicit_split(tmp_path):
    manifest = write(tmp_path / "eval_list.csv", "sample_id,data_path\nc1,/your_path/a.wav\n")
    df = load_manifest(manifest, split="dev")
    check_schema(df)
    assert df.get_column("split").to_list() == ["dev"]  # the argument beats the file name ("eval")
    assert all(df.get_column(a).to_list() == [None] for a in AXES)
    assert load_manifest(manifest).get_column("split").to_list() == ["test"]


def test_combined_list_with_pam_rows(tmp_path):
    pam_a = "PAM/human_eval/audio/audiogen_m/generated_audio_index_106.wav"
    pam_m = "PAM/human_eval/music/musicgen_large/generated_music_index_042.wav"
    text = "\n".join(
        [
            TRACK2_HEADER,
            "audiomos2025-track2-sysAAAAA-utt1,/your_path/musdb18hq/test/Song/mixture.wav,8,6,7,6",
            f"{pam_a},/your_path/{pam_a},4.4,3.0,3.3,5.0",
            f"{pam_m},{pam_m},6.6,5.0,6.0,5.5",
        ]
    )
    manifest = write(tmp_path / "combined_dev.csv", text + "\n", bom=True)
    root = tmp_path / "root"
    df = load_manifest(manifest, data_root=root)
    check_schema(df)
    assert set(df.get_column("split").to_list()) == {"dev"}
    a = row(df, pam_a)
    assert (a["system"], a["domain"]) == ("audiogen_m", "sound")
    assert a["path"] == str(root / pam_a)
    m = row(df, pam_m)
    assert (m["system"], m["domain"]) == ("musicgen_large", "music")
    assert m["path"] == str(root / pam_m)  # relative path -> data_root
    n = row(df, "audiomos2025-track2-sysAAAAA-utt1")
    assert (n["system"], n["domain"]) == ("sysAAAAA", "music")
    # Same result when the format is named explicitly.
    assert load_manifest(manifest, data_root=root, fmt="combined").equals(df)


def test_track2_row_without_path_is_kept_and_reported(tmp_path):
    manifest = write(
        tmp_path / "x_train_list.csv", TRACK2_HEADER + "\na,/your_path/EARS/a.wav,1,1,1,1\nb,,2,2,2,2\n"
    )
    df = load_manifest(manifest, data_root="/data")
    assert df.height == 2
    assert row(df, "b")["path"] is None and row(df, "b")["PQ"] == 2.0
    problems = validate_manifest(df)
    assert [(p.kind, p.row, p.clip_id) for p in problems] == [("no_path", 1, "b")]
    assert validate_manifest(df, require_paths=False) == []


# --------------------------------------------------------------------------- JSONL


def test_jsonl_means_ids_and_paths(tmp_path):
    rng = np.random.default_rng(0)
    objs = []
    for i in range(3):
        obj = {"data_path": f"audiomos2025-track2-sys{i}xyz-utt{i}abc"}
        for long in LONG:
            obj[long] = rng.integers(0, 11, 10).tolist()
        objs.append(obj)
    objs.append({"data_path": "/your_path/PAM/human_eval/music/mg/x.wav", "PQ": [5, 6], "CU": 7})
    lines = [json.dumps(o) for o in objs]
    lines.insert(2, "   ")  # blank lines are not rows
    manifest = write(tmp_path / "answers_eval.jsonl", "\n".join(lines) + "\n")
    df = load_manifest(manifest, data_root="/r")
    check_schema(df)
    assert df.height == 4
    for i, obj in enumerate(objs[:3]):
        r = df.row(i, named=True)
        assert r["clip_id"] == obj["data_path"] and r["path"] is None
        assert r["system"] == f"sys{i}xyz"
        for axis, long in zip(AXES, LONG):
            np.testing.assert_allclose(r[axis], np.mean(obj[long]), rtol=0, atol=1e-12)
    last = df.row(3, named=True)
    assert last["clip_id"] == "PAM/human_eval/music/mg/x.wav"
    assert last["path"] == "/r/PAM/human_eval/music/mg/x.wav"
    assert (last["system"], last["domain"]) == ("mg", "music")
    assert (last["PQ"], last["PC"], last["CE"], last["CU"]) == (5.5, None, None, 7.0)
    assert set(df.get_column("split").to_list()) == {"test"}
    # ids without paths are fine when paths are not required
    assert [p.kind for p in validate_manifest(df)] == ["no_path"] * 3
    assert validate_manifest(df, require_paths=False) == []


@pytest.mark.parametrize(
    "bad,words",
    [
        ("{not json", "invalid json"),
        ('["a list"]', "expected a json object"),
        ('{"data_path": "a.wav", "PQ": []}', "empty list"),
        ('{"data_path": "a.wav", "PQ": [1, "x"]}', "must be numbers"),
        ('{"PQ": [1, 2]}', "neither data_path nor sample_id"),
    ],
)
def test_jsonl_bad_lines_name_file_and_line(tmp_path, bad, words):
    good = json.dumps({"data_path": "a.wav", "PQ": [1, 2]})
    manifest = write(tmp_path / "r.jsonl", f"{good}\n\n{bad}\n")
    with pytest.raises(ManifestError) as e:
        load_manifest(manifest)
    assert f"{manifest}:3:" in str(e.value) and e.value.line == 3
    assert words in str(e.value).lower()


# --------------------------------------------------------------------------- plain CSV


def test_plain_csv_columns_and_resolution(tmp_path):
    text = "\n".join(
        [
            "Path,pq,PC,CE,CU,System,domain,split,notes",
            "clips/a.wav,1.5,2,3,4,s1,music,dev,whatever",
            "/abs/b.flac,,,,,,,,",
            '"clips/c, d.wav",10,0,5,5,s2,,,',
        ]
    )
    manifest = write(tmp_path / "mine.csv", text + "\n")
    df = load_manifest(manifest)
    check_schema(df)
    a = row(df, "clips/a.wav")
    assert a["path"] == str(tmp_path / "clips" / "a.wav")
    assert (a["system"], a["domain"], a["split"], a["PQ"], a["CU"]) == ("s1", "music", "dev", 1.5, 4.0)
    b = row(df, "/abs/b.flac")
    assert b["path"] == "/abs/b.flac" and b["system"] is None and b["PQ"] is None and b["split"] is None
    c = row(df, "clips/c, d.wav")
    assert c["path"] == str(tmp_path / "clips" / "c, d.wav") and c["PQ"] == 10.0
    # data_root replaces the manifest's directory; the split argument wins over the column
    df2 = load_manifest(manifest, data_root=tmp_path / "elsewhere", split="train")
    assert row(df2, "clips/a.wav")["path"] == str(tmp_path / "elsewhere" / "clips" / "a.wav")
    assert set(df2.get_column("split").to_list()) == {"train"}


def test_plain_csv_path_only_and_clip_id_column(tmp_path):
    manifest = write(tmp_path / "my_train.csv", "path,clip_id\nx/EARS/a.wav,A\nb.wav,\n")
    df = load_manifest(manifest)
    assert df.get_column("clip_id").to_list() == ["A", "b.wav"]
    assert df.get_column("domain").to_list() == ["speech", None]
    assert df.get_column("split").to_list() == ["train", "train"]
    assert all(df.get_column(a).null_count() == 2 for a in AXES)


@pytest.mark.parametrize(
    "body,line,words",
    [
        ("a.wav,1,2,3,4\nb.wav,1,2,3\n", 3, "expected 5 fields"),
        ("a.wav,1,2,3,4\n\nb.wav,1,x,3,4\n", 4, "not a number"),
        ("a.wav,1,2,inf,4\n", 2, "not finite"),
        ("a.wav,1,2,3,4\n,1,2,3,4\n", 3, "neither a path nor a clip_id"),
    ],
)
def test_plain_csv_bad_rows(tmp_path, body, line, words):
    manifest = write(tmp_path / "m.csv", "path,PQ,PC,CE,CU\n" + body)
    with pytest.raises(ManifestError) as e:
        load_manifest(manifest)
    assert f"{manifest}:{line}:" in str(e.value)
    assert words in str(e.value)


def test_plain_csv_bad_domain(tmp_path):
    manifest = write(tmp_path / "m.csv", "path,domain\na.wav,audio\nb.wav,noise\n")
    with pytest.raises(ManifestError, match=r":3: unknown domain 'noise'"):
        load_manifest(manifest)


def test_track2_bad_row_line_number(tmp_path):
    manifest = write(tmp_path / "t.csv", TRACK2_HEADER + "\nok,a.wav,1,2,3,4\nbad,b.wav,1,2,three,4\n", bom=True)
    with pytest.raises(ManifestError) as e:
        load_manifest(manifest)
    assert e.value.line == 3 and str(manifest) in str(e.value) and "CE" in str(e.value)


def test_unrecognised_and_missing(tmp_path):
    answer_like = write(tmp_path / "answer.txt", "id1,1,2,3,4\n")
    with pytest.raises(ManifestError, match="unrecognised manifest"):
        load_manifest(answer_like)
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "nope.csv")
    with pytest.raises(ValueError):
        load_manifest(answer_like, fmt="xml")
    with pytest.raises(ManifestError, match="empty"):
        load_manifest(write(tmp_path / "empty.csv", ""))


# --------------------------------------------------------------------------- folder scan


def test_folder_scan(tmp_path):
    root = tmp_path / "dev"
    files = ["b.wav", "a/EARS/x.flac", "a/y.MP3", "z/deep/er/k.ogg", "o.opus", "s.aiff"]
    for f in files + ["notes.txt", ".hidden.wav", ".git/h.wav"]:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_bytes(b"")
    df = load_manifest(root)
    check_schema(df)
    assert df.get_column("clip_id").to_list() == sorted(files)
    assert row(df, "a/EARS/x.flac")["path"] == str(root / "a" / "EARS" / "x.flac")
    assert row(df, "a/EARS/x.flac")["domain"] == "speech"
    assert set(df.get_column("split").to_list()) == {"dev"}  # from the folder's name
    assert load_manifest(root, split="train", fmt="folder").get_column("split").unique().to_list() == ["train"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ManifestError, match="no audio files"):
        load_manifest(empty)


# --------------------------------------------------------------------------- inference rules


@pytest.mark.parametrize(
    "path,domain",
    [
        ("/your_path/EARS/p001/a.wav", "speech"),
        ("data/ears_v2/a.wav", "speech"),
        ("/home/years/music/a.wav", None),
        ("LibriTTS_R/train-clean-100/1/2/a.wav", "speech"),
        ("cv-corpus-13.0-2023-03-09/en/clips/a.mp3", "speech"),
        ("Common Voice/a.mp3", "speech"),
        ("MUSDB18-HQ/train/Song/mixture.wav", "music"),
        ("musiccaps/-abc.wav", "music"),
        ("audioset/eval/Y1.wav", "sound"),
        ("PAM/human_eval/audio/audioldm/x.wav", "sound"),
        ("pam/Human_Eval/MUSIC/mg/x.wav", "music"),
        ("/data/AudioSet_work/EARS/p1.wav", "speech"),  # the keyword nearest the file wins
        ("random/file.wav", None),
        (None, None),
    ],
)
def test_infer_domain(path, domain):
    assert infer_domain(path) == domain


def test_infer_system_and_split():
    assert infer_system("audiomos2025-track2-sys0v1wm-utt0dJodp", None) == "sys0v1wm"
    assert infer_system("x", "/d/audiomos2025-track2-sysQ1-uttZ.wav") == "sysQ1"
    assert infer_system("PAM/human_eval/music/musicgen_large/g.wav", None) == "musicgen_large"
    assert infer_system("system_a", "/a/b.wav") is None
    assert infer_split("audiomos2025-track2-train_list.csv") == "train"
    assert infer_split("audiomos2025-track2-dev_list.csv") == "dev"
    assert infer_split("combined_dev.csv") == "dev"
    assert infer_split("pam_validation.jsonl") == "dev"
    assert infer_split("my_clips.csv") is None
    assert infer_split("train_dev.csv") is None  # ambiguous
    assert infer_split("retrain.csv") is None  # tokens, not substrings


# --------------------------------------------------------------------------- validation


def test_validate_duplicates_ranges_and_files(tmp_path):
    real = tmp_path / "real.wav"
    real.write_bytes(b"x")
    df = pl.DataFrame(
        {
            "clip_id": ["a", "b", "a", "c", "a"],
            "path": [str(real), str(tmp_path / "gone.wav"), str(real), None, str(real)],
            "system": [None] * 5,
            "domain": [None] * 5,
            "split": [None] * 5,
            "PQ": [5.0, 10.5, 1.0, None, 0.0],
            "PC": [5.0, 5.0, -0.1, 1.0, 10.0],
            "CE": [5.0] * 5,
            "CU": [5.0] * 5,
            "prompt": [None] * 5,
        },
        schema=SCHEMA,
    )
    got = [(p.kind, p.row) for p in validate_manifest(df, check_files=True, require_labels=True)]
    assert got == [
        ("missing_file", 1),
        ("label_out_of_range", 1),
        ("duplicate_id", 2),
        ("label_out_of_range", 2),
        ("no_path", 3),
        ("missing_label", 3),
        ("duplicate_id", 4),
    ]
    assert [(p.kind, p.row) for p in validate_manifest(df)] == [
        ("label_out_of_range", 1), ("duplicate_id", 2), ("label_out_of_range", 2), ("no_path", 3), ("duplicate_id", 4)
    ]
    dedup, removed = drop_duplicate_ids(df)
    assert dedup.get_column("clip_id").to_list() == ["a", "b", "c"]
    assert dedup.row(0, named=True)["PQ"] == 5.0  # the first occurrence is kept
    assert [(p.row, p.clip_id) for p in removed] == [(2, "a"), (4, "a")]
    assert "row 0" in removed[0].message
    same, none = drop_duplicate_ids(dedup)
    assert none == [] and same.equals(dedup)
    with pytest.raises(ValueError, match="missing columns"):
        validate_manifest(df.drop("split"))


def test_loader_keeps_duplicate_rows(tmp_path):
    manifest = write(tmp_path / "d.csv", "path,clip_id,PQ\na.wav,x,1\nb.wav,x,2\n")
    df = load_manifest(manifest)
    assert df.height == 2
    assert [(p.kind, p.row) for p in validate_manifest(df)] == [("duplicate_id", 1)]


# --------------------------------------------------------------------------- answer files


def test_answer_file_round_trip(tmp_path):
    df = pl.DataFrame(
        {
            "clip_id": ["audiomos2025-track2-sys1-utt1", "audiomos2025-track2-sys1-utt2"],
            "PQ": [1.0 / 3.0, 7.0],
            "PC": [2.5, 0.0],
            "CE": [9.999999, 5.123456789012345],
            "CU": [4.0, 10.0],
            "extra": [1, 2],
        }
    )
    path = tmp_path / "answer.txt"
    write_answer_file(df, path)
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(len(line.split(",")) == 5 for line in lines)
    assert lines[0].startswith("audiomos2025-track2-sys1-utt1,0.333")
    back = read_answer_file(path)
    assert back.columns == ["clip_id", *AXES]
    assert back.equals(df.select("clip_id", *AXES))  # exact floats


def test_answer_file_header_tolerated_and_errors(tmp_path):
    ok = write(tmp_path / "h.txt", "wavID,PQ,PC,CE,CU\nx,1,2,3,4\n")
    assert read_answer_file(ok).get_column("clip_id").to_list() == ["x"]
    for body, line, words in [
        ("x,1,2,3\n", 1, "expected 5 fields"),
        ("x,1,2,3,4\ny,1,2,a,4\n", 2, "not a number"),
        ("x,1,2,3,4\nx,1,2,3,4\n", 2, "repeats line 1"),
        ("x,1,2,,4\n", 1, "missing"),
    ]:
        p = write(tmp_path / "bad.txt", body)
        with pytest.raises(ManifestError) as e:
            read_answer_file(p)
        assert f"{p}:{line}:" in str(e.value) and words in str(e.value)
    with pytest.raises(ManifestError, match="not found"):
        read_answer_file(tmp_path / "none.txt")


def test_write_answer_file_refuses_bad_rows(tmp_path):
    base = {"clip_id": ["a"], "PQ": [1.0], "PC": [1.0], "CE": [1.0], "CU": [1.0]}
    for change in ({"PQ": [None]}, {"CE": [float("nan")]}, {"clip_id": ["a,b"]}):
        with pytest.raises(ValueError):
            write_answer_file(pl.DataFrame({**base, **change}), tmp_path / "a.txt")
    with pytest.raises(ValueError, match="missing columns"):
        write_answer_file(pl.DataFrame({"clip_id": ["a"], "PQ": [1.0]}), tmp_path / "a.txt")
    assert not (tmp_path / "a.txt").exists()
