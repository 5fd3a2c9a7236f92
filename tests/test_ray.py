"""Extraction and sweeps on Ray (a local instance started and stopped by this module) give the results of
one process; a worker killed mid-run is replaced without losing or duplicating clips; Ray missing is one line."""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf

ray = pytest.importorskip("ray")

from mmmos.app.ray_cluster import RayOptions, RayUnavailableError  # noqa: E402
from mmmos.app.ray_extract import make_units, run_extract_ray  # noqa: E402
from mmmos.cache_store import open_store  # noqa: E402
from mmmos.extract.report import failures_path  # noqa: E402
from mmmos.extract.runner import ExtractConfig, run_extract  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


def _tone(sr: int, seconds: float, f: float, seed: int) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * f * t) + 0.02 * np.random.default_rng(seed).standard_normal(len(t))
    return x.astype(np.float32)


def _corpus(d: Path, n: int, bad: bool = True) -> str:
    """``n`` short tones at varied rates and lengths, plus (``bad``) a missing, a non-audio and a too-short file."""
    d.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        sr = (16000, 22050, 44100)[i % 3]
        p = d / f"c{i:03d}.wav"
        sf.write(p, _tone(sr, 0.5 + 0.25 * (i % 5), 200 + 37 * i, i), sr)
        rows.append((f"clip{i:03d}", str(p)))
    if bad:
        (d / "junk.wav").write_bytes(b"not audio at all")
        sf.write(d / "tiny.wav", _tone(16000, 0.005, 440, 0), 16000)
        rows += [("junk", str(d / "junk.wav")), ("gone", str(d / "missing.wav")), ("tiny", str(d / "tiny.wav"))]
    m = d / "list.csv"
    pl.DataFrame({"clip_id": [r[0] for r in rows], "path": [r[1] for r in rows]}).write_csv(m)
    return str(m)


def _frames(store: str, encoder: str = "logmel") -> dict[str, np.ndarray]:
    g = open_store(store).group(encoder)
    return {c: g.read(c) for c in g.clip_ids()}


def _rows(failures) -> list[tuple]:
    return sorted((f.clip_id, f.path, f.encoder, f.stage) for f in failures)


# -- extraction ------------------------------------------------------------------------------------------

def test_ray_extract_equals_one_process(tmp_path):
    m = _corpus(tmp_path / "audio", 14)
    local = run_extract(ExtractConfig([m], str(tmp_path / "local.zarr"), progress=False))
    run = run_extract_ray(ExtractConfig([m], str(tmp_path / "ray.zarr"), progress=False),
                          RayOptions(workers=2), unit_clips=3)
    assert run.workers == 2 and len(run.worker_pids) == 2  # both actors did units
    # same store identity (encoder folder), same clips, equal arrays
    assert [i.key for i in open_store(tmp_path / "local.zarr").encoders()] == \
           [i.key for i in open_store(tmp_path / "ray.zarr").encoders()]
    a, b = _frames(str(tmp_path / "local.zarr")), _frames(str(tmp_path / "ray.zarr"))
    assert sorted(a) == sorted(b) == [f"clip{i:03d}" for i in range(14)]
    for c in a:
        np.testing.assert_array_equal(a[c], b[c])
    # the same failure rows, in the report and in the store's failure file
    assert _rows(run.report.failures) == _rows(local.failures)
    assert {r[0] for r in _rows(local.failures)} == {"junk", "gone", "tiny"}
    assert pl.read_csv(failures_path(tmp_path / "ray.zarr")).sort("clip_id").select("clip_id", "stage").rows() == \
           pl.read_csv(failures_path(tmp_path / "local.zarr")).sort("clip_id").select("clip_id", "stage").rows()
    assert run.report.written == local.written == {"logmel": 14}
    # a second run finishes only what is missing: three clips removed from the store are written again
    import shutil

    gone = sorted(Path(tmp_path / "ray.zarr").glob("encoders/*/clips/*"))[:3]
    for d in gone:
        shutil.rmtree(d)
    again = run_extract_ray(ExtractConfig([m], str(tmp_path / "ray.zarr"), progress=False), RayOptions(workers=1))
    assert again.report.written == {"logmel": 3} and again.report.skipped == {"logmel": 11}
    b = _frames(str(tmp_path / "ray.zarr"))
    assert sorted(b) == sorted(a) and all(np.array_equal(a[c], b[c]) for c in a)


def _hdf5_clip_ids(store: str) -> list[str]:
    """Every clip id stored in every committed HDF5 part (a duplicate would appear twice)."""
    import h5py

    ids = []
    for part in sorted(Path(store).glob("encoders/*/parts/*.h5")):
        with h5py.File(part, "r") as f:
            ids += [json.loads(ds.attrs["mmmos_clip"])["clip_id"] for ds in f["clips"].values()]
    return ids


def test_killed_worker_is_replaced_and_nothing_is_lost_or_duplicated(tmp_path):
    m = _corpus(tmp_path / "audio", 40, bad=False)
    store = tmp_path / "s.h5store"
    killed: list[int] = []
    stop = threading.Event()

    def killer():  # SIGKILL the first worker seen holding a claim: it dies mid-unit
        while not stop.is_set() and not killed:
            for claim in store.glob("encoders/*/claims/[!.]*"):
                try:
                    host, pid, _ = claim.read_text().split()
                except (OSError, ValueError):
                    continue
                if int(pid) != os.getpid():
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
                    return
            time.sleep(0.001)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        run = run_extract_ray(ExtractConfig([m], str(store), backend="hdf5", progress=False),
                              RayOptions(workers=2, retries=3), unit_clips=2)
    finally:
        stop.set()
        t.join()
    assert killed, "the test never caught a worker mid-unit"
    assert killed[0] in run.initial_pids
    assert run.worker_pids - set(run.initial_pids)  # a replacement process (the restarted actor) did units
    assert not run.report.failures and run.lost_workers == 0
    ids = _hdf5_clip_ids(str(store))
    assert sorted(ids) == [f"clip{i:03d}" for i in range(40)]  # complete, no clip twice
    g = open_store(store).group("logmel")
    assert len(g.clip_ids()) == 40 and all(g.is_valid(c) for c in g.clip_ids())


def test_units_cover_every_clip_once():
    rows = {f"c{i}": f"/a/{i}.wav" for i in range(23)}
    units = make_units(rows, workers=2, unit_clips=None)
    assert len(units) > 2 and [c for u in units for c in u] == list(rows)
    assert max(len(u) for u in units) <= 32


def test_unplaceable_worker_is_a_user_error(tmp_path):
    m = _corpus(tmp_path / "audio", 2, bad=False)
    with pytest.raises(RayUnavailableError, match="GPU"):
        run_extract_ray(ExtractConfig([m], str(tmp_path / "s.zarr"), progress=False), RayOptions(gpus=1))


def test_cli_extract_ray_exit_status_and_report(tmp_path, run_cli):
    m = _corpus(tmp_path / "audio", 4)
    code, out, err = run_cli(["extract", "--manifest", m, "--store", str(tmp_path / "s.zarr"), "--ray",
                              "--workers", "1", "--no-progress"])
    assert code == 3, err  # bad files: partial failure, as a local run
    assert "4 clip frames written" in out and "failures" in out
    code, out, err = run_cli(["extract", "--manifest", m, "--store", str(tmp_path / "t.zarr"), "--workers", "2"])
    assert code == 2 and "only apply with --ray" in err


def test_without_ray_installed_is_one_line(tmp_path, run_cli, monkeypatch):
    m = _corpus(tmp_path / "audio", 1, bad=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code, out, err = run_cli(["extract", "--manifest", m, "--store", str(tmp_path / "s.zarr"), "--ray"])
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "pip install 'mmmos[ray]'" in lines[0] and "Traceback" not in err


# -- sweep -----------------------------------------------------------------------------------------------

SWEEP_SETS = {"bienc": ("encA",), "trienc": ("encA", "encB")}
SWEEP_NAMES = ("bienc-mlp-utmos", "trienc-blstm_t-ccc")


def _sweep_cfgs(extra_bad: bool = False):
    from mmmos.sweep import paper_configs

    cfgs = [c for c in paper_configs(SWEEP_SETS) if c.name in SWEEP_NAMES]
    for c in cfgs:
        c.lr, c.epochs = 3e-3, 2
        c.threads = 1  # as each Ray task (--cpus-per-config 1): LSTM sums round alike only at one thread count
    if extra_bad:  # a configuration whose head cannot be built: it fails, the others finish
        bad = [c for c in paper_configs(SWEEP_SETS) if c.name == "trienc-blstm_h-utmos"][0]
        bad.head_cfg, bad.epochs = {"no_such_option": 1}, 2
        cfgs.append(bad)
    return cfgs


def test_ray_sweep_equals_local_sweep(tmp_path):
    from synthetic_cache import make_synthetic

    from mmmos.app.ray_sweep import run_sweep_ray
    from mmmos.sweep import load_labels, run_sweep

    store, sets = make_synthetic(tmp_path / "synth", n_train=48, n_dev=16, n_pam=12)
    tr, dv = load_labels("train", sets["train"]), load_labels("dev", sets["dev"])
    ev = [load_labels("pam_dev", sets["pam_dev"])]
    run_sweep(_sweep_cfgs(), str(store), tmp_path / "local", tr, dv, ev, progress=False)
    res = run_sweep_ray(_sweep_cfgs(extra_bad=True), str(store), tmp_path / "ray", tr, dv, ev, RayOptions(),
                        progress=False)
    assert all("error" not in res[n] for n in SWEEP_NAMES)
    assert "no_such_option" in res["trienc-blstm_h-utmos"]["error"]
    for name in SWEEP_NAMES:
        a, b = tmp_path / "local" / "configs" / name, tmp_path / "ray" / "configs" / name
        assert (b / "DONE").exists()
        for f in ("predictions/dev.parquet", "predictions/pam_dev.parquet", "metrics.parquet"):
            assert pl.read_parquet(a / f).equals(pl.read_parquet(b / f)), (name, f)
    summary = pl.read_parquet(tmp_path / "ray" / "summary.parquet")
    assert set(SWEEP_NAMES) <= set(summary["config"].to_list())
    # a second run trains only what is missing (the failed one), the finished ones are skipped
    again = run_sweep_ray(_sweep_cfgs(), str(store), tmp_path / "ray", tr, dv, ev, RayOptions(), progress=False)
    assert all(again[n].get("skipped") for n in SWEEP_NAMES)


def test_sweep_command_with_ray_options(tmp_path, capsys):
    """The `mmmos sweep` entry with Ray options: a finished run is skipped without starting tasks; Ray-only
    options without --ray are refused."""
    import argparse

    from synthetic_cache import make_synthetic

    from mmmos.app import sweep_cmd
    from mmmos.core.errors import UserError
    from mmmos.sweep import load_labels, run_sweep

    store, sets = make_synthetic(tmp_path / "synth", n_train=24, n_dev=8, n_pam=6)
    cfgs = [c for c in _sweep_cfgs() if c.name == "bienc-mlp-utmos"]
    for c in cfgs:
        c.epochs, c.patience = 1, 1
    run_sweep(cfgs, str(store), tmp_path / "run", load_labels("train", sets["train"]),
              load_labels("dev", sets["dev"]), [], progress=False)
    p = argparse.ArgumentParser()
    sweep_cmd.add_arguments(p)
    base = ["--store", str(store), "--run", str(tmp_path / "run"), "--train", str(sets["train"]), "--dev",
            str(sets["dev"]), "--sets", "bienc=encA,trienc=encA+encB", "--only", "bienc-mlp-utmos", "--epochs", "1",
            "--patience", "1", "--lr", "0.003", "--no-progress"]
    a = p.parse_args(base + ["--ray", "--cpus-per-config", "1"])
    assert a.ray == "local" and a.cpus_per_config == 1.0
    assert sweep_cmd.run_cli(a) == 0
    assert capsys.readouterr().out.startswith("sweep (ray): 0 trained, 1 already done, 0 failed")
    with pytest.raises(UserError, match="only apply with --ray"):
        sweep_cmd.run_cli(p.parse_args(base + ["--gpus-per-config", "1"]))


def test_ray_extract_runs_the_text_encoders_as_one_process_does(tmp_path):
    """Track 1 on Ray: audio on the actors, the prompts' text encoder on the driver; the same store and the
    same failure rows as a local run (a clip without a prompt is a failure of the text encoder only)."""
    from test_track1_extract import config, make_corpus

    lst = make_corpus(tmp_path / "me")
    local = run_extract(config(lst, tmp_path / "local.zarr"))
    run = run_extract_ray(config(lst, tmp_path / "ray.zarr"), RayOptions(workers=1))
    for enc in ("logmel", "hashtext"):
        a, b = _frames(str(tmp_path / "local.zarr"), enc), _frames(str(tmp_path / "ray.zarr"), enc)
        assert sorted(a) == sorted(b) and a
        assert all(np.array_equal(a[c], b[c]) for c in a)
    assert run.report.written == local.written
    assert _rows(run.report.failures) == _rows(local.failures) and any(r[2] == "hashtext" for r in _rows(local.failures))
    assert [r.name for r in run.report.text] == ["hashtext"]


def test_ray_extract_names_a_clip_left_to_a_live_writer(tmp_path):
    """A listed clip no unit wrote (another extract, alive, holds its claim) is a failure row naming the writer,
    as in a local run - not a silent gap in the cache."""
    import socket

    from mmmos.cache_store import clip_key
    from mmmos.cache_store.locking import boot_id, process_start

    m = _corpus(tmp_path / "audio", 4, bad=False)
    store = tmp_path / "s.zarr"
    run_extract(ExtractConfig([m], str(store), progress=False, limit=1))  # creates the encoder folder
    me, host = os.getpid(), socket.gethostname()  # a live writer: this process, with another token
    claim = next(store.glob("encoders/logmel-*")) / "claims" / clip_key("clip002")
    claim.write_text(f"{host} {me} feedface0000.{process_start(me)}.{boot_id()}")
    run = run_extract_ray(ExtractConfig([m], str(store), progress=False), RayOptions(workers=1))
    named = {f.clip_id: f.error for f in run.report.failures}
    assert set(named) == {"clip002"}
    assert f"claimed by another extract still running ({host} {me})" in named["clip002"]
    assert sorted(open_store(store).group("logmel").clip_ids()) == ["clip000", "clip001", "clip003"]
    assert pl.read_csv(failures_path(store))["clip_id"].to_list() == ["clip002"]
