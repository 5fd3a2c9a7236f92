"""Running mmmos work on Ray: connecting, the shared command-line options, checks and a progress bar.

Ray lives in the application layer, over the stage APIs: extraction units go to an actor pool
(:mod:`mmmos.app.ray_extract`), sweep configurations become Ray tasks (:mod:`mmmos.app.ray_sweep`).
Ray itself places the work (declared CPUs/GPUs per worker or task), restarts dead actors and retries
dead tasks (bounded); mmmos units are idempotent (atomic clip commits, ``DONE`` markers), so a retry
never duplicates or loses work.

Ray is an optional extra (``pip install 'mmmos[ray]'``); without it ``--ray`` is one :class:`UserError`.
Nothing here imports Ray at module level, so ``mmmos --help`` stays fast.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import time
from dataclasses import dataclass

from mmmos.core.argtypes import non_negative_int, positive_float, positive_int
from mmmos.core.errors import UserError
from mmmos.core.exiting import skip_native_teardown
from mmmos.core.interrupts import Terminated, service_processes, shielded

LOCAL = "local"  # the ``--ray`` value meaning "start a Ray instance on this machine"
INSTALL_HINT = "pip install 'mmmos[ray]' (or: pip install 'ray[default]')"


class RayUnavailableError(UserError):
    """``--ray`` was asked for but Ray is not installed, or the cluster cannot be reached or used."""


def non_negative_float(s: str) -> float:
    """argparse type: a finite float >= 0 (e.g. a fraction of a GPU, or 0)."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {s!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {s!r}")
    return v


@dataclass
class RayOptions:
    """Where to run and what each unit of work reserves on the cluster."""

    address: str | None = None  # None: a local instance; "auto", "HOST:6379" or "ray://HOST:10001": join a cluster
    workers: int | None = None  # extraction actors (None: as many as the cluster's resources allow)
    cpus: float = 1.0  # CPUs reserved per actor / per configuration task
    gpus: float = 0.0  # GPUs reserved per actor / per configuration task (fractions share a GPU)
    retries: int = 3  # restarts of a dead actor / retries of a dead task (bounded)


def add_ray_arguments(p: argparse.ArgumentParser, unit: str) -> None:
    """``--ray [ADDRESS]`` and the resource options; ``unit`` is "worker" (extract) or "config" (sweep)."""
    g = p.add_argument_group("Ray cluster (optional extra: pip install 'mmmos[ray]')")
    g.add_argument("--ray", nargs="?", const=LOCAL, default=None, metavar="ADDRESS",
                   help="run on Ray: without ADDRESS a local Ray instance (all local cores/GPUs); 'auto' or "
                        "HOST:6379 or ray://HOST:10001 joins a running cluster (the store must be a path every "
                        "node sees)")
    if unit == "worker":
        g.add_argument("--workers", type=positive_int, default=None,
                       help="with --ray: encoder workers (actors, each loads the encoders once; default: as many "
                            "as the cluster's CPUs/GPUs allow)")
    g.add_argument(f"--cpus-per-{unit}", type=positive_float, default=1.0,
                   help=f"with --ray: CPUs reserved per {unit} (also its math threads; default 1)")
    g.add_argument(f"--gpus-per-{unit}", type=non_negative_float, default=0.0,
                   help=f"with --ray: GPUs reserved per {unit} (0.5 lets two share a GPU; >0 runs it on cuda; "
                        f"default 0 = CPU)")
    g.add_argument("--ray-retries", type=non_negative_int, default=3,
                   help=f"with --ray: times a dead {unit} is restarted/retried before its work is reported failed")


def options_from_args(a: argparse.Namespace, unit: str) -> RayOptions | None:
    """The :class:`RayOptions` of parsed arguments, or None without ``--ray`` (then the Ray-only options must
    keep their defaults)."""
    cpus, gpus = getattr(a, f"cpus_per_{unit}"), getattr(a, f"gpus_per_{unit}")
    workers = getattr(a, "workers", None)
    if a.ray is None:
        given = [f"--{n}" for n, v, d in (("workers", workers, None), (f"cpus-per-{unit}", cpus, 1.0),
                                           (f"gpus-per-{unit}", gpus, 0.0), ("ray-retries", a.ray_retries, 3))
                 if v != d]
        if given:
            raise UserError(f"{', '.join(given)} only apply with --ray")
        return None
    return RayOptions(address=None if a.ray == LOCAL else a.ray, workers=workers, cpus=cpus, gpus=gpus,
                      retries=a.ray_retries)


def require_ray():
    """The ``ray`` module, or a one-line :class:`RayUnavailableError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayUnavailableError(f"--ray needs Ray, which is not installed here: {INSTALL_HINT}") from None
    return ray


@contextlib.contextmanager
def _own_sigterm(ray):
    """While Ray starts, SIGTERM stays this command's (:class:`Terminated`, exit 143): ray.init would set a Python
    handler calling ``sys.exit(15)`` (which a callback can swallow, leaving the command running) and its C++ core a
    handler that dumps a stack and aborts."""
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    utils = getattr(getattr(ray, "_private", None), "utils", None)
    setter = getattr(utils, "set_sigterm_handler", None)
    if setter is not None:
        utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        if setter is not None:
            utils.set_sigterm_handler = setter


@contextlib.contextmanager
def ray_session(address: str | None):
    """Ray, initialised for the ``with`` block: a local instance (``address`` None) or the cluster at
    ``address``.  An already initialised Ray (e.g. a test's) is used as it is and left running."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    # no usage reports leave the machine unless the user opts in (RAY_USAGE_STATS_ENABLED=1)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # a local instance stays on the loopback interface
    local = {"_node_ip_address": "127.0.0.1"} if address is None else {}
    # service_processes: none of a local instance's daemons outlives the command, and the SIGINT/SIGTERM handlers
    # Ray replaces (in init and again in shutdown) are put back
    with service_processes() as reinstate_handlers, _own_sigterm(ray):
        skip_native_teardown("ray")  # its core worker's C++ exit hook races its own I/O thread (SIGSEGV)
        try:
            ray.init(address=address, log_to_driver=True, logging_level="WARNING", **local)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = address or "a local instance"
            raise RayUnavailableError(f"could not start or join Ray ({where}): {str(e).splitlines()[0]}") from None
        except SystemExit as e:
            if e.code == signal.SIGTERM:  # ray.init's own SIGTERM handler (sys.exit(15)) was in place
                raise Terminated() from None
            raise
        finally:
            reinstate_handlers()
        try:
            yield ray
        finally:
            _shut_down(ray)


def _shut_down(ray) -> None:
    """``ray.shutdown()`` without a window where SIGTERM ends the command at once: Ray's core worker puts SIGTERM
    back to its default action as it stops, and a SIGTERM then (Ray stopping its daemons takes about a second)
    would kill the command before it stops what is left, leaving daemons running.  The shutdown runs shielded, the
    shield's handlers are put back before Ray stops its daemons, and a signal that came meanwhile is delivered when
    the shutdown is done."""
    with shielded():
        held = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        node = getattr(getattr(getattr(ray, "_private", None), "worker", None), "_global_node", None)
        kill = getattr(node, "kill_all_processes", None)
        if kill is not None:
            def kill_with_handlers(*args, **kwargs):
                for s, h in held.items():  # always: Python's own record of the handler does not see Ray's change
                    if h is not None:
                        signal.signal(s, h)
                return kill(*args, **kwargs)

            node.kill_all_processes = kill_with_handlers
        ray.shutdown()


def check_fits(ray, opts: RayOptions, unit: str) -> dict:
    """The cluster's total resources; a user error when one ``unit`` could never be placed."""
    res = ray.cluster_resources()
    for kind, want in (("CPU", opts.cpus), ("GPU", opts.gpus)):
        have = float(res.get(kind, 0.0))
        if want > have:
            raise RayUnavailableError(f"each {unit} asks for {want:g} {kind}(s) but the Ray cluster has {have:g} "
                                      f"in all; lower --{kind.lower()}s-per-{unit}")
    return res


def default_workers(res: dict, opts: RayOptions) -> int:
    """As many workers as the cluster's CPUs (and GPUs, when each reserves some) allow; at least 1."""
    n = int(float(res.get("CPU", 1.0)) // opts.cpus)
    if opts.gpus > 0:
        n = min(n, int(float(res.get("GPU", 0.0)) // opts.gpus))
    return max(1, n)


def worker_device(requested: str | None, gpus: float) -> str | None:
    """The device a Ray worker uses: cuda when it reserved a GPU (Ray sets CUDA_VISIBLE_DEVICES), else the
    requested one with auto meaning cpu - a worker that reserved no GPU must not take one."""
    if gpus > 0:
        return "cuda"
    return "cpu" if requested in (None, "", "auto") else requested


def dashboard_url(ray) -> str | None:
    """The Ray dashboard's address, when it runs."""
    with contextlib.suppress(Exception):
        url = ray._private.worker._global_node.webui_url  # None on a Ray client (ray://) connection
        return f"http://{url}" if url and not url.startswith("http") else (url or None)
    return None


class Progress:
    """One progress bar on the driver over all workers (stderr; silent when disabled)."""

    def __init__(self, total: int, desc: str, unit: str, enabled: bool):
        self.bar = None
        self.t0 = time.perf_counter()
        if enabled and total > 0:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int, postfix: str | None = None) -> None:
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix_str(postfix)
            self.bar.update(n)

    def note(self, line: str) -> None:
        """A line printed above the bar (or plainly without one)."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


__all__ = ["INSTALL_HINT", "LOCAL", "Progress", "RayOptions", "RayUnavailableError", "add_ray_arguments",
           "check_fits", "dashboard_url", "default_workers", "non_negative_float", "options_from_args",
           "ray_session", "require_ray", "worker_device"]
