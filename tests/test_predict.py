"""Exported predictors and ``mmmos predict``: export round trip, equality with the sweep's own
predictions, windows, batch invariance, bad input, channels/rates, weights checks, cache reuse."""
import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf
import torch

from mmmos import sweep
from mmmos.cache_store import frame_range, identity_key, open_store
from mmmos.extract import load_encoder
from mmmos.extract.runner import ExtractConfig, run_extract
from mmmos.app.demos.track2_corpus import make_demo_corpus
from mmmos.app.predict import (MissingWeightsError, Predictor, PredictorError, WeightsMismatchError, add_arguments,
                               export_predictor, plan_windows, read_predictor_spec, run_cli)
from mmmos.core.errors import UserError

AXES = ["PQ", "PC", "CE", "CU"]
SETS = {"bienc": ("logmel",), "trienc": ("logmel", "logmel_slow")}
MEMBERS = ["trienc-mlp-utmos", "trienc-blstm_t-ccc", "bienc-mlp-contrastive"]
SR = 16000


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny heads: one torch thread is as fast and does not thrash when other jobs share the CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny real run: demo corpus -> logmel + logmel_slow cache -> 3 configurations, 2 epochs."""
    d = tmp_path_factory.mktemp("predict")
    corpus = make_demo_corpus(d / "corpus", n_train=40, n_dev=12, n_pam=8)
    store = str(d / "cache.zarr")
    rep = run_extract(ExtractConfig(manifests=[corpus["train"], corpus["dev"]], store=store,
                                    encoders=["logmel", "logmel_slow"], progress=False))
    assert not rep.failures
    cfgs = [c for c in sweep.paper_configs(SETS) if c.name in MEMBERS]
    for c in cfgs:
        c.epochs, c.lr = 2, 1e-3
    res = sweep.run_sweep(cfgs, store, d / "run", sweep.load_labels("train", corpus["train"]),
                          sweep.load_labels("dev", corpus["dev"]), [], progress=False)
    assert all("error" not in r for r in res.values()), res
    ens = export_predictor(d / "run", MEMBERS, d / "ens")
    singles = {m: export_predictor(d / "run", [m], d / f"single-{m}") for m in MEMBERS}
    return {"dir": d, "corpus": corpus, "store": store, "run": d / "run", "ens": ens, "singles": singles}


def _parser():
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p


def _cli(argv):
    """``mmmos predict`` as the CLI runs it: a UserError is one line on stderr and exit status 2."""
    try:
        return run_cli(_parser().parse_args([*argv, "--no-progress"]))
    except UserError as e:
        print(f"mmmos predict: error: {e}", file=sys.stderr)
        return 2


def _scores(df):
    return df.select(AXES).to_numpy()


def _noise_clip(seconds, seed=0, sr=SR):
    """Audio with varied structure: a few tones with slow AM over coloured noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    x = 0.05 * np.convolve(rng.standard_normal(len(t)), np.ones(4) / 4, mode="same")
    for f in rng.uniform(150, 3000, 4):
        x += 0.1 * np.sin(2 * np.pi * f * t) * (1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 1) * t))
    return x.astype(np.float32)


def _dev_clips(run):
    return pl.read_csv(run["corpus"]["dev"]).with_columns(
        pl.col("path").map_elements(lambda p: str(Path(run["corpus"]["dev"]).parent / p), return_dtype=pl.Utf8))


# -- export ---------------------------------------------------------------------------------------
def test_export_round_trip(run):
    ens = run["ens"]
    spec = json.loads((ens / "predictor.json").read_text())
    assert spec["format"] == "mmmos-predictor" and spec["version"] == 1 and spec["axes"] == AXES
    assert [m["name"] for m in spec["members"]] == MEMBERS
    keys = set()
    for m in spec["members"]:
        rec = torch.load(run["run"] / "configs" / m["name"] / "model.pt", weights_only=True)
        assert m["z_mean"] == pytest.approx(rec["z_mean"]) and m["z_std"] == pytest.approx(rec["z_std"])
        assert m["encoder_keys"] == rec["encoder_keys"] and m["head_config"] == rec["head_config"]
        assert m["crop_seconds"] == 10.0 and m["grid_rate"] == pytest.approx(rec["grid_rate"])
        sd = torch.load(ens / m["file"], weights_only=True)
        assert sd.keys() == rec["state_dict"].keys()
        for k in sd:
            assert torch.equal(sd[k], rec["state_dict"][k])
        for key, ident in zip(rec["encoder_keys"], rec["encoders"]):
            assert spec["encoders"][key]["name"] == ident["name"] and identity_key(spec["encoders"][key]) == key
        keys |= set(m["encoder_keys"])
    assert set(spec["encoders"]) == keys and len(keys) == 2  # the union: logmel and logmel_slow
    # the store's own folder keys are the identities the predictor records
    assert keys == {i.key for i in open_store(run["store"]).encoders()}
    pred = Predictor.load(ens)
    for m, member in zip(spec["members"], pred.members):
        want = torch.load(ens / m["file"], weights_only=True)
        got = member.head.state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want)
        assert not member.head.training
    # re-export replaces a predictor; other folders are refused; unknown members are named
    again = export_predictor(run["run"], MEMBERS[:1], ens.parent / "ens_again")
    export_predictor(run["run"], MEMBERS[1:], again)
    assert [m["name"] for m in read_predictor_spec(again)["members"]] == MEMBERS[1:]
    assert not (again / "members" / f"{MEMBERS[0]}.pt").exists()
    other = ens.parent / "not_a_predictor"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(PredictorError, match="not a predictor folder"):
        export_predictor(run["run"], MEMBERS[:1], other)
    with pytest.raises(PredictorError, match="no-such-config"):
        export_predictor(run["run"], ["no-such-config"], ens.parent / "x")
    with pytest.raises(PredictorError, match="not a predictor folder"):
        Predictor.load(other)


# -- equality with the sweep ------------------------------------------------------------------------
def test_predict_equals_the_sweep_for_clips_within_the_window(run, tmp_path):
    dev = run["corpus"]["dev"]
    per_member = {}
    for m, pdir in run["singles"].items():
        out = tmp_path / f"{m}.parquet"
        assert _cli([dev, "--model", str(pdir), "--out", str(out)]) == 0
        got = pl.read_parquet(out)
        ref = pl.read_parquet(run["run"] / "configs" / m / "predictions" / "dev.parquet")
        j = got.join(ref, on="clip_id", suffix="_sweep").filter(pl.col("duration") <= 10.0)
        assert j.height >= 3
        # the sweep read fp16 frames; without the same rounding the gap is ~1e-5, with it ~1e-7
        np.testing.assert_allclose(_scores(j), j.select([f"{a}_sweep" for a in AXES]).to_numpy(), atol=1e-6)
        per_member[m] = got.sort("clip_id")
    # the ensemble is the mean of its members (every clip, windows included)
    out = tmp_path / "ens.parquet"
    assert _cli([dev, "--model", str(run["ens"]), "--out", str(out)]) == 0
    ens = pl.read_parquet(out).sort("clip_id")
    np.testing.assert_allclose(_scores(ens), np.mean([_scores(d) for d in per_member.values()], axis=0), atol=1e-9)
    assert ens["error"].null_count() == ens.height


# -- windows -----------------------------------------------------------------------------------------
def test_plan_windows_by_hand():
    s, e, w = plan_windows(25.0, 10.0, 10.0)
    np.testing.assert_allclose(s, [0, 10, 20])
    np.testing.assert_allclose(e, [10, 20, 25])
    np.testing.assert_allclose(w, [0.4, 0.4, 0.2])
    s, e, w = plan_windows(22.0, 10.0, 5.0)  # overlapping: stop at the first window reaching the end
    np.testing.assert_allclose(s, [0, 5, 10, 15])
    np.testing.assert_allclose(e, [10, 15, 20, 22])
    np.testing.assert_allclose(w, np.array([10, 10, 10, 7]) / 37)
    for d in (0.3, 4.0, 10.0):
        s, e, w = plan_windows(d)
        assert list(s) == [0] and list(e) == [d] and list(w) == [1.0]
    s, e, w = plan_windows(600.0)
    assert len(s) == 60 and np.allclose(w, 1 / 60) and e[-1] == 600.0
    with pytest.raises(ValueError):
        plan_windows(20.0, 10.0, 12.0)
    with pytest.raises(ValueError):
        plan_windows(20.0, 10.0, 0.0)


def _hand_features(frames, t0, grid):
    """Window features computed here: pooled (per-encoder crop mean -> L2 -> concat) or, with
    ``grid``, the common 6.25-Hz grid (logmel frames 8k..8k+7 averaged, each encoder L2-normalised,
    concatenated, stored as fp16) cropped to the window."""
    fast, slow = frames
    if not grid:
        parts = []
        for x, r in zip(frames, (50.0, 6.25)):
            a, b = frame_range(t0, 10.0, r, len(x))
            m = x[a:b].mean(0)
            parts.append(m / np.linalg.norm(m))
        return np.concatenate(parts)[None]
    k = min(int(np.ceil(len(fast) / 8)), len(slow))
    g_fast = np.stack([fast[8 * i: min(8 * i + 8, len(fast))].mean(0) for i in range(k)])
    rows = np.concatenate([g_fast / np.linalg.norm(g_fast, axis=1, keepdims=True),
                           slow[:k] / np.linalg.norm(slow[:k], axis=1, keepdims=True)], axis=1)
    a, b = frame_range(t0, 10.0, 6.25, k)
    return rows.astype(np.float16)[a:b][None]


@pytest.mark.parametrize("member", ["trienc-mlp-utmos", "trienc-blstm_t-ccc"])
def test_window_scores_are_crop_features_computed_by_hand(run, tmp_path, member):
    """A 25-s clip: 3 windows; each window score equals the head on crop features computed here
    from the encoders directly; the clip score is their 0.4/0.4/0.2 average."""
    wave = _noise_clip(25.0, seed=3)
    f = tmp_path / "long25.wav"
    sf.write(f, wave, SR, subtype="FLOAT")
    pred = Predictor.load(run["singles"][member])
    df = pred.predict_files([f], per_window=True)
    clip, wins = df.filter(pl.col("window_start").is_null()), df.filter(pl.col("window_start").is_not_null())
    assert clip.height == 1 and wins.height == 3 and clip["n_windows"][0] == 3
    np.testing.assert_allclose(wins["window_start"].to_numpy(), [0, 10, 20])
    np.testing.assert_allclose(wins["window_end"].to_numpy(), [10, 20, 25])
    np.testing.assert_allclose(wins["weight"].to_numpy(), [0.4, 0.4, 0.2])
    m = pred.members[0]
    frames = [load_encoder(n).embed(wave).astype(np.float16).astype(np.float64) for n in ("logmel", "logmel_slow")]
    want = []
    for t0 in (0.0, 10.0, 20.0):
        x = torch.tensor(_hand_features(frames, t0, m.head.needs_frames), dtype=torch.float32)
        lengths = torch.tensor([x.shape[1]]) if m.head.needs_frames else None
        with torch.no_grad():
            z = m.head(x, lengths).numpy()[0]
        want.append(np.clip(z * m.z_std + m.z_mean, 0, 10))
    np.testing.assert_allclose(_scores(wins), np.array(want), atol=1e-4)
    np.testing.assert_allclose(_scores(clip)[0], np.array([0.4, 0.4, 0.2]) @ np.array(want), atol=1e-4)
    assert np.abs(np.diff(np.array(want), axis=0)).max() > 1e-3  # the windows differ, so order matters


def test_ten_minute_file(run, tmp_path):
    f = tmp_path / "ten_minutes.wav"
    sf.write(f, _noise_clip(600.0, seed=5), SR)
    df = Predictor.load(run["ens"]).predict_files([f], per_window=True)
    clip, wins = df.filter(pl.col("window_start").is_null()), df.filter(pl.col("window_start").is_not_null())
    assert clip["error"][0] is None and clip["n_windows"][0] == 60 and clip["duration"][0] == pytest.approx(600.0)
    assert wins.height == 60
    np.testing.assert_allclose(wins["weight"].to_numpy(), 1 / 60)
    np.testing.assert_allclose(wins["window_start"].to_numpy(), np.arange(60) * 10.0)
    np.testing.assert_allclose(_scores(clip)[0], _scores(wins).mean(0), atol=1e-9)
    assert ((_scores(wins) >= 0) & (_scores(wins) <= 10)).all()
    assert np.ptp(_scores(wins), axis=0).max() > 0  # windows are scored on their own audio


# -- batches, arrays, channels, rates ---------------------------------------------------------------
def test_same_file_same_scores_whatever_the_batch(run, tmp_path):
    dev = _dev_clips(run)
    paths = dev["path"].to_list()
    long = tmp_path / "long.wav"
    sf.write(long, _noise_clip(31.0, seed=7), SR)
    pred = Predictor.load(run["ens"])
    alone = pred.predict_files([paths[0]])
    mixed = pred.predict_files([paths[3], str(long), paths[0], paths[5], tmp_path / "missing.wav"])
    np.testing.assert_array_equal(_scores(alone)[0], _scores(mixed)[2])
    long_alone = Predictor.load(run["ens"]).predict_files([long])  # a fresh predictor too
    np.testing.assert_array_equal(_scores(long_alone)[0], _scores(mixed)[1])
    # the array API gives the file's scores
    wave, sr = sf.read(paths[0], dtype="float32")
    res = pred.predict_wave(wave, sr)
    np.testing.assert_array_equal([res[a] for a in AXES], _scores(alone)[0])
    assert res["duration"] == pytest.approx(len(wave) / sr) and alone["n_windows"][0] == len(res["windows"])
    assert sum(w["weight"] for w in res["windows"]) == pytest.approx(1.0)


def test_multichannel_and_48k_input(run, tmp_path):
    pred = Predictor.load(run["ens"])
    # stereo whose channel mean is the mono clip
    x = _noise_clip(6.0, seed=11)
    d = 0.02 * np.random.default_rng(1).standard_normal(len(x)).astype(np.float32)
    sf.write(tmp_path / "mono.wav", x, SR, subtype="FLOAT")
    sf.write(tmp_path / "stereo.wav", np.stack([x + d, x - d], 1), SR, subtype="FLOAT")
    sf.write(tmp_path / "six.flac", np.tile(x[:, None], (1, 6)), SR)
    # the same band-limited analytic signal sampled at 16 kHz and at 48 kHz
    rng = np.random.default_rng(2)
    freqs, amps, phases = rng.uniform(60, 6800, 120), rng.uniform(0.002, 0.03, 120), rng.uniform(0, 6.3, 120)

    def synth(sr):
        t = np.arange(int(5.0 * sr)) / sr
        env = 1 + 0.5 * np.sin(2 * np.pi * 0.7 * t)
        return (env * (amps[None] * np.sin(2 * np.pi * freqs[None] * t[:, None] + phases[None])).sum(1)).astype(
            np.float32)

    sf.write(tmp_path / "a16.wav", synth(16000), 16000, subtype="FLOAT")
    sf.write(tmp_path / "a48.wav", synth(48000), 48000, subtype="FLOAT")
    df = pred.predict_files([tmp_path / n for n in ("mono.wav", "stereo.wav", "six.flac", "a16.wav", "a48.wav")])
    assert df["error"].null_count() == 5
    s = _scores(df)
    np.testing.assert_allclose(s[1], s[0], atol=1e-3)
    np.testing.assert_allclose(s[2], s[0], atol=1e-3)  # 6 channels, 16-bit FLAC
    np.testing.assert_allclose(s[4], s[3], atol=2e-3)
    # control: the 48-kHz samples taken for 16-kHz audio score differently, well beyond the tolerance
    wrong = pred.predict_wave(synth(48000), 16000)
    assert max(abs(wrong[a] - s[3][k]) for k, a in enumerate(AXES)) > 2e-2


# -- bad input ----------------------------------------------------------------------------------------
def test_bad_inputs_give_error_rows_and_exit_3(run, tmp_path, capsys):
    good = _dev_clips(run)["path"].to_list()[:2]
    bad = {}
    bad["missing"] = tmp_path / "missing.wav"
    p = tmp_path / "corrupt.wav"
    sf.write(tmp_path / "ok.wav", _noise_clip(1.0), SR)
    p.write_bytes((tmp_path / "ok.wav").read_bytes()[:30])
    bad["corrupt"] = p
    p = tmp_path / "text.wav"
    p.write_text("definitely not audio\n" * 20)
    bad["non-audio"] = p
    p = tmp_path / "notes.txt"
    p.write_text("no audio here either\n")
    bad["non-audio-ext"] = p
    p = tmp_path / "empty.wav"
    sf.write(p, np.zeros(0, np.float32), SR)
    bad["zero-length"] = p
    p = tmp_path / "nan.wav"
    x = _noise_clip(1.0)
    x[50] = np.nan
    sf.write(p, x, SR, subtype="FLOAT")
    bad["nan"] = p
    p = tmp_path / "tiny.wav"
    sf.write(p, _noise_clip(0.01), SR)  # 160 samples: shorter than one 400-sample logmel frame
    bad["short"] = p
    out = tmp_path / "out.csv"
    order = [good[0], *map(str, bad.values()), good[1]]
    manifest = tmp_path / "list.csv"
    manifest.write_text("clip_id,path\nno-path,\n")
    assert _cli([*order, str(manifest), "--model", str(run["ens"]), "--out", str(out)]) == 3
    df = pl.read_csv(out)
    assert df["clip_id"][-1] == "no-path" and "no audio path" in df["error"][-1]
    df = df[:-1]
    assert df["path"].to_list() == order
    assert df["error"][0] is None and df["error"][-1] is None
    alone = Predictor.load(run["ens"]).predict_files(good)
    np.testing.assert_allclose(_scores(df[[0, df.height - 1]]), _scores(alone), atol=1e-9)
    errs = dict(zip(bad, df["error"].to_list()[1:-1]))
    expect = {"missing": "not found", "corrupt": "corrupt", "non-audio": "not an audio file",
              "non-audio-ext": "not an audio file", "zero-length": "zero length", "nan": "non-finite",
              "short": "shorter than one"}
    for k, word in expect.items():
        assert errs[k] is not None and word in errs[k], (k, errs[k])
    assert df[1:-1].select(AXES).null_count().row(0) == (len(bad),) * 4
    assert "2 of 10 clips scored" in capsys.readouterr().err
    # the API gives the same error rows and raises for bad arrays
    with pytest.raises(PredictorError, match="non-finite"):
        Predictor.load(run["ens"]).predict_wave(np.array([0.0, np.nan] * 1000), SR)
    with pytest.raises(PredictorError, match="shorter than one"):
        Predictor.load(run["ens"]).predict_wave(np.zeros(100), SR)


def test_output_formats_and_usage_errors(run, tmp_path, capsys):
    f = _dev_clips(run)["path"].to_list()[0]
    tables = {}
    for ext in ("csv", "jsonl", "parquet"):
        out = tmp_path / f"o.{ext}"
        assert _cli([f, "--model", str(run["ens"]), "--out", str(out)]) == 0
        tables[ext] = {"csv": pl.read_csv, "jsonl": pl.read_ndjson, "parquet": pl.read_parquet}[ext](out)
    capsys.readouterr()
    assert _cli([f, "--model", str(run["ens"])]) == 0  # CSV to stdout
    stdout = capsys.readouterr().out
    assert stdout.splitlines()[0] == "path,clip_id,PQ,PC,CE,CU,duration,n_windows,error"
    for t in tables.values():
        assert t.columns == ["path", "clip_id", *AXES, "duration", "n_windows", "error"]
        np.testing.assert_allclose(_scores(t), _scores(tables["parquet"]), atol=1e-9)
    assert _cli([f, "--model", str(run["ens"]), "--out", str(tmp_path / "o.xlsx")]) == 2
    assert _cli([f, "--model", str(tmp_path), "--out", str(tmp_path / "o.csv")]) == 2
    assert _cli([f, "--model", str(run["ens"]), "--hop", "20"]) == 2
    assert "hop" in capsys.readouterr().err


# -- encoder weights ------------------------------------------------------------------------------------
def test_a_model_refuses_weights_with_another_sha256(tmp_path, capsys):
    from mmmos.testing.wavlm import write_random_checkpoint
    from mmmos.heads import build_head

    ck = write_random_checkpoint(tmp_path / "wavlm_a", "tiny", seed=0)
    other = write_random_checkpoint(tmp_path / "wavlm_b", "tiny", seed=1)
    enc = load_encoder("wavlm", ck, device="cpu")
    ident = enc.identity()
    ident["config"] = {**ident["config"], "compute_precision": "fp32"}
    ident["dtype"] = "float16"
    ident = json.loads(json.dumps(ident, default=str))
    key = identity_key(ident)
    # a sweep-format model record trained on these frames (random head: only the plumbing matters)
    torch.manual_seed(0)
    head = build_head("mlp", enc.dim)
    cdir = tmp_path / "run" / "configs" / "wavlm-mlp"
    cdir.mkdir(parents=True)
    torch.save({"head_config": head.config, "state_dict": head.state_dict(), "z_mean": [5.0] * 4, "z_std": [2.0] * 4,
                "axes": AXES, "encoders": [ident], "encoder_keys": [key], "crop_seconds": 10.0, "grid_rate": 50.0},
               cdir / "model.pt")
    pdir = export_predictor(tmp_path / "run", ["wavlm-mlp"], tmp_path / "pred", weights={"wavlm": str(ck)})
    assert read_predictor_spec(pdir)["weights"] == {"wavlm": str(Path(ck).resolve())}
    res = Predictor.load(pdir, device="cpu").predict_wave(_noise_clip(2.0), SR)  # default weights: accepted
    assert all(0 <= res[a] <= 10 for a in AXES)
    sha_a = hashlib.sha256(Path(ident["weights"]).read_bytes()).hexdigest()
    sha_b = hashlib.sha256((Path(other) / "pytorch_model.bin").read_bytes()).hexdigest()
    assert ident["sha256"] == sha_a != sha_b
    with pytest.raises(WeightsMismatchError) as e:
        Predictor.load(pdir, weights={"wavlm": str(other)}, device="cpu")
    assert "wavlm" in str(e.value) and sha_a in str(e.value) and sha_b in str(e.value)
    f = tmp_path / "x.wav"
    sf.write(f, _noise_clip(1.0), SR)
    capsys.readouterr()
    assert _cli([str(f), "--model", str(pdir), "--weights", f"wavlm={other}", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert sha_a in err and sha_b in err and "wavlm" in err
    # a record whose sha differs from the (default) weights is refused too; no weights at all is named
    spec = json.loads((pdir / "predictor.json").read_text())
    spec["encoders"][key]["sha256"] = "0" * 64
    (pdir / "predictor.json").write_text(json.dumps(spec))
    with pytest.raises(WeightsMismatchError, match="0" * 64):
        Predictor.load(pdir, device="cpu")
    spec["encoders"][key].update(sha256=sha_a, weights=str(tmp_path / "gone.bin"))
    spec["weights"] = {}
    (pdir / "predictor.json").write_text(json.dumps(spec))
    with pytest.raises(MissingWeightsError, match="--weights wavlm="):
        Predictor.load(pdir, device="cpu")


# -- cache reuse ----------------------------------------------------------------------------------------
def test_cache_reuse_gives_the_audio_scores(run, tmp_path):
    dev = run["corpus"]["dev"]
    a, b = tmp_path / "audio.parquet", tmp_path / "cache.parquet"
    assert _cli([dev, "--model", str(run["ens"]), "--out", str(a), "--per-window"]) == 0
    assert _cli([dev, "--model", str(run["ens"]), "--out", str(b), "--per-window", "--cache", run["store"]]) == 0
    da, db = pl.read_parquet(a), pl.read_parquet(b)
    assert da.height == db.height > pl.read_csv(dev).height  # long clips have window rows
    assert da["clip_id"].to_list() == db["clip_id"].to_list()
    np.testing.assert_allclose(_scores(db), _scores(da), atol=1e-6)
    # the cache records each clip's source: the same files are read from it (checked by their bytes)
    from mmmos.app.predict import expand_inputs

    reused = list(Predictor.load(run["ens"], cache=run["store"]).predict_items(expand_inputs([dev])))
    assert all(r.source == "cache" and set(r.cache.status.values()) == {"reused"} for r in reused)
    # frames really come from the cache: the same clip ids with no audio behind them
    ids = pl.read_csv(dev)["clip_id"].to_list()
    gone = tmp_path / "gone.csv"
    pl.DataFrame({"clip_id": ids, "path": [str(tmp_path / "nowhere" / f"{i}.wav") for i in ids]}).write_csv(gone)
    pred = Predictor.load(run["ens"], cache=run["store"])
    res = list(pred.predict_items(list(zip(ids, pl.read_csv(gone)["path"].to_list()))))
    assert all(r.error is None and r.source == "cache" for r in res)
    clip_rows = da.filter(pl.col("window_start").is_null())
    np.testing.assert_allclose(np.stack([r.scores for r in res]), _scores(clip_rows), atol=1e-6)
    assert _cli([str(gone), "--model", str(run["ens"]), "--out", str(tmp_path / "c.csv")]) == 3  # without it


def test_load_predictor_gives_the_audio_predictor_and_the_heads_scores(run, tmp_path):
    """The one loader on a Track 2 folder: the audio predictor, whose scores equal the member's head rebuilt here
    by hand from ``predictor.json`` and the member file, on features computed here from the encoders."""
    from mmmos.app.predict import load_predictor
    from mmmos.heads import build_head_from_config

    model = Path(run["singles"]["trienc-mlp-utmos"])
    wave = _noise_clip(6.0, seed=5)
    f = tmp_path / "six.wav"
    sf.write(f, wave, SR, subtype="FLOAT")
    pred = load_predictor(model)
    assert type(pred) is Predictor
    got = _scores(pred.predict_files([f]))[0]
    m = json.loads((model / "predictor.json").read_text())["members"][0]
    head = build_head_from_config(m["head_config"])
    head.load_state_dict(torch.load(model / m["file"], map_location="cpu", weights_only=True), strict=True)
    head.eval()
    frames = [load_encoder(n).embed(wave).astype(np.float16).astype(np.float64) for n in ("logmel", "logmel_slow")]
    x = torch.tensor(_hand_features(frames, 0.0, head.needs_frames), dtype=torch.float32)
    with torch.no_grad():
        z = head(x, torch.tensor([x.shape[1]]) if head.needs_frames else None).numpy()[0]
    np.testing.assert_allclose(got, np.clip(z * np.array(m["z_std"]) + np.array(m["z_mean"]), 0, 10), atol=1e-4)
