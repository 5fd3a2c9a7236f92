"""Ending the process after a command that started a native service whose teardown at exit is unsafe.

Ray's C++ core worker (ray 2.x) registers a C ``atexit`` hook that destroys the core worker while the worker's own
I/O thread may still run a periodic metrics task on it; that race crashes the process with SIGSEGV after the
command has finished, cleaned up and printed its last line (CI saw an interrupted ``extract --ray`` exit -11
instead of 130; a core dump showed ``CoreWorkerProcess::HandleAtExit`` on the main thread and
``TaskManager::RecordMetrics`` crashing on the I/O thread).  A command that starts such a service calls
:func:`skip_native_teardown`; the CLI then ends the process with :func:`end_process`: Python's own exit hooks
run (``atexit``: logging, Ray's Python shutdown), the standard streams are flushed, and the process exits with
its status without the C-level hooks.
"""
from __future__ import annotations

import atexit
import os
import sys

_reasons: list[str] = []


def skip_native_teardown(why: str) -> None:
    """Ask :func:`end_process` to skip C-level exit hooks for this process (``why`` names the service)."""
    if why not in _reasons:
        _reasons.append(why)


def native_teardown_skipped() -> list[str]:
    """The services that asked for it (empty: the process exits the ordinary way)."""
    return list(_reasons)


def end_process(status: int) -> None:
    """Run Python's exit hooks, flush stdout/stderr and end the process with ``status`` (never returns)."""
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed or broken stream must not change the status
                pass
        os._exit(status)


__all__ = ["end_process", "native_teardown_skipped", "skip_native_teardown"]
