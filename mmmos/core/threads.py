"""The thread policy: how many threads one process's math libraries use, set deliberately in one place.

Rule (measured on shared 2-core machines; it holds wherever a forward pass is short):

* **Many short, independent items** - ``extract --jobs``, Ray workers, ``predict`` over many short files,
  ``sweep --jobs``: one process per core, each with ONE intra-op thread
  (``configure_threads(1)`` in every worker, before its first forward).  Items run side by side with no
  synchronisation; intra-op threads on a short forward spend much of their time in barriers.
* **One large forward** - one long clip, a big batch, a single-process run: intra-op threads = the cores
  this process may use (``configure_threads()``).
* Never both at once: processes x threads <= cores (:func:`threads_per_worker`); oversubscribed
  OpenMP pools spin against each other and run slower than one thread.

:func:`configure_threads` sets torch's intra-op pool (when torch is loaded), BLAS/OpenMP pools of
already-loaded libraries through threadpoolctl (when installed), and the environment variables that
libraries loaded later, and child processes, read at start-up.
"""
from __future__ import annotations

import os
import sys

# read once at library start-up (OpenMP runtime, MKL, OpenBLAS, numexpr, Accelerate)
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Intra-op threads each of ``workers`` processes may use so that workers x threads <= cores."""
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return max(1, (cores or available_cores()) // int(workers))


def configure_threads(n_threads: int | None = None) -> int:
    """Use ``n_threads`` (default: :func:`available_cores`) threads for intra-op math in this process and
    the processes it starts.  Returns the number set.  Call it early: before torch is imported it costs
    nothing (torch reads ``OMP_NUM_THREADS``); afterwards it also resizes torch's pool and, when still
    possible, sets torch's inter-op pool to 1 (our forwards run one op graph at a time)."""
    n = available_cores() if n_threads is None else int(n_threads)
    if n < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # env vars still reach libraries loaded from now on
        pass
    else:
        threadpool_limits(limits=n)  # BLAS/OpenMP pools of libraries already loaded (numpy, scipy, torch)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # only settable before the first parallel work; harmless to leave
            pass
    return n


__all__ = ["THREAD_ENV_VARS", "available_cores", "configure_threads", "threads_per_worker"]
