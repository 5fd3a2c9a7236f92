"""Thread policy: configure_threads sets torch, BLAS/OpenMP pools and the env vars; run in fresh
processes so the settings do not leak into other tests."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mmmos.core.threads import THREAD_ENV_VARS, available_cores, configure_threads, threads_per_worker


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_after_torch_import_resizes_torch_and_blas_pools():
    got = _run(
        "import json, os, numpy, torch\n"
        "from threadpoolctl import threadpool_info\n"
        "from mmmos.core.threads import configure_threads\n"
        "torch.ones(64, 64) @ torch.ones(64, 64)\n"
        "n = configure_threads(1)\n"
        "print(json.dumps({'n': n, 'torch': torch.get_num_threads(), 'omp': os.environ['OMP_NUM_THREADS'],"
        " 'pools': sorted({p['num_threads'] for p in threadpool_info()})}))"
    )
    assert got == {"n": 1, "torch": 1, "omp": "1", "pools": [1]}


def test_before_torch_import_the_env_vars_reach_torch():
    got = _run(
        "import json\n"
        "from mmmos.core.threads import configure_threads\n"
        "configure_threads(1)\n"
        "import torch\n"
        "print(json.dumps({'torch': torch.get_num_threads()}))"
    )
    assert got == {"torch": 1}


def test_default_is_available_cores_and_children_inherit(monkeypatch):
    for var in THREAD_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    got = _run(
        "import json, os, subprocess, sys\n"
        "from mmmos.core.threads import configure_threads, available_cores\n"
        "n = configure_threads()\n"
        "child = subprocess.run([sys.executable, '-c', 'import os; print(os.environ[\"MKL_NUM_THREADS\"])'],"
        " capture_output=True, text=True).stdout.strip()\n"
        "print(json.dumps({'n': n, 'cores': available_cores(), 'child': child}))"
    )
    assert got["n"] == got["cores"] and got["child"] == str(got["cores"])


def test_threads_per_worker_never_oversubscribes():
    assert threads_per_worker(1, cores=8) == 8
    assert threads_per_worker(3, cores=8) == 2
    assert threads_per_worker(16, cores=8) == 1
    assert threads_per_worker(2) * 2 <= max(2, available_cores())
    with pytest.raises(ValueError):
        threads_per_worker(0)


def test_rejects_non_positive():
    with pytest.raises(ValueError, match=">= 1"):
        configure_threads(0)


# -- the policy --------------------------------------------------------------------------------------------
def test_policy_by_workload():
    from mmmos.core.threads import policy_threads

    assert policy_threads(cores=8) == 8  # one process, one large item (or unknown): every core
    assert policy_threads(items=1, cores=8) == 8
    assert policy_threads(items=360, cores=8) == 8  # several items in one process: the free cores (issue 21)
    assert policy_threads(items=360, cores=8, item_seconds=0.5) == 1  # many items known to be tiny
    assert policy_threads(items=1, cores=8, item_seconds=0.5) == 8
    assert policy_threads(items=24, cores=8, item_seconds=10.0) == 8
    assert policy_threads(workers=2, cores=8) == 4  # --jobs 2
    assert policy_threads(workers=3, items=50, cores=2) == 1


def test_only_predict_follows_the_load(monkeypatch):
    """A sweep or an extraction takes every core whatever else runs (their float sums must not depend on the
    machine's load); predict takes the free ones."""
    import mmmos.core.threads as t

    monkeypatch.setattr(t, "free_cores", lambda **kw: 1)  # a busy machine
    monkeypatch.setattr(t, "available_cores", lambda: 4)
    assert t.policy_threads() == 4 and t.policy_threads(workers=2) == 2
    assert t.policy_threads(items=10, load_aware=True) == 1 and t.policy_threads(workers=2, load_aware=True) == 1


def test_free_cores_from_injected_load_quota_and_affinity(tmp_path):
    from mmmos.core.threads import cgroup_cpu_limit, free_cores

    # idle machine: every core the process may use
    assert free_cores(affinity=2, quota=None, load=0.0, own_load=0.0) == 2
    # one other CPU-bound process (load 1 plus our own share): one core left
    assert free_cores(affinity=2, quota=None, load=1.3, own_load=0.3) == 1
    # our own load is not someone else's: a load of 1.0 that is all ours leaves both cores
    assert free_cores(affinity=2, quota=None, load=1.0, own_load=1.0) == 2
    # busier than the cores: still one thread
    assert free_cores(affinity=2, quota=None, load=9.0, own_load=0.0) == 1
    # a cgroup quota of 1.5 CPUs on 8 cores: 2 threads; then two busy cores of load leave... at least 1
    assert free_cores(affinity=8, quota=1.5, load=0.0, own_load=0.0) == 2
    assert free_cores(affinity=8, quota=4.0, load=2.4, own_load=0.0) == 2
    # a process that started a moment ago is not in the load average yet, but is runnable now
    assert free_cores(affinity=2, quota=None, load=0.0, own_load=0.0, running=1.0) == 1
    # ... and one that has just stopped is still in the load average but no longer runnable
    assert free_cores(affinity=4, quota=None, load=1.0, own_load=0.0, running=0.0) == 4
    # the affinity mask caps everything
    assert free_cores(affinity=1, quota=None, load=0.0, own_load=0.0) == 1
    # cgroup files: v2 cpu.max, v1 cfs quota, unlimited
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(str(tmp_path)) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(str(tmp_path)) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(str(v1)) == 3.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(str(v1)) is None
    assert cgroup_cpu_limit(str(tmp_path / "missing")) is None


def test_override_env_wins_and_bad_values_are_user_errors(monkeypatch):
    from mmmos.core.errors import UserError
    from mmmos.core.threads import OVERRIDE_ENV, thread_override

    monkeypatch.delenv(OVERRIDE_ENV, raising=False)
    assert thread_override() is None
    monkeypatch.setenv(OVERRIDE_ENV, " 3 ")
    assert thread_override() == 3
    for bad in ("0", "-1", "two", "1.5"):
        monkeypatch.setenv(OVERRIDE_ENV, bad)
        with pytest.raises(UserError, match=OVERRIDE_ENV):
            thread_override()


def test_apply_thread_policy_sets_what_it_returns():
    got = _run(
        "import json, os, torch\n"
        "from mmmos.core.threads import apply_thread_policy\n"
        "a = apply_thread_policy(items=10, item_seconds=0.5)\n"
        "ta = torch.get_num_threads()\n"
        "os.environ['MMMOS_THREADS'] = '2'\n"
        "b = apply_thread_policy(items=10)\n"
        "tb = torch.get_num_threads()\n"
        "c = apply_thread_policy(items=10, threads=1)\n"
        "print(json.dumps({'a': a, 'ta': ta, 'b': b, 'tb': tb, 'c': c, 'tc': torch.get_num_threads(),"
        " 'omp': os.environ['OMP_NUM_THREADS']}))"
    )
    assert got == {"a": 1, "ta": 1, "b": 2, "tb": 2, "c": 1, "tc": 1, "omp": "1"}


def test_sweep_worker_initializer_sets_threads_per_worker():
    got = _run(
        "import json, os, torch\n"
        "from mmmos.core.threads import threads_per_worker\n"
        "from mmmos.sweep.workers import init_worker\n"
        "os.environ.pop('MMMOS_THREADS', None)\n"
        "os.getloadavg = lambda: (0.0, 0.0, 0.0)\n"
        "import mmmos.core.threads as t; t.running_now = lambda *a, **k: 0.0\n"
        "init_worker(os.getppid(), 2)\n"
        "print(json.dumps({'torch': torch.get_num_threads(), 'want': threads_per_worker(2),"
        " 'omp': os.environ['OMP_NUM_THREADS']}))"
    )
    assert got["torch"] == got["want"] and got["omp"] == str(got["want"])


# -- mmmos predict: the policy, and scores independent of the thread count ---------------------------------
SR = 16000


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    """A predictor with random mlp + blstm_t heads on logmel + logmel_slow, and four short clips."""
    import numpy as np
    import soundfile as sf
    import torch

    from mmmos import extract
    from mmmos.app.predict import export_predictor
    from mmmos.cache_store import identity_key
    from mmmos.core.rundir import ModelRecord, RunDir
    from mmmos.core.tasks import get_task
    from mmmos.extract.precision import _encoder_identity
    from mmmos.heads import build_head

    d = tmp_path_factory.mktemp("threads_predict")
    idents, keys, dim = [], [], 0
    for name in ("logmel", "logmel_slow"):
        enc = extract.load_encoder(name, None, device="cpu")
        ident = json.loads(json.dumps({**_encoder_identity(enc, "fp32"), "dtype": "float16"}, default=str))
        idents.append(ident)
        keys.append(identity_key(ident))
        dim += enc.dim
    task = get_task()
    run = RunDir(d / "run")
    for i, head_name in enumerate(("mlp", "blstm_t")):
        torch.manual_seed(i)
        head = build_head(head_name, dim)
        run.config(f"m-{head_name}").write_model(ModelRecord(
            head_config=head.config, state_dict=head.state_dict(), z_mean=[5.0] * task.n_axes,
            z_std=[2.0] * task.n_axes, axes=list(task.axes), encoders=idents, encoder_keys=keys, crop_seconds=4.0,
            grid_rate=6.25, task=task.name))
    model = export_predictor(d / "run", ["m-mlp", "m-blstm_t"], d / "predictor")
    rng = np.random.default_rng(0)
    audio = d / "audio"
    audio.mkdir()
    for i, sec in enumerate((1.5, 3.0, 6.5, 9.0)):
        t = np.arange(int(sec * SR)) / SR
        wave = 0.3 * np.sin(2 * np.pi * (200 + 90 * i) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(audio / f"clip{i}.wav", wave.astype(np.float32), SR)
    return model, audio


def _predict(model, inputs, out, *extra, env_extra=None, load=None):
    """Run ``mmmos predict``; with ``load`` the process sees that 1-minute load average and that many
    other runnable threads (os.getloadavg and running_now patched before the command starts), so the thread
    rule's input is fixed, not the machine's."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV_VARS and k != "MMMOS_THREADS"}
    env.update(env_extra or {})
    if load is not None:
        cmd = [sys.executable, "-c", f"import os, runpy, sys; os.getloadavg = lambda: ({load!r},) * 3; "
               f"import mmmos.core.threads as t; t.running_now = lambda *a, **k: {load!r}; "
               "sys.argv[0] = 'mmmos'; runpy.run_module('mmmos.app.cli', run_name='__main__')"]
    else:
        cmd = [sys.executable, "-m", "mmmos.app.cli"]
    return subprocess.run([*cmd, "predict", *map(str, inputs), "--model", str(model),
                           "--out", str(out), "--no-progress", *extra], capture_output=True, text=True, env=env,
                          timeout=300)


def test_predict_scores_identical_with_one_and_two_threads(predictor, tmp_path):
    import polars as pl

    from mmmos.core.tasks import get_task

    model, audio = predictor
    tables = {}
    for n in (1, 2):
        p = _predict(model, [audio], tmp_path / f"t{n}.csv", "--threads", str(n))
        assert p.returncode == 0, p.stderr
        assert f"; {n} math thread" in p.stderr
        tables[n] = pl.read_csv(tmp_path / f"t{n}.csv").sort("clip_id")
    axes = list(get_task().axes)
    a, b = tables[1].select(axes).to_numpy(), tables[2].select(axes).to_numpy()
    assert a.shape == (4, len(axes))
    assert abs(a - b).max() <= 1e-6


def test_predict_policy_uses_the_free_cores_for_one_or_many_files(predictor, tmp_path):
    from mmmos.core.threads import free_cores

    model, audio = predictor
    n = free_cores(load=0.0, own_load=0.0)  # this machine's cores (affinity, cgroup quota), nothing else running
    many = _predict(model, [audio], tmp_path / "many.csv", load=0.0)  # idle machine: several files get every free core
    assert many.returncode == 0, many.stderr
    assert f"; {n} math thread{'s' if n != 1 else ''};" in many.stderr
    busy = _predict(model, [audio], tmp_path / "busy.csv", load=float(available_cores() + 4))  # every core busy
    assert busy.returncode == 0, busy.stderr
    assert "; 1 math thread;" in busy.stderr
    one = _predict(model, [audio / "clip3.wav"], tmp_path / "one.csv", load=0.0)
    assert one.returncode == 0, one.stderr
    assert f"; {n} math thread{'s' if n != 1 else ''};" in one.stderr
    forced = _predict(model, [audio], tmp_path / "forced.csv", env_extra={"MMMOS_THREADS": "2"})
    assert "; 2 math threads;" in forced.stderr


def test_predict_bad_thread_override_is_a_one_line_user_error(predictor, tmp_path):
    model, audio = predictor
    p = _predict(model, [audio], tmp_path / "bad.csv", env_extra={"MMMOS_THREADS": "lots"})
    assert p.returncode == 2
    assert "MMMOS_THREADS must be a positive integer" in p.stderr and "Traceback" not in p.stderr


def test_predict_precision_is_resolved_per_encoder(predictor):
    from mmmos.app.predict import Predictor, PredictorError
    from mmmos.core.errors import UserError

    model, _ = predictor
    # logmel is numpy: it computes fp32 whatever is asked; fp16 is CUDA autocast, fp32 elsewhere
    for want in ("auto", "fp32", "fp16", "bf16"):
        pred = Predictor.load(model, device="cpu", precision=want)
        assert set(pred.encoders.precisions.values()) == {"fp32"}, want
    with pytest.raises(UserError):
        Predictor.load(model, device="cpu", precision="fp8")
    assert issubclass(PredictorError, UserError)


def test_predict_precision_option_rejects_unknown(predictor, tmp_path):
    model, audio = predictor
    p = _predict(model, [audio], tmp_path / "x.csv", "--precision", "fp8")
    assert p.returncode == 2 and "--precision" in p.stderr
