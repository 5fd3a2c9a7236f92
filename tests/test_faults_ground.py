"""Faults of the ground floor and the CLI (issue 8): each test failed before its fix.

* labels on another scale (0-100, negative) are refused when a manifest loads, naming file, column and lines;
* a truncated WAV is refused naming the declared and the present duration (extraction lists it as a failure);
* real Track 2 sound clips get their domain from the official id, PAM rows from the path;
* user errors end in one line and exit 2 (``--debug`` shows the traceback); Ctrl-C exits 130 with one line;
* a folder holding a file whose name is not valid UTF-8 loads the rest and reports that file.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import polars as pl
import pytest

from mmmos.core.audio import AudioError, audio_info, read_clip
from mmmos.core.errors import UserError
from mmmos.core.manifests import ManifestError, load_manifest

HEADER = "sample_id,data_path,Production_Quality,Production_Complexity,Content_Enjoyment,Content_Usefulness\n"


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --------------------------------------------------------------------------- 5. out-of-range labels


@pytest.mark.parametrize("bad", ["55.0", "-3"])
def test_track2_labels_outside_range_are_refused(tmp_path, bad):
    rows = [f"c{i},/your_path/a{i}.wav,5.0,5.0,5.0,5.0\n" for i in range(3)]
    rows[1] = f"c1,/your_path/a1.wav,5.0,{bad},5.0,5.0\n"
    m = tmp_path / "train.csv"
    m.write_text(HEADER + "".join(rows))
    with pytest.raises(ManifestError) as e:
        load_manifest(m)
    msg = str(e.value)
    assert isinstance(e.value, UserError)
    assert str(m) in msg and "Production_Complexity" in msg and "line 3" in msg and "0-10" in msg
    assert "Production_Quality" not in msg  # only the column that is wrong
    # opting out loads the values as written
    assert load_manifest(m, check_labels=False).get_column("PC").to_list()[1] == float(bad)


def test_plain_csv_on_a_0_100_scale_names_first_rows(tmp_path):
    m = tmp_path / "mine.csv"
    m.write_text("path,PQ,CE\n" + "".join(f"a{i}.wav,{10 * i + 5},{i % 10}\n" for i in range(12)))
    with pytest.raises(ManifestError) as e:
        load_manifest(m)
    msg = str(e.value)
    # rows 2.. hold 15, 25, ...: the first five are quoted with their lines, the rest counted
    assert "column PQ" in msg and "line 3: 15" in msg and "line 7: 55" in msg and "and 6 more" in msg
    assert "line 8" not in msg


def test_jsonl_ratings_outside_range_are_refused(tmp_path):
    m = tmp_path / "aes.jsonl"
    m.write_text(json.dumps({"data_path": "a.wav", "Production_Quality": [50, 60, 70]}) + "\n")
    with pytest.raises(ManifestError, match=r"Production_Quality.*line 1: 60"):
        load_manifest(m)


# --------------------------------------------------------------------------- 6. truncated WAV


def truncate_wav(src: Path, dst: Path, keep_seconds: float, sr: int = 16000) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: 44 + int(keep_seconds * sr) * 2])  # 44-byte header, 16-bit mono
    return dst


def test_truncated_wav_is_refused_with_both_durations(tmp_path, write_wav):
    full = write_wav(tmp_path / "full.wav", 5.0)
    cut = truncate_wav(full, tmp_path / "cut.wav", 1.67)
    assert read_clip(full).duration == pytest.approx(5.0)
    for fn in (read_clip, audio_info):
        with pytest.raises(AudioError) as e:
            fn(cut)
        assert isinstance(e.value, UserError)
        assert str(cut) in str(e.value) and "5.00 s" in str(e.value) and "1.67 s" in str(e.value)


def test_complete_wavs_with_trailing_chunks_or_unset_sizes_still_read(tmp_path, write_wav):
    full = write_wav(tmp_path / "full.wav", 1.0)
    extra = tmp_path / "extra.wav"  # a LIST chunk after the data: more bytes than declared is fine
    extra.write_bytes(full.read_bytes() + b"LIST\x04\x00\x00\x00abcd")
    assert read_clip(extra).duration == pytest.approx(1.0)
    stream = tmp_path / "stream.wav"  # streaming writers leave the data size at 0xFFFFFFFF
    b = bytearray(full.read_bytes())
    b[40:44] = b"\xff\xff\xff\xff"
    stream.write_bytes(bytes(b))
    assert read_clip(stream).wave.size > 0


def test_extraction_lists_a_truncated_wav_as_a_failure(tmp_path, write_wav, run_cli):
    folder = tmp_path / "clips"
    write_wav(folder / "good.wav", 1.0)
    truncate_wav(write_wav(tmp_path / "long.wav", 3.0), folder / "cut.wav", 1.0)
    store = tmp_path / "store"
    rc, out, err = run_cli(["extract", "--manifest", folder, "--store", store, "--encoders", "logmel", "--no-progress"])
    assert rc == 3, err
    failures = pl.read_csv(next(store.glob("extract_failures*.csv")))
    assert failures.height == 1 and "cut.wav" in failures.row(0, named=True)["clip_id"]
    assert "truncated" in " ".join(str(v) for v in failures.row(0))


# --------------------------------------------------------------------------- 9. domains of real Track 2 clips


def domain_counts(df: pl.DataFrame) -> dict:
    return {d: n for d, n in df.group_by("domain").len().iter_rows()}


@pytest.mark.parametrize("name,expected", [
    ("audiomos2025-track2-train_list.csv", {"speech": 900, "music": 900, "sound": 900}),
    ("audiomos2025-track2-dev_list.csv", {"speech": 50, "music": 100, "sound": 100}),
])
def test_real_track2_domains(track2_dir, name, expected):
    official = load_manifest(track2_dir / name)
    assert domain_counts(official) == expected
    combined = load_manifest(track2_dir / name.replace("audiomos2025-track2-", "combined_").replace("_list", ""))
    is_official = pl.col("clip_id").str.starts_with("audiomos2025-track2-")
    assert domain_counts(combined.filter(is_official)) == expected
    pam = combined.filter(~is_official)
    assert pam.height > 0 and pam.get_column("domain").null_count() == 0
    by_path = pam.with_columns(pl.col("clip_id").str.contains("/human_eval/music/").alias("music"))
    assert (by_path.filter(pl.col("music"))["domain"] == "music").all()
    assert (by_path.filter(~pl.col("music"))["domain"] == "sound").all()


# --------------------------------------------------------------------------- user errors: one line, exit 2


def test_missing_and_malformed_manifests_are_one_line(tmp_path, run_cli):
    store = tmp_path / "s"
    rc, _, err = run_cli(["extract", "--manifest", tmp_path / "nope.csv", "--store", store, "--no-progress"])
    assert rc == 2 and one_error_line(err).startswith("mmmos extract: error: ") and "not found" in err
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "a,/x.wav,1,2\n")
    rc, _, err = run_cli(["extract", "--manifest", bad, "--store", store, "--no-progress"])
    assert rc == 2 and f"{bad}:2" in one_error_line(err)
    dom = tmp_path / "dom.csv"
    dom.write_text("path,domain\na.wav,podcast\n")
    rc, _, err = run_cli(["extract", "--manifest", dom, "--store", store, "--no-progress"])
    assert rc == 2 and "unknown domain 'podcast'" in one_error_line(err)


def test_corrupt_answer_file_is_one_line(tmp_path, run_cli):
    truth = tmp_path / "truth.csv"
    truth.write_text("clip_id,PQ,PC,CE,CU\na,1,2,3,4\nb,2,3,4,5\n")
    pred = tmp_path / "answer.txt"
    pred.write_bytes(b"a,1,2,3,4\n\xff\xfe\x00garbage\n")
    rc, _, err = run_cli(["score", "--pred", pred, "--truth", truth])
    assert rc == 2 and one_error_line(err).startswith("mmmos score: error: ") and str(pred) in err


def test_debug_shows_the_traceback_before_or_after_the_command(tmp_path, run_cli):
    for argv in (["--debug", "extract", "--manifest", tmp_path / "nope.csv", "--store", tmp_path / "s"],
                 ["extract", "--manifest", tmp_path / "nope.csv", "--store", tmp_path / "s", "--debug"]):
        rc, _, err = run_cli(argv)
        assert rc == 2 and "Traceback" in err and "ManifestError" in err
        assert err.rstrip().splitlines()[-1].startswith("mmmos extract: error: ")


def test_ctrl_c_exits_130_with_one_line(monkeypatch, run_cli):
    import mmmos.app.demos.command as demo

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run_data_cli", interrupted)
    rc, _, err = run_cli(["demo-data", "--out", "x"])
    assert rc == 130 and "interrupted" in one_error_line(err)


def test_ctrl_c_in_a_real_process_keeps_finished_work(tmp_path):
    out = tmp_path / "corpus"
    proc = subprocess.Popen([sys.executable, "-m", "mmmos", "demo-data", "--out", str(out), "--n-train", "400"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob("audio/train/*/*.wav")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in one_error_line(err)
    written = list(out.glob("audio/train/*/*.wav"))
    assert written and all(p.stat().st_size > 44 for p in written[:-1])


# --------------------------------------------------------------------------- a file name that is not UTF-8


@pytest.fixture
def folder_with_bad_name(tmp_path, write_wav):
    folder = tmp_path / "clips"
    write_wav(folder / "good.wav", 1.0)
    bad = os.fsencode(folder) + b"/caf\xe9.wav"  # Latin-1 bytes: not valid UTF-8
    try:
        with open(bad, "wb") as f:
            f.write((folder / "good.wav").read_bytes())
    except OSError:
        pytest.skip("this file system refuses non-UTF-8 names")
    return folder


def test_folder_with_a_non_utf8_name_loads_the_rest(folder_with_bad_name):
    problems: list = []
    df = load_manifest(folder_with_bad_name, problems=problems)
    assert df.get_column("clip_id").to_list() == ["good.wav"]
    assert [(p.kind, p.clip_id) for p in problems] == [("bad_file_name", "caf\\xe9.wav")]
    assert "not valid UTF-8" in problems[0].message
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_manifest(folder_with_bad_name).height == 1
    assert any("caf\\xe9.wav" in str(w.message) for w in caught)


def test_extract_over_a_folder_with_a_non_utf8_name_in_a_real_process(folder_with_bad_name, tmp_path):
    store = tmp_path / "store"
    r = subprocess.run([sys.executable, "-m", "mmmos", "extract", "--manifest", str(folder_with_bad_name),
                        "--store", str(store), "--encoders", "logmel", "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode in (0, 3), r.stderr  # 3 once extraction lists the file as a failure row
    assert "Traceback" not in r.stderr
    assert "caf\\xe9.wav" in r.stdout + r.stderr
    failures = list(store.glob("extract_failures*.csv"))
    if r.returncode == 3:
        assert "caf\\xe9.wav" in failures[0].read_text()
