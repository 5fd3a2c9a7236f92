"""mmmos.app.demos.track2_corpus: the synthetic corpus is deterministic, well-formed and learnable."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf
from scipy import signal, stats

from mmmos.app.demos.track2_corpus import DEGRADATIONS, PAM_SYSTEMS, TRAIN_SYSTEMS, degrade, make_demo_corpus
from mmmos.core.manifests import AXES, COLUMNS, infer_system, load_manifest, validate_manifest


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    info = make_demo_corpus(out, seed=0)  # the default sizes: 120 / 40 / 40
    frames = {s: load_manifest(info[s]) for s in ("train", "dev", "pam_dev")}
    with open(info["factors"], newline="") as f:
        factors = list(csv.DictReader(f))
    return info, frames, factors


def test_manifests_load_with_all_columns(corpus):
    info, frames, factors = corpus
    assert info["n_clips"] == {"train": 120, "dev": 40, "pam_dev": 40}
    for split, df in frames.items():
        assert tuple(df.columns) == COLUMNS
        assert df.height == info["n_clips"][split]
        assert set(df.get_column("split").to_list()) == {split}
        for col in COLUMNS:
            if col == "prompt":  # Track 2 clips have no prompt
                continue
            assert df.get_column(col).null_count() == 0, (split, col)
        assert validate_manifest(df, check_files=True, require_labels=True) == []
    all_ids = pl.concat(list(frames.values())).get_column("clip_id")
    assert all_ids.n_unique() == all_ids.len() == len(factors)
    assert Path(info["readme"]).read_text().count("n_sources") >= 1


def test_labels_look_like_means_of_ten_ratings(corpus):
    _, frames, factors = corpus
    df = pl.concat(list(frames.values()))
    for axis in AXES:
        v = df.get_column(axis).to_numpy()
        assert v.min() >= 0.0 and v.max() <= 10.0
        np.testing.assert_allclose(v * 10, np.round(v * 10), atol=1e-9)  # multiples of 0.1
        assert v.std() > 0.8  # labels vary
    # factors.csv agrees with the manifests
    by_id = {r["clip_id"]: r for r in factors}
    for r in df.iter_rows(named=True):
        assert [float(by_id[r["clip_id"]][a]) for a in AXES] == [r[a] for a in AXES]
        assert by_id[r["clip_id"]]["system"] == r["system"]


def test_durations_and_format(corpus):
    _, frames, factors = corpus
    durations = []
    for df in frames.values():
        for p in df.get_column("path").to_list():
            info = sf.info(p)
            assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
            durations.append(info.frames / info.samplerate)
    d = np.array(durations)
    assert d.min() >= 2.0 - 1e-6 and d.max() <= 20.0 + 1e-6
    assert 0.15 < np.mean(d >= 10.0) < 0.5  # some clips need cropping to 10 s


def test_pq_falls_with_severity_pc_rises_with_sources(corpus):
    _, _, factors = corpus
    sev = np.array([float(r["effective_severity"]) for r in factors])
    level = np.array([int(r["level"]) for r in factors])
    pq = np.array([float(r["PQ"]) for r in factors])
    assert stats.spearmanr(pq, sev)[0] < -0.8
    means = [pq[level == k].mean() for k in range(6)]
    assert all(a > b for a, b in zip(means, means[1:])), means
    n_src = np.array([int(r["n_sources"]) for r in factors])
    pc = np.array([float(r["PC"]) for r in factors])
    assert stats.spearmanr(pc, n_src)[0] > 0.8
    assert set(n_src) == {1, 2, 3, 4}
    kinds = {r["degradation"] for r in factors}
    assert kinds == {"none", *DEGRADATIONS}


def test_pam_systems_are_unseen(corpus):
    _, frames, _ = corpus
    train_sys = set(frames["train"].get_column("system").to_list())
    assert train_sys == {s.name for s in TRAIN_SYSTEMS}
    assert set(frames["dev"].get_column("system").to_list()) <= train_sys
    pam = frames["pam_dev"]
    assert set(pam.get_column("system").to_list()) == {s.name for s in PAM_SYSTEMS}
    assert not train_sys & set(pam.get_column("system").to_list())
    assert set(pam.get_column("domain").to_list()) <= {"music", "sound"}
    for r in pam.iter_rows(named=True):  # AES-PAM layout: the folder names the system
        assert "/PAM/human_eval/" in r["path"] and infer_system(None, r["path"]) == r["system"]


def test_deterministic_and_seed_dependent(tmp_path):
    kw = dict(n_train=4, n_dev=2, n_pam=2, durations=(2.0, 3.0))
    a = make_demo_corpus(tmp_path / "a", seed=7, **kw)
    make_demo_corpus(tmp_path / "b", seed=7, **kw)
    make_demo_corpus(tmp_path / "c", seed=8, **kw)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 8 + 5  # clips + 3 manifests, factors, README
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    wav = [r for r in files if r.suffix == ".wav"]
    assert all((tmp_path / "a" / r).read_bytes() != (tmp_path / "c" / r).read_bytes() for r in wav)
    # Each clip depends only on (seed, split, index): more train clips leave dev unchanged.
    make_demo_corpus(tmp_path / "d", seed=7, **{**kw, "n_train": 6})
    dev_wavs = [r for r in wav if "/dev/" in r.as_posix()]
    assert dev_wavs and all((tmp_path / "a" / r).read_bytes() == (tmp_path / "d" / r).read_bytes() for r in dev_wavs)
    assert a["n_clips"] == {"train": 4, "dev": 2, "pam_dev": 2}


@pytest.mark.parametrize("sr", [8000, 24000, 44100])
def test_other_sample_rates(tmp_path, sr):
    info = make_demo_corpus(tmp_path, n_train=8, n_dev=0, n_pam=4, sample_rate=sr, durations=(2.0, 2.5))
    for split in ("train", "pam_dev"):
        for p in load_manifest(info[split]).get_column("path").to_list():
            x, got = sf.read(p)
            assert got == sr and np.isfinite(x).all() and np.abs(x).max() > 0.01


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        make_demo_corpus(tmp_path, n_train=-1)
    with pytest.raises(ValueError):
        make_demo_corpus(tmp_path, durations=(5.0, 2.0))
    with pytest.raises(ValueError):
        make_demo_corpus(tmp_path, sample_rate=4000)


# --------------------------------------------------------------------------- degradations


def _clean(n=16000 * 2, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    return 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(n)


@pytest.mark.parametrize("level", [1, 3, 5])
def test_noise_degradation_hits_its_snr(level):
    x = _clean()
    y = degrade(x, 16000, "noise", level, np.random.default_rng(1))
    snr = 10 * np.log10(np.sum(x**2) / np.sum((y - x) ** 2))
    assert snr == pytest.approx(DEGRADATIONS["noise"][1][level - 1], abs=1e-6)


def test_other_degradations_do_what_they_say():
    x, sr, rng = _clean(), 16000, np.random.default_rng(2)
    peak = np.max(np.abs(x))
    setting = {k: v[1] for k, v in DEGRADATIONS.items()}
    clipped = degrade(x, sr, "clipping", 3, rng)
    thr = peak * 10 ** (-setting["clipping"][2] / 20)
    np.testing.assert_allclose(clipped, np.clip(x, -thr, thr) * peak / thr)
    assert np.mean(np.abs(clipped) >= peak * (1 - 1e-9)) > 0.2  # a large share sits at the rail

    bits = setting["quantise"][4]
    q = degrade(x, sr, "quantise", 5, rng)  # mu-law: companded values sit on a grid of 2**(bits-1)
    companded = np.sign(q) * np.log1p(255 * np.abs(q) / peak) / np.log(256) * 2 ** (bits - 1)
    np.testing.assert_allclose(companded, np.round(companded), atol=1e-6)
    assert np.unique(np.round(companded)).size <= 2**bits + 1
    assert np.mean(q == 0) < 0.5  # quiet passages are coarsened, not gated to silence

    k = int(setting["resample"][3])
    held = degrade(x, sr, "resample", 4, rng)  # decimation without filter, sample-and-hold
    blocks = held[: held.size // k * k].reshape(-1, k)
    assert np.all(blocks == blocks[:, :1]) and np.array_equal(blocks[:, 0], x[: blocks.shape[0] * k : k])

    fc = setting["bandlimit"][2] * sr / 2
    white = np.random.default_rng(3).standard_normal(sr * 4)
    low = degrade(white, sr, "bandlimit", 3, rng)
    f, p_in = signal.welch(white, sr, nperseg=1024)
    _, p_out = signal.welch(low, sr, nperseg=1024)
    gain = 10 * np.log10(p_out / p_in)
    assert np.all(np.abs(gain[(f > 100) & (f < 0.7 * fc)]) < 1.0)
    assert abs(np.interp(fc, f, gain) + 3.0) < 1.5  # -3 dB at the cutoff
    assert np.all(gain[f > 2 * fc] < -40)

    assert np.array_equal(degrade(x, sr, "none", 0, rng), x)
    with pytest.raises(ValueError):
        degrade(x, sr, "reverb", 1, rng)
    with pytest.raises(ValueError):
        degrade(x, sr, "noise", 6, rng)


# --------------------------------------------------------------------------- learnability


def _features(path: str) -> np.ndarray:
    """A few log-spectral statistics: band shape of loud frames, noise floor per band,
    flatness of loud frames, crest factor."""
    x, _ = sf.read(path, dtype="float64")
    frames = np.lib.stride_tricks.sliding_window_view(x, 512)[::256] * np.hanning(512)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-10
    edges = np.unique(np.geomspace(2, power.shape[1] - 1, 9).astype(int))
    bands = np.log(np.stack([power[:, a:b].mean(1) for a, b in zip(edges[:-1], edges[1:])], 1))
    energy = np.log(power.sum(1))
    loud = energy >= np.median(energy)
    shape = bands[loud].mean(0) - energy[loud].mean()
    floor = np.percentile(bands, 10, axis=0) - bands[loud].mean(0)
    flat = np.mean(np.log(power[loud]).mean(1) - np.log(power[loud].mean(1)))
    crest = np.log(np.max(np.abs(x)) / np.sqrt(np.mean(x**2)))
    return np.concatenate([shape, floor, [flat, crest]])


def test_pq_is_learnable_from_simple_features(corpus):
    """Kernel ridge (RBF) on the features above, fit on train, predicts dev PQ; with the
    training labels shuffled (a pipeline that lost the label-audio link) it does not."""
    _, frames, _ = corpus

    def xy(df):
        return np.stack([_features(p) for p in df.get_column("path").to_list()]), df.get_column("PQ").to_numpy()

    x_tr, y_tr = xy(frames["train"])
    x_dev, y_dev = xy(frames["dev"])
    mu, sd = x_tr.mean(0), x_tr.std(0)
    z_tr, z_dev = (x_tr - mu) / sd, (x_dev - mu) / sd

    def rbf(a, b):
        return np.exp(-0.05 * ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    k_train, k_dev = rbf(z_tr, z_tr), rbf(z_dev, z_tr)

    def fit_predict(y):
        return k_dev @ np.linalg.solve(k_train + 0.1 * np.eye(len(z_tr)), y - y.mean())

    real = stats.spearmanr(fit_predict(y_tr), y_dev)[0]
    assert real > 0.5
    # Permutation test: the real fit beats every one of 20 fits on shuffled labels.
    rng = np.random.default_rng(0)
    null = [stats.spearmanr(fit_predict(rng.permutation(y_tr)), y_dev)[0] for _ in range(20)]
    assert real > max(null) and abs(np.mean(null)) < 0.2


@pytest.mark.parametrize("cut_at", [3, 9])
def test_an_interrupted_rewrite_leaves_no_list_describing_other_audio(tmp_path, monkeypatch, cut_at):
    """A corpus rewritten with another seed and cut short (Ctrl-C in the 4th clip: train; the 10th: dev) used to
    keep the old seed's lists beside new audio (labels of other clips, silently).  Now no listing file survives a
    cut, no clip is left half-written under its name, and the re-run gives the corpus a fresh one would."""
    from mmmos.app.demos import track2_corpus as tc

    sizes = dict(n_train=6, n_dev=6, n_pam=4, durations=(0.5, 1.0))
    make_demo_corpus(tmp_path / "c", seed=0, **sizes)
    real_write, calls = sf.write, []

    def cut_write(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == cut_at + 1:
            real_write(path, *args, **kwargs)
            Path(path).write_bytes(Path(path).read_bytes()[:100])  # part of the clip is on disk
            raise KeyboardInterrupt
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(tc.sf, "write", cut_write)
    with pytest.raises(KeyboardInterrupt):
        make_demo_corpus(tmp_path / "c", seed=1, **sizes)
    monkeypatch.undo()
    out = tmp_path / "c"
    assert not [n for n in ("train.csv", "dev.csv", "pam_dev.csv", "factors.csv", "README.txt") if (out / n).exists()]
    for wav in out.rglob("*.wav"):
        assert sf.info(wav).frames > 0, wav  # every clip under its own name is whole
    make_demo_corpus(out, seed=1, **sizes)
    make_demo_corpus(tmp_path / "fresh", seed=1, **sizes)
    for name in ("train.csv", "dev.csv", "pam_dev.csv", "factors.csv"):
        assert (out / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes()
    for wav in (tmp_path / "fresh").rglob("*.wav"):
        assert (out / wav.relative_to(tmp_path / "fresh")).read_bytes() == wav.read_bytes()


def test_an_interrupted_track1_corpus_leaves_no_list(tmp_path, monkeypatch):
    """The Track 1 corpus likewise: the demo reuses a corpus whose pam_dev list exists, so a run cut after that
    list but before the prompt tables used to be reused without them.  Lists now come after all audio."""
    from mmmos.app.demos import track1_corpus as t1

    sizes = dict(n_train=6, n_dev=4, n_pam=3)
    t1.make_track1_corpus(tmp_path / "c", seed=0, **sizes)
    real_write, calls = t1.sf.write, []

    def cut_write(path, *args, **kwargs):  # Ctrl-C while the first PAM clip is written (after train and dev)
        calls.append(path)
        if len(calls) == 11:
            raise KeyboardInterrupt
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(t1.sf, "write", cut_write)
    with pytest.raises(KeyboardInterrupt):
        t1.make_track1_corpus(tmp_path / "c", seed=1, **sizes)
    monkeypatch.undo()
    lists = ["sets/train_mos_list.txt", "sets/dev_mos_list.txt", "sets/pam_dev_mos_list.txt", "prompt_info.txt",
             "demo_prompt_info.txt", "eval_list.txt", "factors.csv"]
    assert not [n for n in lists if (tmp_path / "c" / n).exists()]
    t1.make_track1_corpus(tmp_path / "c", seed=1, **sizes)
    t1.make_track1_corpus(tmp_path / "fresh", seed=1, **sizes)
    for f in (tmp_path / "fresh").rglob("*"):
        if f.is_file():
            assert (tmp_path / "c" / f.relative_to(tmp_path / "fresh")).read_bytes() == f.read_bytes(), f
