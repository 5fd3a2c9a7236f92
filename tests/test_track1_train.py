"""Track 1 trainer (mmmos.sweep.track1) on a synthetic cache.

The cache has an audio encoder (5 Hz x 16-d) and a text encoder (8-d tokens). There are 4 topics. Each clip
has a quality q (system offset + noise) and two topics, its frames alternating between them in 1-s blocks;
each prompt has one topic. Audio frames carry q and their block's topic, prompt tokens their topic.
MI = 3 + 0.8 q (a function of the audio) and TA = 2.2 + 1.6 [the prompt's topic is one of the clip's]
(+ noise): the agreement of audio and text, which the TA branch can only find by attending from the prompt
to the matching frames. A working trainer learns both; a shuffled-label control learns neither.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from mmmos.cache_store import open_store
from mmmos.core.prompts import prompt_key
from mmmos.core.rundir import RunDir
from mmmos.core.tasks import get_task
from mmmos.sweep.labels import LabelSet
from mmmos.sweep.track1 import Track1Config, checkpoint_names, recipe_configs
from mmmos.sweep.track1.bank import Track1Bank, load_bank
from mmmos.sweep.track1.checkpoints import load_checkpoint_head
from mmmos.sweep.track1.predict import predict_logits, selection_figures
from mmmos.sweep.track1.run import run_track1_sweep
from mmmos.sweep.track1.trainer import train_track1

TASK = get_task("track1")
RATE, DA, DT, TOPICS = 5.0, 16, 8, 4
SMALL_HEAD = {"ta_dim": 32, "n_heads": 2, "ff_dim": 64, "dropout": 0.1, "mi_hidden": [32, 16], "ta_hidden": [32, 16]}


def _ident(name, rate, dim):
    return {"name": name, "weights": None, "sha256": None, "sample_rate": 24000, "frame_rate": rate, "dim": dim,
            "config": {"synthetic": True}, "code_version": "1"}


def make_track1_cache(root: Path, n_train=160, n_dev=80, n_prompts=16, seed=0):
    """Write the synthetic cache; returns (store path, {split: LabelSet})."""
    rng = np.random.default_rng(seed)
    store = open_store(root / "cache.zarr", create=True)
    wa, wt = rng.standard_normal((TOPICS, DA)), rng.standard_normal((TOPICS, DT))
    u = rng.standard_normal(DA)
    prompts = [f"prompt number {i} about topic {i % TOPICS}" for i in range(n_prompts)]
    with store.writer(_ident("txt", 0.0, DT)) as w:
        for i, p in enumerate(prompts):
            n_tok = int(rng.integers(3, 8))
            w.write(prompt_key(p), np.tile(wt[i % TOPICS], (n_tok, 1)) + 0.2 * rng.standard_normal((n_tok, DT)),
                    None, 0.0)
    sys_q = {s: rng.standard_normal() for s in range(8)}
    sets = {}
    with store.writer(_ident("aud", RATE, DA)) as w:
        for split, n in (("train", n_train), ("dev", n_dev)):
            rows = []
            for i in range(n):
                s, k = i % 8, int(rng.integers(n_prompts))
                cid = f"audiomos2025-track1-S{s:03d}_{split}{i:04d}"
                q = 0.4 * sys_q[s] + 0.9 * rng.standard_normal()
                present = rng.random() < 0.5
                others = [x for x in range(TOPICS) if x != k % TOPICS]
                pair = [k % TOPICS, int(rng.choice(others))] if present else list(rng.choice(others, 2, replace=False))
                dur = float(rng.choice([4.0, 9.0, 15.0]))
                t = int(dur * RATE)
                block = (np.arange(t) // int(RATE)) % 2  # 1-s blocks alternating between the two topics
                frames = q * u + wa[np.array(pair)[block]] + 0.5 * rng.standard_normal((t, DA))
                w.write(cid, frames, f"/audio/{cid}.wav", dur)
                mi = float(np.clip(3 + 0.8 * q, 1, 5))
                ta = float(np.clip(2.2 + 1.6 * present + 0.3 * rng.standard_normal(), 1, 5))
                rows.append({"clip_id": cid, "path": f"/audio/{cid}.wav", "system": f"S{s:03d}", "domain": "music",
                             "prompt": prompts[k], "MI": mi, "TA": ta})
            sets[split] = LabelSet(split, str(root / f"{split}.csv"), pl.DataFrame(rows), f"sha-{split}-{seed}")
    return root / "cache.zarr", sets


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return make_track1_cache(tmp_path_factory.mktemp("t1cache"))


def _cfg(name="t1-test", **kw):
    base = dict(name=name, encoders=["aud", "txt"], loss="kl_gaussian", head_cfg={"output": "distribution", **SMALL_HEAD},
                lr=4e-3, batch_size=16, eval_batch_size=16, epochs=50, patience=50, crop_seconds=6.0, seed=1984,
                threads=1)  # one thread: the tiny head is faster without thread hand-offs
    base.update(kw)
    return Track1Config(**base)


def _shuffled(ls: LabelSet, seed=1) -> LabelSet:
    rng = np.random.default_rng(seed)
    t = ls.table
    perm = rng.permutation(t.height)
    return LabelSet(ls.name, ls.path, t.with_columns(pl.Series("MI", t["MI"].to_numpy()[perm]),
                                                      pl.Series("TA", t["TA"].to_numpy()[perm])), ls.sha256 + "-shuf")


def _dev_srcc(cdir, dev: LabelSet) -> tuple[float, float]:
    from scipy.stats import spearmanr

    pred = cdir.read_predictions("dev").join(dev.table.select("clip_id", "MI", "TA"), on="clip_id", suffix="_true")
    return (float(spearmanr(pred["MI"], pred["MI_true"])[0]), float(spearmanr(pred["TA"], pred["TA_true"])[0]))


@pytest.fixture(scope="module")
def trained(cache, tmp_path_factory):
    store, sets = cache
    run = tmp_path_factory.mktemp("t1run")
    res = run_track1_sweep([_cfg()], str(store), run, sets["train"], sets["dev"], [], progress=False)
    return run, res


def test_learns_mi_and_ta_and_beats_shuffled_control(cache, trained, tmp_path):
    store, sets = cache
    run, res = trained
    assert "error" not in res["t1-test"], res
    mi, ta = _dev_srcc(RunDir(run).config("t1-test"), sets["dev"])
    ctl = tmp_path / "control"
    run_track1_sweep([_cfg()], str(store), ctl, _shuffled(sets["train"]), sets["dev"], [], progress=False)
    cmi, cta = _dev_srcc(RunDir(ctl).config("t1-test"), sets["dev"])
    print(f"dev SRCC trained MI {mi:.3f} TA {ta:.3f}; shuffled control MI {cmi:.3f} TA {cta:.3f}")
    assert mi > 0.9 and ta > 0.4
    assert mi - abs(cmi) > 0.3 and ta - abs(cta) > 0.2


def test_three_checkpoints_with_predictions_and_distributions(cache, trained):
    store, sets = cache
    run, _ = trained
    rd = RunDir(run)
    names = checkpoint_names("t1-test")
    assert names == ["t1-test", "t1-test@sysmi", "t1-test@combined"]
    assert sorted(rd.finished()) == sorted(names)
    bins = [f"{a}_p{b:02d}" for a in TASK.axes for b in range(20)]
    log = [json.loads(x) for x in rd.config("t1-test").log_path.read_text().splitlines()]
    epochs = [r for r in log if "epoch" in r]
    for n in names:
        cdir = rd.config(n)
        pred = cdir.read_predictions("dev")
        assert set(bins) <= set(pred.columns)
        p = pred.select(bins[:20]).to_numpy()
        assert np.allclose(p.sum(axis=1), 1.0, atol=1e-6)
        # the score is the distribution's expectation over linspace(1, 5, 20)
        assert np.allclose(p @ np.linspace(1, 5, 20), pred["MI"].to_numpy(), atol=1e-5)
        m = cdir.read_metrics()
        assert set(m["axis"]) >= set(TASK.axes) and set(m["set"]) == {"dev"}
        model = cdir.read_model()
        assert model.task == "track1" and model.head_config["name"] == "dual_branch"
        extra = cdir.read_config().extra
        assert 1 <= extra["epoch"] <= len(epochs)
    # each checkpoint is the epoch that maximised its criterion
    sysmi = rd.config("t1-test@sysmi").read_config().extra
    assert sysmi["epoch"] == max(epochs, key=lambda r: r["sys_mi"])["epoch"]
    main = rd.config("t1-test").read_config().extra
    assert main["epoch"] == min(epochs, key=lambda r: r["dev_loss"])["epoch"]
    comb = rd.config("t1-test@combined").read_config().extra
    assert comb["epoch"] == max(epochs, key=lambda r: r["utt_mi"] + r["sys_ta"])["epoch"]
    # the saved weights reproduce the saved predictions
    head, _, _ = load_checkpoint_head(rd.config("t1-test@sysmi"))
    _, bank = load_bank(sets["dev"], open_store(store), _cfg(), TASK, False, [])
    logits = predict_logits(head, bank, 16, torch)
    mi = (torch.softmax(torch.from_numpy(logits[:, 0]), -1).numpy() @ np.linspace(1, 5, 20))
    saved = rd.config("t1-test@sysmi").read_predictions("dev")
    assert np.allclose(mi, saved["MI"].to_numpy(), atol=1e-5)
    assert (run / "summary.md").is_file() and "t1-test@combined" in (run / "summary.md").read_text()


def test_resume_skips_finished_and_predicts_new_eval_set(cache, trained):
    store, sets = cache
    run, _ = trained
    rd = RunDir(run)
    before = {n: rd.config(n).model_path.stat().st_mtime_ns for n in checkpoint_names("t1-test")}
    extra = LabelSet("extra", "extra.csv", sets["dev"].table.head(20), "sha-extra")
    res = run_track1_sweep([_cfg()], str(store), run, sets["train"], sets["dev"], [extra], progress=False)
    assert res["t1-test"] == {"skipped": True, "predicted": ["extra"]}
    for n in checkpoint_names("t1-test"):
        assert rd.config(n).read_predictions("extra").height == 20
        assert "extra" in set(rd.config(n).read_metrics()["set"])
        assert rd.config(n).read_config().label_sha256["extra"] == "sha-extra"
    # nothing was retrained: the models' weights are the same files' contents
    assert json.loads(rd.config("t1-test").log_path.read_text().splitlines()[-1]).get("note") is not None
    assert all(before[n] <= rd.config(n).model_path.stat().st_mtime_ns for n in before)
    # the main checkpoint's DONE decides: an unfinished run (no DONE) is trained again
    rd.config("t1-test").clear_done()
    res = run_track1_sweep([_cfg(epochs=2)], str(store), run, sets["train"], sets["dev"], [], progress=False)
    assert "skipped" not in res["t1-test"] and "error" not in res["t1-test"]
    assert all(rd.config(n).is_done() for n in checkpoint_names("t1-test"))


def test_prediction_does_not_depend_on_the_batch(cache, trained):
    store, sets = cache
    run, _ = trained
    head, _, _ = load_checkpoint_head(RunDir(run).config("t1-test"))
    _, bank = load_bank(sets["dev"], open_store(store), _cfg(), TASK, False, [])
    lens = [bank.n_frames(i) for i in range(len(bank))]
    short = int(np.argmin(lens))  # padded up to the long clips' crop windows in a batch
    alone = predict_logits(head, _subset(bank, [short]), 16, torch)
    mixed = predict_logits(head, bank, 16, torch)
    assert max(lens) > bank.crop_frames > min(lens)  # windows and padding are both exercised
    assert np.allclose(alone[0], mixed[short], atol=1e-4)
    # and padding really is there: a batch with a long window pads the short clip
    wins = [bank.eval_windows(int(np.argmax(lens)))[0], bank.eval_windows(short)[0]]
    audio, lengths, text, mask = bank.batch(wins, torch, "cpu")
    assert audio.shape[1] > lengths[1] and float(audio[1, lengths[1]:].abs().sum()) == 0


def _subset(bank: Track1Bank, idx: list[int]) -> Track1Bank:
    sub = object.__new__(Track1Bank)
    sub.__dict__.update(bank.__dict__)
    sub.clip_ids = [bank.clip_ids[i] for i in idx]
    sub.audio = [bank.audio[i] for i in idx]
    sub.text_of = [bank.text_of[i] for i in idx]
    return sub


def test_eval_windows_cover_the_clip(cache):
    store, sets = cache
    _, bank = load_bank(sets["dev"], open_store(store), _cfg(), TASK, False, [])
    for i in range(len(bank)):
        wins = bank.eval_windows(i)
        t = bank.n_frames(i)
        covered = np.zeros(t, bool)
        for w in wins:
            assert w.length == min(t, bank.crop_frames) and w.start + w.length <= t
            covered[w.start : w.start + w.length] = True
        assert covered.all()


def test_recipe_is_the_public_eight_runs():
    cfgs = recipe_configs()
    assert len(cfgs) == 8 and all(c.encoders == ["muq", "roberta"] for c in cfgs)
    gauss = [c for c in cfgs if c.loss == "kl_gaussian" and not c.head_cfg.get("decoupled")]
    assert sorted(c.seed for c in gauss) == [1510, 1910, 1984, 1990]
    assert [c.seed for c in cfgs if c.loss == "coral"] == [1510]
    assert [c.head_cfg["output"] for c in cfgs if c.loss == "coral"] == ["coral"]
    assert sum(1 for c in cfgs if c.loss == "kl_onehot") == 1
    dec = [c for c in cfgs if c.head_cfg.get("decoupled")]
    assert sorted(bool(c.head_cfg.get("lstm_head")) for c in dec) == [False, True]
    c = cfgs[0]
    assert (c.lr, c.batch_size, c.eval_batch_size, c.epochs, c.patience, c.crop_seconds) == (5e-5, 32, 16, 100, 15, 30.0)


def test_coral_run_writes_scores_without_bins(cache, tmp_path):
    store, sets = cache
    cfg = _cfg("t1-coral", loss="coral", head_cfg={"output": "coral", **SMALL_HEAD}, epochs=2)
    train_track1(cfg, str(store), sets["train"], sets["dev"], [], RunDir(tmp_path).config("t1-coral").path,
                 progress=False)
    pred = RunDir(tmp_path).config("t1-coral").read_predictions("dev")
    assert not any("_p" in c for c in pred.columns)
    assert pred["MI"].min() >= 1 and pred["MI"].max() <= 5


def test_selection_figures_system_level():
    pred = np.array([[1, 1], [2, 2], [3, 3], [4, 5.0]])
    truth = np.array([[1, 2], [2, 1], [3, 3], [4, 4.0]])
    f = selection_figures(pred, truth, ["a", "a", "b", "b"])
    assert f["utt_mi"] == pytest.approx(1.0) and f["sys_mi"] == pytest.approx(1.0)
    assert f["utt_ta"] == pytest.approx(0.8)  # d = (-1, 1, 0, 0): 1 - 6 * 2 / (4 * 15)


def test_cli_track1_runs_the_selected_recipe_run(cache, tmp_path, capsys):
    from mmmos.app.cli import main

    store, sets = cache
    lists = {}
    for split in ("train", "dev"):
        lists[split] = tmp_path / f"{split}.csv"
        sets[split].table.head(48).write_csv(lists[split])
    run = tmp_path / "run"
    argv = ["sweep", "--task", "track1", "--store", str(store), "--run", str(run), "--train", str(lists["train"]),
            "--dev", str(lists["dev"]), "--audio-encoder", "aud", "--text-encoder", "txt", "--only", "t1-coral-s1510",
            "--epochs", "1", "--no-progress"]
    assert main(argv) == 0
    rd = RunDir(run)
    assert sorted(rd.finished()) == sorted(checkpoint_names("t1-coral-s1510"))
    cfg = rd.config("t1-coral-s1510").read_config().config
    assert (cfg["loss"], cfg["seed"], cfg["lr"], cfg["crop_seconds"], cfg["epochs"]) == ("coral", 1510, 5e-5, 30.0, 1)
    assert rd.read_run().task == "track1"
    assert main(argv) == 0 and "1 already done" in capsys.readouterr().out
    # Track 2 options that do not apply are refused with a user error (exit 2)
    assert main(argv + ["--sets", "bienc=a+b,trienc=a+b+c"]) == 2
    assert main(argv[:-5] + ["--only", "no-such-run"]) == 2
    # executors that build Track 2 configurations (e.g. --ray) refuse track1 rather than train the wrong thing
    import argparse

    from mmmos.sweep import SweepOptionError, configs_from_args

    with pytest.raises(SweepOptionError, match="track1.s come from its recipe"):
        configs_from_args(argparse.Namespace(task="track1"))


def test_jobs_train_runs_in_worker_processes(cache, tmp_path):
    store, sets = cache
    small = {k: LabelSet(k, v.path, v.table.head(24), v.sha256 + "-24") for k, v in sets.items()}
    cfgs = [_cfg("t1-a", epochs=1), _cfg("t1-b", epochs=1, seed=1510, loss="kl_onehot")]
    res = run_track1_sweep(cfgs, str(store), tmp_path, small["train"], small["dev"], [], jobs=2, progress=False)
    assert all("error" not in r for r in res.values()), res
    names = checkpoint_names("t1-a") + checkpoint_names("t1-b")
    assert sorted(RunDir(tmp_path).finished()) == sorted(names)
    assert RunDir(tmp_path).config("t1-b@sysmi").read_config().config["loss"] == "kl_onehot"


def test_clips_without_cached_audio_or_prompt_fail_the_run_unless_allowed(cache, tmp_path):
    """Issue 20, item 4, for Track 1: a listed clip without cached audio, without a prompt or with an un-encoded
    prompt fails the run naming it; --allow-missing-clips trains without them, noted and recorded."""
    store, sets = cache
    tr = sets["train"].table.head(24)
    dv = sets["dev"].table.head(12)
    extra = tr.head(2).with_columns(pl.Series("clip_id", ["not-cached-1", "not-cached-2"]))
    tr = pl.concat([tr, extra]).with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("a prompt nobody encoded")).otherwise(pl.col("prompt"))
        .alias("prompt"))
    dv = dv.with_columns(pl.when(pl.int_range(pl.len()) == 1).then(None).otherwise(pl.col("prompt")).alias("prompt"))
    train, dev = LabelSet("train", "t.csv", tr, "t"), LabelSet("dev", "d.csv", dv, "d")
    res = run_track1_sweep([_cfg("t1-gaps", epochs=1)], str(store), tmp_path / "r0", train, dev, [], progress=False)
    err = res["t1-gaps"]["error"]
    assert "train: 3 of 26 listed clips are missing" in err and "--allow-missing-clips" in err
    assert all(c in err for c in ("not-cached-1", "not-cached-2", tr["clip_id"][0])), err
    res = run_track1_sweep([_cfg("t1-gaps", epochs=1, allow_missing_clips=True)], str(store), tmp_path, train, dev,
                           [], progress=False)
    assert "error" not in res["t1-gaps"], res
    cdir = RunDir(tmp_path).config("t1-gaps")
    rec = cdir.read_config()
    assert (rec.n_train, rec.n_dev) == (23, 11)
    notes = " | ".join(rec.notes)
    assert "train: 3 of 26 clips lack cached aud frames or a prompt with cached txt tokens" in notes
    assert "dev: 1 of 12 clips lack" in notes
    assert sorted(rec.extra["dropped_clips"]["train"]) == sorted(["not-cached-1", "not-cached-2", tr["clip_id"][0]])
    assert rec.extra["dropped_clips"]["dev"] == [dv["clip_id"][1]]
    assert dv["clip_id"][1] not in cdir.read_predictions("dev")["clip_id"].to_list()
    # a dev set with no usable clip fails that run with a clear message; the sweep reports it
    none = LabelSet("dev", "d.csv", dv.with_columns(pl.lit(None, dtype=pl.String).alias("prompt")), "none")
    res = run_track1_sweep([_cfg("t1-none", epochs=1, allow_missing_clips=True)], str(store), tmp_path / "r2", train,
                           none, [], progress=False)
    assert "no usable dev clips" in res["t1-none"]["error"]
