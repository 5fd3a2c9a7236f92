"""The synthetic Track 1 corpus: MusicEval formats that load cleanly, labels that follow the known factors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from mmmos.app.demos.track1_corpus import PAM_SYSTEMS, TRAIN_SYSTEMS, make_track1_corpus
from mmmos.core.manifests import Problem, load_manifest


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("t1corpus")
    info = make_track1_corpus(out, seed=3, n_train=90, n_dev=30, n_pam=20, durations=(1.0, 1.5))
    return info, pl.read_csv(info["factors"])


def test_lists_load_for_track1_with_every_prompt(corpus):
    info, _ = corpus
    assert info["n_clips"] == {"train": 90, "dev": 30, "pam_dev": 20}
    for split in ("train", "dev", "pam_dev"):
        problems: list[Problem] = []
        df = load_manifest(info[split], task="track1", problems=problems)
        assert problems == [] and df.height == info["n_clips"][split]
        assert df["prompt"].null_count() == 0 and all(Path(p).is_file() for p in df["path"])
        for axis in ("MI", "TA"):
            v = df[axis].to_numpy()
            assert ((v >= 1) & (v <= 5)).all()
            assert np.allclose(v * 5, np.round(v * 5), atol=1e-9)  # means of 5 ratings
    ev = load_manifest(info["eval_list"], task="track1", problems=[])
    assert ev.height == 30 and ev["prompt"].null_count() == 0


def test_systems_prompts_and_demo_table(corpus):
    info, f = corpus
    train_sys = set(f.filter(pl.col("split") != "pam_dev")["system"])
    pam_sys = set(f.filter(pl.col("split") == "pam_dev")["system"])
    assert train_sys <= {s.name for s in TRAIN_SYSTEMS} and pam_sys <= {s.name for s in PAM_SYSTEMS}
    assert len(train_sys) >= 6 and len(pam_sys) >= 2
    assert info["n_prompts"] < f.height  # prompts are shared across clips
    demo = Path(info["demo_prompt_info"]).read_text().splitlines()[1:]
    assert demo and all(line.split("\t")[0].split("-")[-1].startswith(("S001_", "S006_")) for line in demo)


def test_overall_impression_falls_with_degradation(corpus):
    _, f = corpus
    assert np.corrcoef(f["severity"], f["MI"])[0, 1] < -0.7
    low, high = f.filter(pl.col("severity") < 0.3)["MI"].mean(), f.filter(pl.col("severity") > 0.7)["MI"].mean()
    assert low - high > 1.0


def test_text_alignment_falls_when_audio_contradicts_the_prompt(corpus):
    _, f = corpus
    match = 0.35 * f["matched_tempo"] + 0.40 * f["matched_instrument"] + 0.25 * f["matched_brightness"]
    assert np.corrcoef(match, f["TA"])[0, 1] > 0.7
    for k in ("tempo", "instrument", "brightness"):
        yes, no = f.filter(pl.col(f"matched_{k}") == 1)["TA"].mean(), f.filter(pl.col(f"matched_{k}") == 0)["TA"].mean()
        assert yes > no + 0.3, k
    assert abs(np.corrcoef(match, f["MI"])[0, 1]) < 0.3  # MI does not follow the prompt


def test_audio_follows_rendered_brightness(corpus):
    info, f = corpus
    clean = f.filter(pl.col("severity") < 0.5)

    def centroid(cid):
        x, sr = sf.read(Path(info["out_dir"]) / "wav" / f"{cid}.wav")
        mag = np.abs(np.fft.rfft(x))
        return float((np.fft.rfftfreq(len(x), 1 / sr) * mag).sum() / mag.sum())

    bright = [centroid(c) for c in clean.filter(pl.col("rendered_brightness") == "bright")["clip_id"]]
    warm = [centroid(c) for c in clean.filter(pl.col("rendered_brightness") == "warm")["clip_id"]]
    assert np.median(bright) > np.median(warm)


def test_same_seed_same_corpus(tmp_path):
    a = make_track1_corpus(tmp_path / "a", seed=5, n_train=6, n_dev=2, n_pam=2, durations=(0.5, 0.6))
    b = make_track1_corpus(tmp_path / "b", seed=5, n_train=6, n_dev=2, n_pam=2, durations=(0.5, 0.6))
    for k in ("train", "dev", "pam_dev"):
        assert Path(a[k]).read_text() == Path(b[k]).read_text()
    with pytest.raises(ValueError, match="at most"):
        make_track1_corpus(tmp_path / "c", n_train=10_000)
