"""Training configurations in worker processes that never outlive the sweep that started them.

Two guards (Linux): each worker asks the kernel to SIGKILL it when its parent dies
(``prctl(PR_SET_PDEATHSIG)``, set in the pool initializer), and before writing a DONE marker a worker
checks that its parent is still the process that started it - so a worker that somehow survived (e.g. on
a platform without prctl) never marks a configuration finished behind a re-run's back.

Each worker sets its math threads before its first forward (:func:`mmmos.core.threads.apply_thread_policy`
with ``workers=jobs``: ``threads_per_worker(jobs)`` intra-op threads, BLAS pools and the env vars alike), so
``jobs`` workers never run more threads than there are cores.
"""
from __future__ import annotations

import os
import signal
import sys
import traceback

from .train import train_configuration

PR_SET_PDEATHSIG = 1  # linux/prctl.h

_PARENT_PID: int | None = None  # set in pool workers only


class ParentGoneError(RuntimeError):
    """The sweep that started this worker has ended; the configuration is left unfinished."""


def die_with_parent() -> bool:
    """Ask the kernel to SIGKILL this process when its parent exits (Linux only); True when set."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def init_worker(parent_pid: int, jobs: int = 1) -> None:
    """Pool initializer: remember the parent, die with it, quit if it is already gone, and set this
    worker's math threads for ``jobs`` workers sharing the cores."""
    global _PARENT_PID
    _PARENT_PID = parent_pid
    die_with_parent()
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    from mmmos.core.threads import apply_thread_policy

    apply_thread_policy(workers=jobs)


def check_parent() -> None:
    """Raise :class:`ParentGoneError` when this worker's parent sweep has ended."""
    if _PARENT_PID is not None and os.getppid() != _PARENT_PID:
        raise ParentGoneError(f"the sweep process {_PARENT_PID} has ended; not marking the configuration done")


def train_one(args):
    """Train one configuration; returns ``(name, result, error text)`` - errors are reported, not raised."""
    cfg, store, train, dev, evals, out, progress = args
    try:
        res = train_configuration(cfg, store, train, dev, evals, out, progress, before_done=check_parent)
        return cfg.name, res, None
    except ParentGoneError:
        os._exit(1)  # nobody is listening for the result
    except Exception as e:  # noqa: BLE001 - reported in the summary, other configs go on
        return cfg.name, None, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"


def run_pool(todo: list, jobs: int, args_of, report) -> None:
    """Train ``todo`` in ``jobs`` spawned processes; ``report(name, result, error)`` for each as it ends."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Pool(jobs, initializer=init_worker, initargs=(os.getpid(), jobs)) as pool:
        for name, res, err in pool.imap_unordered(train_one, [args_of(c) for c in todo]):
            report(name, res, err)
