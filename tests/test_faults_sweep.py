"""Fault injection for the sweep: changed inputs on resume, evaluation sets added later, orphaned workers,
the device option, old run folders, and bad options."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from mmmos import sweep
from mmmos.core.errors import UserError
from mmmos.core.rundir import ModelRecord, RunDir
from mmmos.core.tasks import TASKS, get_task
from synthetic_cache import make_synthetic

SETS = {"bienc": ("encA",), "trienc": ("encA", "encB")}
AXES = get_task().axes


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth_faults")
    store, sets = make_synthetic(d, n_train=48, n_dev=16, n_pam=12)
    return d, str(store), sets


def _cfgs(names=("bienc-mlp-utmos",), epochs=1, **over):
    cfgs = [c for c in sweep.paper_configs(SETS) if c.name in names]
    for c in cfgs:
        c.lr, c.epochs = 3e-3, epochs
        for k, v in over.items():
            setattr(c, k, v)
    return cfgs


def _copy(src, dst: Path, change=None) -> Path:
    df = pl.read_csv(src)
    if change is not None:
        df = change(df)
    df.write_csv(dst)
    return dst


def _mtime(p: Path) -> int:
    return p.stat().st_mtime_ns


# -- the run identity covers the content of every label set ----------------------------------
def test_changed_training_labels_are_refused_then_retrained_with_force(synth, tmp_path):
    _, store, sets = synth
    train = _copy(sets["train"], tmp_path / "train.csv")
    dev = sweep.load_labels("dev", sets["dev"])
    run = tmp_path / "run"
    sweep.run_sweep(_cfgs(), store, run, sweep.load_labels("train", train), dev, [], progress=False)
    model = run / "configs" / "bienc-mlp-utmos" / "model.pt"
    before = _mtime(model)
    # same path, other content: one label moved
    _copy(train, train, lambda df: df.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(9.5)
                                                     .otherwise(pl.col(AXES[0])).alias(AXES[0])))
    changed = sweep.load_labels("train", train)
    with pytest.raises(sweep.RunMismatchError, match=r"train labels changed: .*train\.csv \(sha256 [0-9a-f]{12}\) "
                                                     r"-> .*train\.csv \(sha256 [0-9a-f]{12}\).*--force") as e:
        sweep.run_sweep(_cfgs(), store, run, changed, dev, [], progress=False)
    assert "\n" not in str(e.value) and isinstance(e.value, UserError)
    assert _mtime(model) == before
    res = sweep.run_sweep(_cfgs(), store, run, changed, dev, [], force=True, progress=False)
    assert "config" in res["bienc-mlp-utmos"] and _mtime(model) != before
    assert RunDir(run).read_run().label_sha256["train"] == changed.sha256
    # and now the run resumes quietly with the new labels
    again = sweep.run_sweep(_cfgs(), store, run, changed, dev, [], progress=False)
    assert again == {"bienc-mlp-utmos": {"skipped": True}}


def test_changed_dev_labels_are_refused(synth, tmp_path):
    _, store, sets = synth
    tr = sweep.load_labels("train", sets["train"])
    dev = _copy(sets["dev"], tmp_path / "dev.csv")
    sweep.run_sweep(_cfgs(), store, tmp_path / "run", tr, sweep.load_labels("dev", dev), [], progress=False)
    _copy(dev, dev, lambda df: df.head(df.height - 2))
    with pytest.raises(sweep.RunMismatchError, match="dev labels changed"):
        sweep.run_sweep(_cfgs(), store, tmp_path / "run", tr, sweep.load_labels("dev", dev), [], progress=False)


def test_eval_set_added_later_is_predicted_without_retraining(synth, tmp_path):
    _, store, sets = synth
    tr, dv = sweep.load_labels("train", sets["train"]), sweep.load_labels("dev", sets["dev"])
    names = ("bienc-mlp-utmos", "trienc-blstm_t-ccc")
    run = tmp_path / "run"
    sweep.run_sweep(_cfgs(names), store, run, tr, dv, [], progress=False)
    cdir = run / "configs" / "trienc-blstm_t-ccc"
    before = _mtime(cdir / "model.pt")
    pam_file = _copy(sets["pam_dev"], tmp_path / "pam.csv")
    pam = sweep.load_labels("pam_dev", pam_file)
    res = sweep.run_sweep(_cfgs(names), store, run, tr, dv, [pam], progress=False)
    assert res["trienc-blstm_t-ccc"] == {"skipped": True, "predicted": ["pam_dev"]}
    assert _mtime(cdir / "model.pt") == before
    # the same numbers as a run that had the set from the start (same seed)
    sweep.run_sweep(_cfgs(names), store, tmp_path / "ref", tr, dv, [pam], progress=False)
    for n in names:
        got = pl.read_parquet(run / "configs" / n / "predictions" / "pam_dev.parquet")
        want = pl.read_parquet(tmp_path / "ref" / "configs" / n / "predictions" / "pam_dev.parquet")
        assert got.equals(want)
        m = pl.read_parquet(run / "configs" / n / "metrics.parquet").sort("set", "level", "axis", "metric")
        m_ref = pl.read_parquet(tmp_path / "ref" / "configs" / n / "metrics.parquet").sort("set", "level", "axis",
                                                                                            "metric")
        assert m.equals(m_ref)
    rec = RunDir(run).read_run()
    assert set(rec.labels) == {"train", "dev", "pam_dev"} and rec.label_sha256["pam_dev"] == pam.sha256
    assert "pam_dev/utt_SRCC" in pl.read_parquet(run / "summary.parquet").columns
    # unchanged: nothing to do; changed content: predicted again, still no training
    assert sweep.run_sweep(_cfgs(names), store, run, tr, dv, [pam], progress=False)["bienc-mlp-utmos"] == \
        {"skipped": True}
    _copy(pam_file, pam_file, lambda df: df.head(5))
    pam2 = sweep.load_labels("pam_dev", pam_file)
    res = sweep.run_sweep(_cfgs(names), store, run, tr, dv, [pam2], progress=False)
    assert res["bienc-mlp-utmos"]["predicted"] == ["pam_dev"]
    assert pl.read_parquet(cdir / "predictions" / "pam_dev.parquet").height == 5
    assert _mtime(cdir / "model.pt") == before
    # an eval set not given this time stays listed (its predictions are still there)
    sweep.run_sweep(_cfgs(names), store, run, tr, dv, [], progress=False)
    assert "pam_dev" in RunDir(run).read_run().labels


# -- workers die with the sweep ---------------------------------------------------------------
_RUNNER = ("import argparse, sys\nfrom mmmos import sweep\np = argparse.ArgumentParser()\n"
           "sweep.add_arguments(p)\nsys.exit(sweep.run_cli(p.parse_args(sys.argv[1:])))\n")


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _is_worker(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"multiprocessing" in cmd and b"resource_tracker" not in cmd


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and prctl")
def test_workers_die_with_a_killed_sweep(tmp_path):
    store, sets = make_synthetic(tmp_path, n_train=64, n_dev=16, n_pam=4)
    run = tmp_path / "run"
    cmd = [sys.executable, "-c", _RUNNER, "--store", str(store), "--run", str(run), "--train", str(sets["train"]),
           "--dev", str(sets["dev"]), "--sets", "bienc=encA,trienc=encA+encB", "--heads", "blstm_t", "--losses",
           "utmos,ccc", "--epochs", "100000", "--patience", "100000", "--jobs", "2", "--no-progress"]
    parent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.time() + 120
        logs = []
        while time.time() < deadline and len(logs) < 2:  # both workers are training
            time.sleep(0.5)
            logs = list(run.glob("configs/*/train_log.jsonl"))
            assert parent.poll() is None, "the sweep ended early"
        assert len(logs) == 2, "the workers never started training"
        workers = [p for p in _children(parent.pid) if _is_worker(p)]
        assert len(workers) == 2
        done_before = sorted(run.glob("configs/*/DONE"))
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        time.sleep(3)
        survivors = [p for p in workers if _alive(p)]
        assert not survivors, f"worker processes {survivors} outlived the killed sweep"
        assert sorted(run.glob("configs/*/DONE")) == done_before
    finally:
        if parent.poll() is None:
            parent.kill()
        for p in workers:  # only the processes this test started
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def test_done_is_not_written_when_the_parent_has_gone(synth, tmp_path, monkeypatch):
    """The second guard: a worker whose parent changed leaves the configuration unfinished."""
    from mmmos.sweep import workers

    _, store, sets = synth
    tr, dv = sweep.load_labels("train", sets["train"]), sweep.load_labels("dev", sets["dev"])
    monkeypatch.setattr(workers, "_PARENT_PID", os.getppid() + 1_000_000)  # not our parent
    with pytest.raises(workers.ParentGoneError):
        sweep.train_configuration(_cfgs()[0], store, tr, dv, [], tmp_path / "c", progress=False,
                                  before_done=workers.check_parent)
    assert (tmp_path / "c" / "model.pt").is_file() and not (tmp_path / "c" / "DONE").exists()


# -- --device reaches the head and the batches -------------------------------------------------
def test_device_moves_head_and_batches(synth, tmp_path, monkeypatch):
    _, store, sets = synth
    tr, dv = sweep.load_labels("train", sets["train"]), sweep.load_labels("dev", sets["dev"])
    module_to, tensor_to = torch.nn.Module.to, torch.Tensor.to
    moved_modules, moved_tensors = [], []

    def spy_module_to(self, *a, **k):
        moved_modules.append((type(self).__name__, a[0] if a else k.get("device")))
        return module_to(self, *a, **k)

    def spy_tensor_to(self, *a, **k):
        moved_tensors.append((tuple(self.shape), a[0] if a else k.get("device")))
        return tensor_to(self, *a, **k)

    monkeypatch.setattr(torch.nn.Module, "to", spy_module_to)
    monkeypatch.setattr(torch.Tensor, "to", spy_tensor_to)
    cfg = _cfgs(("trienc-blstm_t-utmos",), device="cpu")[0]
    sweep.train_configuration(cfg, store, tr, dv, [], tmp_path / "c", progress=False)
    assert ("BLSTMTimeHead", "cpu") in moved_modules
    dim = 18  # encA 12 + encB 6
    frame_batches = [s for s, d in moved_tensors if d == "cpu" and len(s) == 3 and s[2] == dim]
    assert frame_batches and {s[0] for s in frame_batches} >= {16}  # training batches of 16 frame sequences
    # and a device torch cannot use here is a user error, not a crash in a worker
    with pytest.raises(UserError, match="--device"):
        sweep.run_sweep(_cfgs(device="cuda:0" if not torch.cuda.is_available() else "nonsense"), store,
                        tmp_path / "r", tr, dv, [], progress=False)


# -- tasks as data -----------------------------------------------------------------------------
def test_task_sets_outputs_range_and_records(synth, tmp_path, monkeypatch):
    _, store, sets = synth
    narrow = dataclasses.replace(get_task(), name="narrow", score_range=(4.5, 5.5))
    monkeypatch.setitem(TASKS, "narrow", lambda: narrow)
    tr, dv = sweep.load_labels("train", sets["train"]), sweep.load_labels("dev", sets["dev"])
    sweep.run_sweep(_cfgs(task="narrow"), store, tmp_path / "r", tr, dv, [], progress=False)
    cdir = RunDir(tmp_path / "r").config("bienc-mlp-utmos")
    pred = cdir.read_predictions("dev")
    y = pred.select(AXES).to_numpy()
    assert y.min() >= 4.5 and y.max() <= 5.5 and ((y == 4.5) | (y == 5.5)).any()
    assert RunDir(tmp_path / "r").read_run().task == "narrow"
    rec = cdir.read_model()
    assert rec.task == "narrow" and rec.axes == list(AXES) and rec.head_config["n_axes"] == len(AXES)
    assert cdir.read_config().config["task"] == "narrow"
    with pytest.raises(sweep.RunMismatchError, match="task narrow"):
        sweep.run_sweep(_cfgs(), store, tmp_path / "r", tr, dv, [], progress=False)


# -- old run folders still read ---------------------------------------------------------------
def test_a_run_written_by_the_old_code_still_reads_and_resumes(synth, tmp_path):
    _, store, sets = synth
    tr, dv = sweep.load_labels("train", sets["train"]), sweep.load_labels("dev", sets["dev"])
    run = tmp_path / "run"
    sweep.run_sweep(_cfgs(), store, run, tr, dv, [], progress=False)
    cdir = run / "configs" / "bienc-mlp-utmos"
    # rewrite every record in the form the code before tasks wrote (plain dicts, no task, no hashes)
    (run / "run.json").write_text(json.dumps({
        "store": str(Path(store).resolve()), "encoders": json.loads((run / "run.json").read_text())["encoders"],
        "labels": {"train": str(Path(sets["train"]).resolve()), "dev": str(Path(sets["dev"]).resolve())}}))
    cfg = json.loads((cdir / "config.json").read_text())
    old_cfg = {k: cfg[k] for k in ("n_train", "n_dev", "epochs_run", "best_dev_loss", "t_load", "t_data",
                                   "t_step", "notes", "head_params")}
    old_cfg["config"] = {k: v for k, v in cfg["config"].items() if k != "task"}
    (cdir / "config.json").write_text(json.dumps(old_cfg))
    new = torch.load(cdir / "model.pt", weights_only=True)
    old_model = {k: new[k] for k in ("state_dict", "z_mean", "z_std", "axes", "encoders", "encoder_keys",
                                     "crop_seconds", "grid_rate", "features")}
    old_model["head_config"] = {k: v for k, v in new["head_config"].items() if k != "n_axes"}
    torch.save(old_model, cdir / "model.pt")
    mtime = _mtime(cdir / "model.pt")
    assert RunDir(run).read_run().task == "track2" and RunDir(run).task() == "track2"
    rec = ModelRecord.load(cdir / "model.pt")
    assert rec.task == "track2" and "n_axes" not in rec.head_config
    # resumes (same labels by path), and an evaluation set is added with the old head
    pam = sweep.load_labels("pam_dev", sets["pam_dev"])
    res = sweep.run_sweep(_cfgs(), store, run, tr, dv, [pam], progress=False)
    assert res == {"bienc-mlp-utmos": {"skipped": True, "predicted": ["pam_dev"]}}
    assert _mtime(cdir / "model.pt") == mtime
    ref = tmp_path / "ref"
    sweep.run_sweep(_cfgs(), store, ref, tr, dv, [pam], progress=False)
    assert pl.read_parquet(cdir / "predictions" / "pam_dev.parquet").equals(
        pl.read_parquet(ref / "configs" / "bienc-mlp-utmos" / "predictions" / "pam_dev.parquet"))
    assert RunDir(run).read_run().label_sha256["train"] == tr.sha256
    assert sweep.write_summary(run).height == 1


# -- options and inputs ------------------------------------------------------------------------
def _parser():
    p = argparse.ArgumentParser()
    sweep.add_arguments(p)
    return p


BASE = ["--store", "s", "--run", "r", "--train", "t.csv", "--dev", "d.csv"]


@pytest.mark.parametrize("bad", [["--epochs", "0"], ["--lr", "nan"], ["--lr", "-1"], ["--jobs", "0"],
                                 ["--batch-size", "0"], ["--patience", "0"], ["--crop", "inf"],
                                 ["--task", "track9"]])
def test_bad_option_values_are_argparse_errors(bad, capsys):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(BASE + bad)
    assert e.value.code == 2 and bad[0] in capsys.readouterr().err


def test_defaults_and_batch_size_reach_the_configurations():
    a = _parser().parse_args(BASE + ["--sets", "bienc=a,trienc=a+b", "--batch-size", "8"])
    assert a.task == "track2"
    cfgs = sweep.configs_from_args(a)
    assert len(cfgs) == 16 and {c.batch_size for c in cfgs} == {8} and {c.task for c in cfgs} == {"track2"}


@pytest.mark.parametrize("name", ["../x", "a/b", "/abs", "..", "", ".hidden", "a\\b"])
def test_eval_names_that_leave_the_run_folder_are_refused(name, tmp_path):
    target = tmp_path / "labels.csv"
    target.write_text("clip_id\n")
    a = _parser().parse_args(BASE + ["--eval", f"{name}={target}"])
    with pytest.raises(UserError, match="cannot be a file name"):
        sweep.run_cli(a)
    with pytest.raises(UserError, match="NAME=PATH"):
        sweep.parse_evals(["no-equals-sign"])


def test_missing_or_file_store_is_a_user_error(synth, tmp_path):
    _, _, sets = synth
    tr, dv = sweep.load_labels("train", sets["train"]), sweep.load_labels("dev", sets["dev"])
    with pytest.raises(UserError, match="no such folder"):
        sweep.run_sweep(_cfgs(), str(tmp_path / "nope"), tmp_path / "r", tr, dv, [], progress=False)
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        sweep.run_sweep(_cfgs(), str(tmp_path / "f"), tmp_path / "r", tr, dv, [], progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no mmmos cache"):
        sweep.run_sweep(_cfgs(), str(tmp_path / "empty"), tmp_path / "r", tr, dv, [], progress=False)
    with pytest.raises(UserError, match="used twice"):
        sweep.run_sweep(_cfgs(), str(tmp_path / "empty"), tmp_path / "r", tr, dv,
                        [sweep.load_labels("dev", sets["pam_dev"])], progress=False)
