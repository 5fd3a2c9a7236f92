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
