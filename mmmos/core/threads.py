"""The thread policy: how many threads one process's math libraries use, set deliberately in one place.

Rule (measured on shared 2-core machines; it holds wherever a forward pass is short):

* **Cores actually free**, for ``predict`` only: it uses ``free_cores()`` = min(affinity, cgroup quota) minus
  the cores other processes keep busy (threads runnable now, from /proc/loadavg).  An idle machine gets
  every core for ``predict`` of one or several files; a machine busy with other work gets 1.  Training and
  extraction keep a count that does not depend on the machine's load (their sums must not change with it).
* **Many short, independent items** - ``extract --jobs``, Ray workers, ``sweep --jobs``, and items known
  to be short (< ``SMALL_ITEM_SECONDS`` each): one process per core, each with ONE intra-op thread
  (``configure_threads(1)`` in every worker, before its first forward).  Items run side by side with no
  synchronisation; intra-op threads on a short forward spend much of their time in barriers.
* **One large forward** - one long clip, a big batch, a single-process run: intra-op threads = the cores
  this process may use (``configure_threads()``).
* Never both at once: processes x threads <= cores (:func:`threads_per_worker`); oversubscribed
  OpenMP pools spin against each other and run slower than one thread.

Every command applies the rule through :func:`apply_thread_policy` (``workers``: processes it runs side by
side; ``items``: independent items one process scores in turn), and ``MMMOS_THREADS=N`` overrides it for
all of them (e.g. two ``extract --shard`` processes started by hand: ``MMMOS_THREADS=1``).  Per command:
``predict`` (one or several files) -> free cores; ``sweep --jobs N`` workers ->
``threads_per_worker(N)``; ``sweep --jobs 1`` and ``extract`` -> every core; Ray actors -> their CPUs.

:func:`configure_threads` sets torch's intra-op pool (when torch is loaded), BLAS/OpenMP pools of
already-loaded libraries through threadpoolctl (when installed), and the environment variables that
libraries loaded later, and child processes, read at start-up.
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

from .errors import UserError

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


class ThreadSettingError(UserError, ValueError):
    """``MMMOS_THREADS`` is set to something other than a positive integer."""


OVERRIDE_ENV = "MMMOS_THREADS"  # the user's choice, applied by every command instead of the rule


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs this process's cgroup may use (``cpu.max`` quota / period, v2; ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``, v1), None when unlimited or unknown."""
    try:
        quota, period = Path(root, "cpu.max").read_text().split()[:2]
        if quota != "max" and float(period) > 0:
            return float(quota) / float(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = float(Path(root, "cpu", "cpu.cfs_quota_us").read_text())
        period = float(Path(root, "cpu", "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def _own_load() -> float:
    """This process's share of the 1-minute load average: one runnable thread whose contribution has been
    growing as 1 - exp(-age/60) since the process started (the kernel's exponential average)."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        start = float(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return 1.0 - math.exp(-max(0.0, uptime - start) / 60.0)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def running_now(samples: int = 5, gap: float = 0.01) -> float | None:
    """Other runnable threads right now: the median over ``samples`` reads of /proc/loadavg's
    running count, less this thread (None where there is no /proc).  The 1-minute load average lags a
    process that has just started by a minute; this sees it at once."""
    counts = []
    for i in range(samples):
        try:
            counts.append(int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            return None
        if i + 1 < samples:
            time.sleep(gap)
    return float(sorted(counts)[len(counts) // 2])


def free_cores(*, affinity: int | None = None, quota: float | None = -1.0, load: float | None = None,
               own_load: float | None = None, running: float | None = -1.0) -> int:
    """Cores this process can actually use now: ``min(affinity, ceil(cgroup quota))`` minus the cores
    other processes keep busy, at least 1.  Busy = the runnable threads of others right now
    (:func:`running_now`, /proc/loadavg) where known, else the 1-minute load average minus this process's
    own share; rounded.  (The load average lags by a minute both ways: measured, a quiet run started right
    after a busy one saw the old load and took 1 thread.)

    Every input can be injected (tests; ``quota=None`` / ``running=None`` mean none); by default they are
    read from ``os.sched_getaffinity``, the cgroup's ``cpu.max``, ``os.getloadavg`` and /proc/loadavg
    (the instantaneous count is read only when the load average is not injected)."""
    cores = available_cores() if affinity is None else max(1, int(affinity))
    if quota == -1.0:
        quota = cgroup_cpu_limit()
    if quota is not None and quota > 0:
        cores = min(cores, max(1, math.ceil(quota - 1e-9)))
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
        if running == -1.0:
            running = running_now()
    if running is not None and running != -1.0:
        others = max(0.0, float(running))  # what is runnable now: no lag either way
    else:  # no /proc: the 1-minute load average less our own share (lags a minute both ways)
        own = _own_load() if own_load is None else own_load
        others = max(0.0, load - own)
    busy = max(0, int(math.floor(others + 0.5)))
    return max(1, cores - busy)


# Below this many audio-seconds per item, several items in one process run best on one thread: the
# forward is short and intra-op threads spend it in barriers (issue 12's 2-6-s demo files).
SMALL_ITEM_SECONDS = 2.0


def policy_threads(workers: int = 1, items: int | None = None, cores: int | None = None,
                   item_seconds: float | None = None, load_aware: bool = False) -> int:
    """Intra-op threads per process by the rule above: ``workers`` > 1 processes share the cores; one
    process uses every core it may run on, or with ``load_aware`` (``predict``) the cores that are free
    (:func:`free_cores`: affinity, cgroup quota, load of other processes) - except many items known to be
    small (``item_seconds`` < :data:`SMALL_ITEM_SECONDS` each), which use 1.  ``cores`` overrides the core
    count (tests, callers that know better).

    Training and extraction are not load-aware on purpose: float sums (an LSTM's, a batched encoder's) round
    differently at different thread counts, and a sweep or a cache must not change with what else the machine
    was doing; ``predict`` scores agree across thread counts to 1e-6 (tests/test_threads.py)."""
    if cores is None:
        cores = free_cores() if load_aware else available_cores()
    if int(workers) > 1:
        return threads_per_worker(workers, cores)
    if items is not None and int(items) > 1 and item_seconds is not None and item_seconds < SMALL_ITEM_SECONDS:
        return 1
    return cores


def thread_override() -> int | None:
    """``MMMOS_THREADS`` as a positive int, None when unset or empty; :class:`ThreadSettingError` when it is not one."""
    raw = os.environ.get(OVERRIDE_ENV, "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ThreadSettingError(f"{OVERRIDE_ENV} must be a positive integer, got {raw!r}")
    return n


def apply_thread_policy(workers: int = 1, items: int | None = None, threads: int | None = None,
                        item_seconds: float | None = None, load_aware: bool = False) -> int:
    """Configure this process's threads for its workload and return the number set: ``threads`` when
    given (an explicit option), else ``MMMOS_THREADS``, else :func:`policy_threads`."""
    n = threads if threads is not None else thread_override()
    if n is None:
        n = policy_threads(workers, items, item_seconds=item_seconds, load_aware=load_aware)
    return configure_threads(n)


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


__all__ = ["OVERRIDE_ENV", "SMALL_ITEM_SECONDS", "THREAD_ENV_VARS", "ThreadSettingError", "apply_thread_policy",
           "available_cores", "cgroup_cpu_limit", "configure_threads", "free_cores", "policy_threads", "running_now", "thread_override", "threads_per_worker"]
