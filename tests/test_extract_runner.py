"""The extraction runner end to end: bad input, tiny real encoders, resume after SIGKILL."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf

from mmmos import extract
from mmmos.cache_store import open_store
from mmmos.extract.precision import resolve_precision
from mmmos.extract.runner import ExtractConfig, embed_many, run_extract
from mmmos.core.audio import load_audio, resample

REPO = Path(__file__).resolve().parents[1]


def _tone(sr, seconds, ch=1, f=440.0):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * f * t) + 0.01 * np.random.default_rng(0).standard_normal(len(t))
    return np.tile(x[:, None], (1, ch)).astype(np.float32) if ch > 1 else x.astype(np.float32)


def _manifest(path: Path, rows: list[tuple[str, str]]):
    pl.DataFrame({"clip_id": [r[0] for r in rows], "path": [r[1] for r in rows]}).write_csv(path)
    return str(path)


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    rows = []

    def add(cid, name):
        rows.append((cid, str(d / name)))

    for ch in (1, 2, 6, 8):
        sf.write(d / f"ch{ch}.wav", _tone(16000, 2.0, ch), 16000)
        add(f"ch{ch}", f"ch{ch}.wav")
    for sr in (8000, 22050, 44100, 48000, 96000):
        sf.write(d / f"sr{sr}.flac", _tone(sr, 1.5), sr)
        add(f"sr{sr}", f"sr{sr}.flac")
    sf.write(d / "tone.mp3", _tone(44100, 2.0), 44100)
    add("mp3", "tone.mp3")
    sf.write(d / "silent.wav", np.zeros(16000, np.float32), 16000)
    add("silent", "silent.wav")
    sf.write(d / "long.wav", _tone(16000, 600.0), 16000)  # 10 minutes
    add("long", "long.wav")
    sf.write(d / "tiny.wav", _tone(16000, 0.01), 16000)  # 160 samples < one 400-sample frame
    add("tiny", "tiny.wav")
    sf.write(d / "empty.wav", np.zeros(0, np.float32), 16000)
    add("empty", "empty.wav")
    nan = _tone(16000, 1.0)
    nan[100] = np.nan
    sf.write(d / "nan.wav", nan, 16000, subtype="FLOAT")
    add("nan", "nan.wav")
    (d / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + os.urandom(200))
    add("corrupt", "corrupt.wav")
    (d / "notes.wav").write_text("this is a text file, not audio\n")
    add("text", "notes.wav")
    add("missing", "does_not_exist.wav")
    rows.append(("dup", str(d / "ch1.wav")))
    rows.append(("dup", str(d / "ch2.wav")))  # duplicated id, different file
    man = d / "m.csv"
    _manifest(man, rows)
    # a row without a path
    text = man.read_text() + "nopath,\n"
    man.write_text(text)
    return d, str(man)


GOOD = ["ch1", "ch2", "ch6", "ch8", "sr8000", "sr22050", "sr44100", "sr48000", "sr96000", "mp3", "silent", "long", "dup"]
BAD = {"tiny": "shorter than one", "empty": "", "nan": "", "corrupt": "", "text": "", "missing": "", "nopath": "no audio path"}


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_bad_input_is_reported_and_good_clips_are_correct(bad_corpus, tmp_path, backend):
    d, man = bad_corpus
    rep = run_extract(ExtractConfig(manifests=[man], store=str(tmp_path / "c"), encoders=["logmel"], backend=backend,
                                    progress=False))
    failed = {f.clip_id: f for f in rep.failures}
    for cid, needle in BAD.items():
        assert cid in failed, f"{cid} not reported"
        assert needle in failed[cid].error
    for cid in ("corrupt", "text", "missing", "empty", "nan"):  # the error names the file
        assert Path(failed[cid].path).name in failed[cid].error
    assert "duplicated clip id" in failed["dup"].error
    # the failure report on disk lists the same
    csv = pl.read_csv(tmp_path / "c" / "extract_failures.csv")
    assert set(BAD) <= set(csv["clip_id"].to_list())
    g = open_store(tmp_path / "c").group("logmel")
    assert sorted(g.clip_ids()) == sorted(GOOD)
    enc = extract.load_encoder("logmel")
    for cid in ("ch6", "sr96000", "mp3", "dup"):
        path = {"dup": d / "ch1.wav", "mp3": d / "tone.mp3"}.get(cid, None) or next(d.glob(f"{cid}.*"))
        w, sr = load_audio(path)
        want = enc.embed(resample(w, sr, 16000)).astype(np.float16)
        np.testing.assert_array_equal(g.read(cid), want)
        assert abs(g.clip(cid).duration - len(w) / sr) < 1e-6
    assert g.clip("long").n_frames == enc.expected_frames(600 * 16000)
    assert np.isfinite(g.read("silent").astype(np.float32)).all()


@pytest.mark.parametrize("feed", [dict(overlap=True), dict(overlap=True, decode_workers=3, batch_size=4,
                                                             group_seconds=600.0)])
def test_background_threads_and_decode_pool_give_the_same_cache(bad_corpus, tmp_path, feed):
    """Decoding ahead, writing in a thread and (as beside a GPU) a decode pool with larger groups and
    batches store the same bits and the same failures as the plain in-line run."""
    _, man = bad_corpus
    reps = {}
    for name, kw in (("plain", dict(overlap=False)), ("fed", feed)):
        reps[name] = run_extract(ExtractConfig(manifests=[man], store=str(tmp_path / name),
                                               encoders=["logmel", "logmel_slow"], progress=False, **kw))
    assert reps["fed"].written == reps["plain"].written
    assert sorted((f.clip_id, f.encoder, f.stage) for f in reps["fed"].failures) == \
        sorted((f.clip_id, f.encoder, f.stage) for f in reps["plain"].failures)
    assert reps["fed"].decode_seconds > 0 and reps["fed"].resample_seconds > 0 and reps["fed"].write_seconds > 0
    for name in ("logmel", "logmel_slow"):
        a, b = open_store(tmp_path / "plain").group(name), open_store(tmp_path / "fed").group(name)
        assert a.clip_ids() == b.clip_ids()
        for cid in a.clip_ids():
            np.testing.assert_array_equal(a.read(cid), b.read(cid))


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_each_clip_records_how_it_was_computed(bad_corpus, tmp_path, backend, capsys):
    """The batch policy (device, batch size, threads, precision) is recorded with every clip, sealed by its
    metadata checksum, and `mmmos cache` lists the policies a group holds with their clip counts."""
    import json

    import torch

    from cache_store.records import clip_attributes, clip_from_attributes, clip_key
    from mmmos.app.cli import main

    _, man = bad_corpus
    store = tmp_path / "c"
    for bs in (1, 4):  # the second run repairs nothing: only a re-extraction with --replace would mix policies
        run_extract(ExtractConfig(manifests=[man], store=str(store), encoders=["logmel"], backend=backend,
                                  batch_size=bs, progress=False, device="cpu"))
    g = open_store(store).group("logmel")
    want = {"device": "cpu", "batch_size": 1, "threads": torch.get_num_threads(), "precision": "fp32"}
    assert {json.dumps(g.index[c].computed, sort_keys=True) for c in g.clip_ids()} == {json.dumps(want, sort_keys=True)}
    assert main(["cache", str(store)]) == 0
    out = capsys.readouterr().out
    assert (f"computed on cpu, batch 1, {want['threads']} thread(s), fp32: {len(GOOD)} clips") in out
    # sealed: a changed policy fails the metadata check like any other altered attribute
    attrs = clip_attributes("x", None, 1.0, np.zeros((3, 2), np.float16), None, want)
    attrs["computed"] = dict(want, batch_size=8)
    with pytest.raises(ValueError, match="meta_crc32"):
        clip_from_attributes(attrs, clip_key("x"), 2, (3, 2))


def test_resume_skips_done_clips(bad_corpus, tmp_path):
    _, man = bad_corpus
    cfg = ExtractConfig(manifests=[man], store=str(tmp_path / "c"), encoders=["logmel"], progress=False)
    first = run_extract(cfg)
    again = run_extract(cfg)
    assert first.written["logmel"] == len(GOOD)
    assert again.written["logmel"] == 0 and again.skipped["logmel"] == len(GOOD)
    assert {f.clip_id for f in again.failures} == {f.clip_id for f in first.failures}  # bad ones retried, reported


def test_batched_equals_one_at_a_time():
    enc = extract.load_encoder("logmel")
    rng = np.random.default_rng(0)
    waves = {f"c{i}": rng.standard_normal(n).astype(np.float32) for i, n in enumerate([16000, 16000, 16000, 40000, 500])}
    got = embed_many(enc, waves, batch_size=2)
    for k, w in waves.items():
        np.testing.assert_array_equal(got[k], enc.embed(w))


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from mmmos.testing import m2d, wavlm
    from mmmos.testing import muq as muq_encoder

    d = tmp_path_factory.mktemp("w")
    return {"wavlm": str(wavlm.write_random_checkpoint(d / "wavlm", "tiny")),
            "muq": str(muq_encoder.write_random_checkpoint(d / "muq", "tiny")),
            "m2d": str(m2d.write_random_checkpoint(d / "m2d", "tiny", input_frames=608))}


def test_tiny_real_encoders_through_the_runner(tmp_path, tiny_weights):
    sf.write(tmp_path / "a.wav", _tone(44100, 10.0, 2), 44100)
    sf.write(tmp_path / "b.wav", _tone(16000, 3.0), 16000)
    man = _manifest(tmp_path / "m.csv", [("a", str(tmp_path / "a.wav")), ("b", str(tmp_path / "b.wav"))])
    rep = run_extract(ExtractConfig(manifests=[man], store=str(tmp_path / "c"), encoders=["wavlm", "muq", "m2d"],
                                    weights=tiny_weights, progress=False))
    assert not rep.failures, rep.failures
    st = open_store(tmp_path / "c")
    expect = {"wavlm": 499, "muq": 250, "m2d": 63}
    for name, n in expect.items():
        g = st.group(name)
        assert g.clip("a").n_frames == n
        assert g.info.identity["sha256"]  # weights identity recorded
    # each encoder got audio at its own rate: compare with a direct embed in the precision the store records
    # (``auto`` is bf16 on a CPU with native bf16 or under MMMOS_CPU_BF16=1, fp32 otherwise)
    precision = st.group("muq").info.identity["config"]["compute_precision"]
    assert precision == resolve_precision("auto", "cpu", "muq")
    enc = extract.load_encoder("muq", tiny_weights["muq"])
    w, sr = load_audio(tmp_path / "b.wav")
    want = embed_many(enc, {"b": resample(w, sr, 24000)}, 1, precision)["b"]
    np.testing.assert_allclose(st.group("muq").read("b").astype(np.float32), want, rtol=2e-3, atol=2e-3)


def test_bad_weights_fail_that_encoder_only(tmp_path, tiny_weights):
    import torch

    from mmmos.testing.wavlm import write_random_checkpoint

    sf.write(tmp_path / "a.wav", _tone(16000, 2.0), 16000)
    man = _manifest(tmp_path / "m.csv", [("a", str(tmp_path / "a.wav"))])
    # WavLM with a key removed
    broken = write_random_checkpoint(tmp_path / "broken", "tiny", fmt="hf")
    sd = torch.load(Path(broken) / "pytorch_model.bin", weights_only=True)
    removed = sorted(sd)[3]
    del sd[removed]
    torch.save(sd, Path(broken) / "pytorch_model.bin")
    rep = run_extract(ExtractConfig(manifests=[man], store=str(tmp_path / "c"), encoders=["wavlm", "m2d", "logmel"],
                                    weights={"wavlm": str(broken), "m2d": tiny_weights["wavlm"]}, progress=False))
    loads = {f.encoder: f.error for f in rep.failures if f.stage == "load"}
    assert set(loads) == {"wavlm", "m2d"}
    assert removed.split(".")[-1] in loads["wavlm"]
    assert rep.written == {"logmel": 1}  # the run went on with the encoder that loaded
    assert [i.name for i in open_store(tmp_path / "c").encoders()] == ["logmel"]  # no random-weight frames


@pytest.mark.parametrize("backend", ["zarr", "hdf5"])
def test_sigkill_then_resume_leaves_every_clip_complete_or_absent(tmp_path, backend):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(80):
        p = tmp_path / f"c{i:02d}.wav"
        sf.write(p, (0.1 * rng.standard_normal(int(16000 * rng.uniform(20, 40)))).astype(np.float32), 16000)
        rows.append((f"clip{i:02d}", str(p)))
    man = _manifest(tmp_path / "m.csv", rows)
    store = tmp_path / "c"
    cmd = [sys.executable, "-m", "mmmos", "extract", "--manifest", man, "--store", str(store), "--encoders",
           "logmel", "--backend", backend, "--no-progress", "--batch-size", "2"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    # zarr commits each clip, hdf5 a part of 32 clips: kill after the first commits
    pattern, enough = ("clips/*/zarr.json", 3) if backend == "zarr" else ("parts/*.h5", 1)
    while time.time() < deadline and len(list(store.glob(f"encoders/*/{pattern}"))) < enough:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    g = open_store(store).group("logmel")
    partial = g.clip_ids()
    assert 0 < len(partial) < len(rows), "kill did not land mid-run"
    enc = extract.load_encoder("logmel")
    for cid in partial:  # every visible clip is complete and correct
        x = g.read(cid)
        assert x.shape[0] == g.clip(cid).n_frames == enc.expected_frames(int(round(g.clip(cid).duration * 16000)))
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    g = open_store(store).group("logmel")
    ids = g.clip_ids()
    assert ids == sorted(c for c, _ in rows)  # all present, none twice
    assert len(ids) == len(set(ids))
    for cid, path in rows[:5]:
        w, _ = load_audio(path)
        np.testing.assert_array_equal(g.read(cid), enc.embed(w).astype(np.float16))


def test_shards_partition_the_clips_into_one_store(tmp_path):
    rows = []
    for i in range(12):
        p = tmp_path / f"s{i}.wav"
        sf.write(p, _tone(16000, 1.0, f=200 + 50 * i), 16000)
        rows.append((f"s{i}", str(p)))
    man = _manifest(tmp_path / "m.csv", rows)
    written = []
    for k in range(3):
        rep = run_extract(ExtractConfig(manifests=[man], store=str(tmp_path / "c"), encoders=["logmel"],
                                        shard=(k, 3), progress=False))
        written.append(rep.written["logmel"])
    assert sum(written) == 12 and all(w < 12 for w in written)
    assert sorted(open_store(tmp_path / "c").group("logmel").clip_ids()) == sorted(c for c, _ in rows)


def test_precision_is_recorded_as_computed(tmp_path, tiny_weights):
    """fp16 asked on a CPU computes fp32: the store records fp32, and the frames are those of an fp32 run
    (the second run finds them cached under the same identity and writes nothing)."""
    sf.write(tmp_path / "a.wav", _tone(16000, 2.0), 16000)
    man = _manifest(tmp_path / "m.csv", [("a", str(tmp_path / "a.wav"))])
    cfg = dict(manifests=[man], store=str(tmp_path / "c"), encoders=["wavlm"], weights=tiny_weights, progress=False,
               device="cpu")
    first = run_extract(ExtractConfig(precision="fp16", **cfg))
    assert first.written == {"wavlm": 1}
    (info,) = open_store(tmp_path / "c").encoders()
    assert info.identity["config"]["compute_precision"] == "fp32"
    again = run_extract(ExtractConfig(precision="fp32", **cfg))
    assert again.written == {"wavlm": 0} and again.skipped == {"wavlm": 1}
