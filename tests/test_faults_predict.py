"""Fault injection for ``mmmos predict``: stale cache reuse by clip id, windows that ignore the training
crop, a folder holding a file whose name is not UTF-8, records without a task, task-driven axes/clamping.

Each fault test failed on the code before the fix (mmmos/app/predictor.py at f553b9d): a cached clip was
reused by id whatever file it came from, windows were 10 s whatever the crop, and one non-UTF-8 file name
made the whole run fail.
"""
import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf
import torch

from mmmos.app.predict import (MissingWeightsError, Predictor, PredictorError, WeightsMismatchError, add_arguments,
                               export_predictor, read_predictor_spec, run_cli)
from mmmos.cache_store import open_store
from mmmos.core import tasks as tasks_mod
from mmmos.core.errors import UserError
from mmmos.core.rundir import ModelRecord, RunDir
from mmmos.core.sources import fingerprint
from mmmos.core.tasks import Task, get_task
from mmmos.extract import load_encoder
from mmmos.heads import build_head

SR = 16000
AXES = ["PQ", "PC", "CE", "CU"]


def _clip(seconds, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * SR))) / SR
    x = 0.05 * rng.standard_normal(len(t))
    for f in rng.uniform(150, 3000, 3):
        x += 0.1 * np.sin(2 * np.pi * f * t) * (1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 1) * t))
    return x.astype(np.float32)


def _logmel_identity():
    """The built-in logmel identity as the extractor records it in a cache (stored dtype fp16)."""
    ident = json.loads(json.dumps(load_encoder("logmel").identity(), default=str))
    return ident, {**ident, "dtype": "float16"}


def _predictor(tmp, name="p", crops=(10.0,), task="track2", axes=None):
    """A predictor of random mlp heads on logmel frames, one member per crop, written through the run records."""
    _, ident = _logmel_identity()
    from mmmos.cache_store import identity_key

    key = identity_key(ident)
    axes = list(axes or get_task(task).axes)
    run = RunDir(tmp / f"{name}-run")
    members = []
    for i, crop in enumerate(crops):
        torch.manual_seed(i)
        head = build_head("mlp", ident["dim"], len(axes))
        m = f"m{i}"
        run.config(m).write_model(ModelRecord(
            head_config=head.config, state_dict=head.state_dict(), z_mean=[5.0] * len(axes),
            z_std=[3.0] * len(axes), axes=axes, encoders=[ident], encoder_keys=[key], crop_seconds=float(crop),
            grid_rate=50.0, task=task))
        members.append(m)
    return export_predictor(run.path, members, tmp / name)


def _cli(argv):
    p = argparse.ArgumentParser()
    add_arguments(p)
    try:
        return run_cli(p.parse_args([*argv, "--no-progress"]))
    except UserError as e:
        print(f"mmmos predict: error: {e}", file=sys.stderr)
        return 2


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("audio")
    out = {}
    for name, secs, seed in (("short3", 3.0, 1), ("long12", 12.0, 2), ("other5", 5.0, 3)):
        sf.write(d / f"{name}.wav", _clip(secs, seed), SR, subtype="FLOAT")
        out[name] = d / f"{name}.wav"
    return out


def _write_cache(store, entries, with_source=True):
    """A logmel cache holding ``clip_id -> file`` frames (as `mmmos extract` stores them)."""
    ident, _ = _logmel_identity()
    enc = load_encoder("logmel")
    st = open_store(store, create=True)
    w = st.writer(ident, dtype="float16")
    for cid, f in entries.items():
        wave, sr = sf.read(f, dtype="float32")
        w.write(cid, enc.embed(wave).astype(np.float16), str(f), len(wave) / sr,
                source=fingerprint(f) if with_source else None)
    w.close()
    return store


# -- issue 8: stale reuse by clip id ---------------------------------------------------------------------
@pytest.mark.parametrize("with_source", [True, False], ids=["other-audio", "no-source-record"])
def test_a_cached_id_from_another_file_is_not_reused(tmp_path, files, capsys, with_source):
    """The cache holds clip "x" from a 3-s file; the manifest's clip "x" is a 12-s file: it must be scored
    from its own 12 s (before the fix: the 3-s frames, duration 3)."""
    pdir = _predictor(tmp_path)
    store = _write_cache(tmp_path / "cache.zarr", {"x": files["short3"]}, with_source)
    manifest = tmp_path / "list.csv"
    manifest.write_text(f"clip_id,path\nx,{files['long12']}\n")
    out = tmp_path / "out.csv"
    assert _cli([str(manifest), "--model", str(pdir), "--cache", str(store), "--out", str(out)]) == 0
    got = pl.read_csv(out)
    assert got["duration"][0] == pytest.approx(12.0)
    fresh = Predictor.load(pdir).predict_files([files["long12"]])
    np.testing.assert_allclose(got.select(AXES).to_numpy(), fresh.select(AXES).to_numpy(), atol=1e-9)
    stale = Predictor.load(pdir).predict_files([files["short3"]])
    assert np.abs(got.select(AXES).to_numpy() - stale.select(AXES).to_numpy()).max() > 1e-4
    err = capsys.readouterr().err
    why = "1 cached from different audio" if with_source else "1 cached without a source record"
    assert "0 clips reused" in err and why in err, err


def test_cached_frames_of_the_same_bytes_are_reused_under_any_id_or_path(tmp_path, files):
    pdir = _predictor(tmp_path)
    store = _write_cache(tmp_path / "cache.zarr", {"a": files["other5"], "b": files["short3"]})
    moved = tmp_path / "elsewhere" / "renamed.wav"
    moved.parent.mkdir()
    shutil.copy(files["other5"], moved)
    pred = Predictor.load(pdir, cache=store)
    res = list(pred.predict_items([("new-id", str(moved)), ("b", str(files["short3"])),
                                   ("a", str(files["long12"]))]))
    assert [r.source for r in res] == ["cache", "cache", "audio"]
    assert all(set(r.cache.status.values()) == {"reused"} for r in res[:2])
    ref = Predictor.load(pdir).predict_files([moved, files["short3"], files["long12"]])
    np.testing.assert_allclose(np.stack([r.scores for r in res]), ref.select(AXES).to_numpy(), atol=1e-9)
    assert res[2].duration == pytest.approx(12.0)


def test_the_cache_is_the_only_source_when_no_audio_is_left(tmp_path, files):
    """No file to check against: frames are read by clip id and counted as not verified (not fake)."""
    pdir = _predictor(tmp_path)
    store = _write_cache(tmp_path / "cache.zarr", {"a": files["other5"]})
    pred = Predictor.load(pdir, cache=store)
    res = list(pred.predict_items([("a", str(tmp_path / "gone.wav")), ("zz", str(tmp_path / "gone2.wav")),
                                   ("a", None)]))
    assert res[0].error is None and res[0].source == "cache" and set(res[0].cache.status.values()) == {"no-audio"}
    assert res[1].error is not None and res[1].scores is None and "not found" in res[1].error
    assert res[2].error is None and res[2].source == "cache"


# -- issue 8: windows follow the training crop ------------------------------------------------------------
def test_windows_default_to_the_training_crop(tmp_path, files):
    """A model trained on 5-s crops scores a 12-s file on windows [0,5) [5,10) [10,12) (before: [0,10) [10,12))."""
    pdir = _predictor(tmp_path, crops=(5.0,))
    pred = Predictor.load(pdir)
    assert (pred.window, pred.hop) == (5.0, 5.0)
    df = pred.predict_files([files["long12"]], per_window=True)
    wins = df.filter(pl.col("window_start").is_not_null())
    np.testing.assert_allclose(wins["window_start"].to_numpy(), [0, 5, 10])
    np.testing.assert_allclose(wins["window_end"].to_numpy(), [5, 10, 12])
    np.testing.assert_allclose(wins["weight"].to_numpy(), [5 / 12, 5 / 12, 2 / 12])
    # an explicit window wins; the hop defaults to it
    ten = Predictor.load(pdir, window=10.0)
    assert (ten.window, ten.hop) == (10.0, 10.0)
    assert ten.predict_files([files["long12"]])["n_windows"][0] == 2
    assert Predictor.load(pdir, hop=2.5).predict_files([files["long12"]])["n_windows"][0] == 4
    out = tmp_path / "o.csv"
    assert _cli([str(files["long12"]), "--model", str(pdir), "--out", str(out), "--window", "6"]) == 0
    assert pl.read_csv(out)["n_windows"][0] == 2
    assert _cli([str(files["long12"]), "--model", str(pdir), "--out", str(out)]) == 0
    assert pl.read_csv(out)["n_windows"][0] == 3
    # a file within the crop is one whole-clip window
    assert pred.predict_files([files["short3"]])["n_windows"][0] == 1


def test_members_with_different_crops_need_an_explicit_window(tmp_path, files, capsys):
    pdir = _predictor(tmp_path, crops=(5.0, 10.0))
    with pytest.raises(PredictorError, match="--window"):
        Predictor.load(pdir)
    assert _cli([str(files["long12"]), "--model", str(pdir)]) == 2
    assert "crops of 5, 10 s" in capsys.readouterr().err
    assert Predictor.load(pdir, window=5.0).predict_files([files["long12"]])["n_windows"][0] == 3


def test_bad_window_options_are_user_errors(tmp_path, files):
    pdir = _predictor(tmp_path, crops=(5.0,))
    with pytest.raises(PredictorError, match="hop"):
        Predictor.load(pdir, hop=6.0)  # hop above the (crop) window
    p = argparse.ArgumentParser()
    add_arguments(p)
    for bad in (["--window", "0"], ["--window", "nan"], ["--hop", "-1"], ["--batch-size", "0"]):
        with pytest.raises(SystemExit):
            p.parse_args([str(files["short3"]), "--model", str(pdir), *bad])


# -- issue 8: a file name that is not UTF-8 ---------------------------------------------------------------
def test_a_non_utf8_file_name_in_a_folder_is_an_error_row(tmp_path, files, capsys):
    pdir = _predictor(tmp_path)
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(files["short3"], folder / "good.wav")
    shutil.copy(files["other5"], folder / "sub" / "fine.wav")
    bad = bytes(folder / "sub") + b"/caf\xe9.wav"  # Latin-1 e-acute: not UTF-8
    shutil.copy(bytes(files["short3"]), bad)
    out = tmp_path / "o.csv"
    assert _cli([str(folder), "--model", str(pdir), "--out", str(out)]) == 3
    df = pl.read_csv(out)
    assert df.height == 3
    assert df["clip_id"].to_list() == ["good.wav", "sub/caf\ufffd.wav", "sub/fine.wav"]
    row = df.row(1, named=True)
    assert "not valid UTF-8" in row["error"] and all(row[a] is None for a in AXES)
    assert df.filter(pl.col("error").is_null()).height == 2
    ref = Predictor.load(pdir).predict_files([folder / "good.wav", folder / "sub" / "fine.wav"])
    np.testing.assert_allclose(df.filter(pl.col("error").is_null()).select(AXES).to_numpy(),
                               ref.select(AXES).to_numpy(), atol=1e-9)
    assert "2 of 3 clips scored" in capsys.readouterr().err


# -- issue 7: task records, errors ------------------------------------------------------------------------
def test_a_predictor_without_a_task_reads_as_track2(tmp_path, files):
    pdir = _predictor(tmp_path)
    spec = json.loads((pdir / "predictor.json").read_text())
    assert spec["task"] == "track2" and spec["axes"] == AXES
    want = Predictor.load(pdir).predict_files([files["short3"]])
    del spec["task"]
    (pdir / "predictor.json").write_text(json.dumps(spec))
    pred = Predictor.load(pdir)
    assert pred.task.name == "track2"
    np.testing.assert_allclose(pred.predict_files([files["short3"]]).select(AXES).to_numpy(),
                               want.select(AXES).to_numpy(), atol=0)
    spec["axes"] = ["PQ", "PC"]
    (pdir / "predictor.json").write_text(json.dumps(spec))
    with pytest.raises(PredictorError, match="axes"):
        read_predictor_spec(pdir)


def test_axes_and_clamp_range_come_from_the_task(tmp_path, files, monkeypatch):
    """A two-axis task on 1-5: columns and the clamp follow it (nothing in predict spells an axis)."""
    base = get_task("track2")
    tiny = Task(name="tiny", title="two axes on 1-5", axes=("Alpha", "Beta"), axis_titles={"Alpha": "A", "Beta": "B"},
                score_range=(1.0, 5.0), label_columns={}, answer=base.answer, system_of=base.system_of,
                domain_of=base.domain_of)
    monkeypatch.setitem(tasks_mod.TASKS, "tiny", lambda: tiny)
    pdir = _predictor(tmp_path, task="tiny")
    spec = read_predictor_spec(pdir)
    assert spec["task"] == "tiny" and spec["axes"] == ["Alpha", "Beta"]
    pred = Predictor.load(pdir)
    df = pred.predict_files([files["short3"], files["long12"]], per_window=True)
    assert df.columns == ["path", "clip_id", "window_start", "window_end", "weight", "Alpha", "Beta", "duration",
                          "n_windows", "error"]
    s = df.select("Alpha", "Beta").to_numpy()
    assert ((s >= 1.0) & (s <= 5.0)).all()
    # z_std 3 around 5 on random heads: unclamped values leave 1-5, so the clamp is exercised
    m = pred.members[0]
    raw = m.window_scores(*_frames(pred, files["long12"]), np.array([0.0, 10.0]), 10.0)
    assert raw.min() >= 1.0 and raw.max() <= 5.0
    m.clip_predictions = False
    unclamped = m.window_scores(*_frames(pred, files["long12"]), np.array([0.0, 10.0]), 10.0)
    assert unclamped.min() < 1.0 or unclamped.max() > 5.0
    res = pred.predict_wave(_clip(2.0, 9), SR)
    assert set(res) == {"Alpha", "Beta", "duration", "windows"}


def _frames(pred, f):
    wave, sr = sf.read(f, dtype="float32")
    return pred.encoders.frames(wave, sr, pred.records), pred.infos, len(wave) / sr


def test_predictor_errors_are_user_errors_and_nothing_exits(tmp_path, files):
    for cls in (PredictorError, WeightsMismatchError, MissingWeightsError):
        assert issubclass(cls, UserError)
    with pytest.raises(UserError, match="not a predictor folder"):
        run_cli(_parse([str(files["short3"]), "--model", str(tmp_path)]))
    with pytest.raises(UserError, match="unknown output format"):
        run_cli(_parse([str(files["short3"]), "--model", str(tmp_path), "--out", "x.xlsx"]))
    src = "\n".join(p.read_text() for p in _package_files())
    assert "sys.exit" not in src and "SystemExit" not in src


def _parse(argv):
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args([*argv, "--no-progress"])


def _package_files():
    import mmmos.app.predict as pkg

    return sorted(Path(pkg.__file__).parent.glob("*.py"))


def test_no_axis_is_spelled_in_the_predict_package():
    names = set()
    for name in tasks_mod.TASKS:
        t = get_task(name)
        names |= set(t.axes) | set(t.axis_titles.values())
    pattern = re.compile(r"""["'](%s)["']""" % "|".join(map(re.escape, sorted(names))))
    for f in _package_files():
        hits = pattern.findall(f.read_text())
        assert not hits, (f.name, hits)


@pytest.mark.parametrize("bad", ["folder", "under_a_file"])
def test_an_unwritable_out_is_one_line_before_any_clip_is_scored(tmp_path, files, capsys, bad):
    """`--out` naming a folder (or a path under a file) ended a finished run in a traceback, its scores lost
    (IsADirectoryError / NotADirectoryError after every clip); now it is refused first, exit 2."""
    model = _predictor(tmp_path)
    (tmp_path / "taken.csv").mkdir()
    (tmp_path / "afile").write_text("x")
    out = tmp_path / ("taken.csv" if bad == "folder" else "afile/p.csv")
    capsys.readouterr()
    rc = _cli([str(files["short3"]), "--model", str(model), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and f"--out {out}" in err and "scored" not in err
