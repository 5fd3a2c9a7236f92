"""Track 1 extraction: audio encoders over clips, text encoders over the DISTINCT prompts, resume, failures."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmmos.app.cli import main
from mmmos.cache_store import open_store
from mmmos.core.prompts import prompt_key
from mmmos.extract.roberta import HashTextEncoder
from mmmos.extract.runner import ExtractConfig, run_extract

P = "audiomos2025-track1-"
PROMPTS = {"P001": "A slow warm piano piece", "P002": "Fast bright strings", "P003": "A flute melody at a moderate tempo"}
CLIPS = ["S002_P001", "S003_P001", "S004_P002", "S005_P002", "S002_P003", "S003_P099"]  # P099: no prompt


def make_corpus(root: Path, clips=CLIPS, prompts=PROMPTS) -> Path:
    (root / "wav").mkdir(parents=True, exist_ok=True)
    (root / "sets").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for c in clips:
        sf.write(root / "wav" / f"{P}{c}.wav", (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
    (root / "sets" / "train_mos_list.txt").write_text("".join(f"{P}{c}.wav,3.0,2.4\n" for c in clips))
    (root / "prompt_info.txt").write_text("id\ttext\n" + "".join(f"{k}\t{v}\n" for k, v in prompts.items()))
    return root / "sets" / "train_mos_list.txt"


def config(lst: Path, store: Path, **over) -> ExtractConfig:
    base = dict(manifests=[str(lst)], store=str(store), encoders=["logmel", "hashtext"], task="track1",
                store_dtype="float32", progress=False)
    return ExtractConfig(**{**base, **over})


def failures(store: Path) -> list[dict]:
    with open(store / "extract_failures.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_one_text_entry_per_distinct_prompt_equal_to_encode(tmp_path):
    lst = make_corpus(tmp_path / "me")
    rep = run_extract(config(lst, tmp_path / "store"))
    store = open_store(tmp_path / "store")
    text = store.group("hashtext")
    assert sorted(text.clip_ids()) == sorted(prompt_key(t) for t in PROMPTS.values())
    assert len(text.clip_ids()) < len(CLIPS)
    enc = HashTextEncoder()
    for t in PROMPTS.values():
        want = enc.encode([t])[0]
        got = text.read(prompt_key(t))
        assert got.shape == want.shape == (len(t.split()) + 1, 64)
        np.testing.assert_array_equal(got, want)
        assert text.clip(prompt_key(t)).path is None
    assert text.info.frame_rate == 1.0 and text.info.identity["modality"] == "text"
    # every clip's audio is extracted, the one without a prompt too
    assert len(store.group("logmel").clip_ids()) == len(CLIPS)
    assert rep.written == {"logmel": 6, "hashtext": 3}
    (f,) = [(x.clip_id, x.encoder, x.stage) for x in rep.failures]
    assert f == (f"{P}S003_P099", "hashtext", "manifest")
    (row,) = failures(tmp_path / "store")
    assert "P099" in row["error"] and "prompt_info.txt" in row["error"]


def test_resume_skips_cached_prompts_and_encodes_only_new_ones(tmp_path, monkeypatch):
    lst = make_corpus(tmp_path / "me")
    run_extract(config(lst, tmp_path / "store"))
    calls: list[list[str]] = []
    real = HashTextEncoder.encode_report
    monkeypatch.setattr(HashTextEncoder, "encode_report", lambda self, texts: calls.append(list(texts)) or real(self, texts))
    rep = run_extract(config(lst, tmp_path / "store"))
    assert calls == [] and rep.written["hashtext"] == 0 and rep.skipped["hashtext"] == 3
    new = {**PROMPTS, "P004": "Dark ambient drones"}
    lst = make_corpus(tmp_path / "me", CLIPS + ["S007_P004"], new)
    rep = run_extract(config(lst, tmp_path / "store"))
    assert calls == [["Dark ambient drones"]] and rep.written == {"logmel": 1, "hashtext": 1}


def test_a_prompt_that_fails_to_encode_is_a_failure_row_not_zeros(tmp_path, monkeypatch):
    lst = make_corpus(tmp_path / "me")
    real = HashTextEncoder.encode_report

    def flaky(self, texts):
        if "Fast bright strings" in texts:
            raise RuntimeError("boom")
        return real(self, texts)

    monkeypatch.setattr(HashTextEncoder, "encode_report", flaky)
    rep = run_extract(config(lst, tmp_path / "store"))
    bad = prompt_key("Fast bright strings")
    assert (bad, "hashtext", "encode") in {(f.clip_id, f.encoder, f.stage) for f in rep.failures}
    group = open_store(tmp_path / "store").group("hashtext")
    assert bad not in group.clip_ids() and len(group.clip_ids()) == 2
    monkeypatch.setattr(HashTextEncoder, "encode_report", real)
    rep = run_extract(config(lst, tmp_path / "store"))  # a rerun repairs it
    assert rep.written["hashtext"] == 1 and bad in open_store(tmp_path / "store").group("hashtext").clip_ids()


def test_truncated_prompts_are_counted(tmp_path):
    long = " ".join(f"word{i}" for i in range(200))
    lst = make_corpus(tmp_path / "me", ["S002_P001", "S002_P002"], {"P001": long, "P002": "short"})
    rep = run_extract(config(lst, tmp_path / "store"))
    (res,) = rep.text
    assert (res.distinct, res.written, res.truncated) == (2, 2, 1)
    assert open_store(tmp_path / "store").group("hashtext").read(prompt_key(long)).shape == (128, 64)


def test_cli_exit_codes_and_prompt_options(tmp_path, capsys):
    lst = make_corpus(tmp_path / "me")
    store = tmp_path / "store"
    args = ["extract", "--manifest", str(lst), "--store", str(store), "--no-progress"]
    assert main([*args, "--task", "track1", "--encoders", "logmel,hashtext"]) == 3
    assert "3 distinct prompts" in capsys.readouterr().out
    assert main([*args, "--encoders", "hashtext"]) == 2  # text encoders need --task track1
    assert "--task track1" in capsys.readouterr().err
    assert main([*args, "--task", "track1", "--encoders", "roberta"]) == 2  # roberta needs weights
    # a folder of audio with one prompt for all
    folder = tmp_path / "me" / "wav"
    store2 = tmp_path / "store2"
    assert main(["extract", "--manifest", str(folder), "--store", str(store2), "--no-progress", "--task", "track1",
                 "--encoders", "hashtext", "--prompt", "Any music"]) == 0
    assert open_store(store2).group("hashtext").clip_ids() == [prompt_key("Any music")]


def test_prompts_option_points_at_the_tables(tmp_path):
    lst = make_corpus(tmp_path / "me")
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "prompt_info.txt").write_text("id\ttext\nP001\tone\nP002\ttwo\nP003\tthree\nP099\tfour\n")
    rep = run_extract(config(lst, tmp_path / "store", prompts=str(tables)))
    assert rep.failures == []
    assert sorted(open_store(tmp_path / "store").group("hashtext").clip_ids()) == sorted(
        prompt_key(t) for t in ("one", "two", "three", "four"))
