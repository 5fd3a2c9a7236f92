"""Training configurations in worker processes that never outlive the sweep that started them.

Two guards (Linux): each worker asks the kernel to SIGKILL it when its parent dies
(``prctl(PR_SET_PDEATHSIG)``, set in the pool initializer), and before writing a DONE marker a worker
checks that its parent is still the process that started it - so a worker that somehow survived (e.g. on
a platform without prctl) never marks a configuration finished behind a re-run's back.

Stopping (Ctrl-C, SIGTERM): workers ignore SIGINT (a terminal sends it to the whole process group) and the
parent alone decides - it sends SIGTERM to every worker, waits a few seconds, SIGKILLs any left, and only then
lets the interrupt end the command (exit 130/143).  A worker ends by SIGTERM's default action: no traceback, no
result; its configuration has no DONE marker, so a re-run trains it again.  (``multiprocessing.Pool`` could not
do this: workers died of the Ctrl-C with a traceback and the pool's shutdown could wait forever for them.)

Each worker sets its math threads before its first forward (:func:`mmmos.core.threads.apply_thread_policy`
with ``workers=jobs``: ``threads_per_worker(jobs)`` intra-op threads, BLAS pools and the env vars alike), so
``jobs`` workers never run more threads than there are cores.
"""
from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from mmmos.core.interrupts import child_ignores_interrupts, shielded, starting_children

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
        return cfg.name, None, error_text(e)


def error_text(e: Exception) -> str:
    """How a failed configuration is reported: a user-fixable cause (a damaged or missing clip, a bad list) is
    its one line; anything else (a bug) keeps a short traceback."""
    from mmmos.core.errors import UserError

    if isinstance(e, UserError):
        return f"{type(e).__name__}: {e}"
    return f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"


STOP_GRACE_SECONDS = 5.0  # SIGTERM -> SIGKILL: a worker gets this long to end


def _worker_main(conn, fn: Callable, parent_pid: int, jobs: int) -> None:
    """A worker: take argument tuples from ``conn`` until ``None`` (or the pipe closes), send back ``fn(args)``."""
    child_ignores_interrupts()
    init_worker(parent_pid, jobs)
    while True:
        try:
            args = conn.recv()
        except (EOFError, OSError):
            return
        if args is None:
            return
        conn.send(fn(args))


@dataclass
class _Worker:
    proc: Any
    conn: Any
    task: str | None = None  # the configuration it is training


def _start(ctx, fn: Callable, jobs: int) -> _Worker:
    a, b = ctx.Pipe()
    proc = ctx.Process(target=_worker_main, args=(b, fn, os.getpid(), jobs), daemon=True, name="mmmos-sweep-worker")
    with starting_children():
        proc.start()
    b.close()
    return _Worker(proc, a)


def _dispatch(w: _Worker, queue: list, args_of) -> None:
    """Give ``w`` the next configuration, or tell it to exit when none is left."""
    if queue:
        c = queue.pop(0)
        w.task = c.name
        w.conn.send(args_of(c))
    else:
        w.task = None
        w.conn.send(None)


def stop_workers(workers: list[_Worker], grace: float = STOP_GRACE_SECONDS) -> None:
    """End every worker: SIGTERM to those still running, SIGKILL after ``grace`` seconds; all are reaped.
    Signals are held back meanwhile, so a second Ctrl-C cannot leave a worker behind."""
    with shielded():
        for w in workers:
            if w.proc.is_alive():
                w.proc.terminate()
        deadline = time.monotonic() + grace
        for w in workers:
            w.proc.join(max(0.0, deadline - time.monotonic()))
        for w in workers:
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(grace)
            w.conn.close()


def run_pool(todo: list, jobs: int, args_of, report, fn: Callable = train_one, thread_jobs: int | None = None) -> None:
    """Run ``fn(args_of(c))`` for each of ``todo`` in ``jobs`` spawned processes; ``report(name, result, error)``
    for each as it ends.  A worker that dies fails only its configuration (a fresh worker takes the rest); an
    interrupt stops every worker (:func:`stop_workers`) before it propagates."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")
    queue, workers = list(todo), []
    tj = thread_jobs or jobs
    try:
        for _ in range(min(jobs, len(queue))):
            workers.append(_start(ctx, fn, tj))
            _dispatch(workers[-1], queue, args_of)
        while any(w.task for w in workers):
            busy = [w for w in workers if w.task]
            ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy])
            for w in busy:
                if w.conn not in ready and w.proc.sentinel not in ready:
                    continue
                try:
                    name, res, err = w.conn.recv()
                except (EOFError, OSError):  # the worker died without an answer
                    w.proc.join(1.0)
                    name, res, err = w.task, None, (f"WorkerDied: the process training it ended unexpectedly "
                                                    f"(exit code {w.proc.exitcode})")
                    w.task = None
                    report(name, res, err)
                    if queue:
                        workers.append(_start(ctx, fn, tj))
                        _dispatch(workers[-1], queue, args_of)
                    continue
                report(name, res, err)
                _dispatch(w, queue, args_of)
    finally:
        stop_workers(workers)
