"""A command that started a service with an unsafe native exit hook (Ray's core worker) ends without it.

The native hook here is libc's ``abort`` registered with ``__cxa_atexit``, standing in for Ray's core-worker
destructor that crashed finished commands (SIGSEGV after the last line; see mmmos.core.exiting)."""
from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's __cxa_atexit")

SCRIPT = """
import atexit, ctypes, sys
libc = ctypes.CDLL(None)
libc.__cxa_atexit(libc.abort, None, None)  # a native exit hook that crashes the process
atexit.register(lambda: print("python exit hook ran", flush=True))
from mmmos.core.exiting import skip_native_teardown
if sys.argv[1] == "skip":
    skip_native_teardown("test")
print("last line, not flushed", end="")
sys.argv = ["mmmos", sys.argv[2]]
from mmmos.app.cli import main
sys.exit(main())
"""


def _run(mode: str, arg: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, mode, arg], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("arg, status", [("--help", 0), ("--no-such-option", 2)])
def test_the_cli_ends_the_process_without_native_exit_hooks_when_asked(arg, status):
    r = _run("skip", arg)
    assert r.returncode == status, r.stderr
    assert "python exit hook ran" in r.stdout and "last line, not flushed" in r.stdout


def test_without_the_request_the_native_hook_runs():
    """The stand-in really crashes an ordinary exit: the test above would fail without end_process."""
    r = _run("keep", "--help")
    assert r.returncode == -6 and "python exit hook ran" in r.stdout


SLOW_EXIT = """
import atexit, sys, time
atexit.register(lambda: (print("exit hook started", flush=True), time.sleep(30)))
sys.argv = ["mmmos", sys.argv[1]]
from mmmos.app.cli import main
sys.exit(main())
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("arg, status", [("--help", 0), ("--no-such-option", 2)])
def test_a_signal_while_a_finished_command_exits_keeps_its_status(sig, arg, status):
    """A signal in the interpreter's shutdown, after the command is done (atexit hooks; a slow one here), ended
    the process by the signal (-15: a finished command read as killed) or printed a traceback (Ctrl-C); it now
    ends the process at once with the command's own status."""
    import os
    import signal
    import time

    p = subprocess.Popen([sys.executable, "-c", SLOW_EXIT, arg], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    t0 = time.monotonic()
    while "exit hook started" not in p.stdout.readline():  # after the command's own output (its help)
        assert time.monotonic() - t0 < 60
    os.kill(p.pid, getattr(signal, sig))
    out, err = p.communicate(timeout=20)
    assert p.returncode == status and "Traceback" not in err, (p.returncode, err)
