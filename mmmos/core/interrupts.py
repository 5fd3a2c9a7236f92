"""Ctrl-C and SIGTERM: one behaviour for every command.

* SIGINT raises ``KeyboardInterrupt`` (Python's own handler); SIGTERM raises :class:`Terminated`, a
  ``KeyboardInterrupt`` subclass, so every ``finally``/cleanup written for Ctrl-C also runs on SIGTERM and the
  CLI exits 130 (Ctrl-C) or 143 (SIGTERM, 128 + 15) with one line and no traceback.
* :func:`shielded` holds both signals back during a short step that must not be cut in half (stopping worker
  processes): a signal that arrives meanwhile is delivered when the step ends, so the step still completes.
* Importing torch is shielded too (:class:`_ShieldedImport`): its C++ start-up runs Python code, and an
  exception raised there by a signal handler crosses pybind11 and aborts the process (exit -6, "terminate called
  after throwing an instance of 'pybind11::error_already_set'").
* Code that catches an interrupt and raises a plain ``KeyboardInterrupt`` in its place (Ray's ``ray.get`` and
  ``ray.wait`` do) does not turn a SIGTERM into a Ctrl-C: :func:`exit_status` asks which signal came last.
* :func:`starting_children` / :func:`child_ignores_interrupts`: worker processes ignore SIGINT.  A terminal's
  Ctrl-C reaches the whole process group, and a worker that died of it on its own would print a traceback and
  leave the parent waiting for a result that never comes; the parent decides when its workers stop (SIGTERM).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

EXIT_SIGTERM = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM (raised in the main thread, like Ctrl-C's KeyboardInterrupt)."""


# the last signal a handler here took, and when (time.monotonic()); how deep in shielded() blocks we are
_state = {"last": None, "when": None, "depth": 0}

#: An unexpected error this soon after a signal is taken for that signal (:func:`mangled_interrupt`).
MANGLED_WITHIN_S = 2.0


def _took(signum: int) -> None:
    _state["last"], _state["when"] = signum, time.monotonic()


def _raise_terminated(signum, frame):  # noqa: ARG001 - signal handler signature
    _took(signal.SIGTERM)
    raise Terminated()


def _raise_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    _took(signal.SIGINT)
    raise KeyboardInterrupt()


def mangled_interrupt(exc: BaseException) -> KeyboardInterrupt | None:
    """The interrupt behind an unexpected error, if there is one; None when the error is a bug of its own.

    A signal's exception raised while compiled code runs a Python callback (matplotlib's Agg renderer, pybind11
    modules) can come out as another error (seen: ``ValueError: Invalid bounding box``, a ``TypeError`` from a
    transform) after the command was told to stop.  Such an error is the interrupt when the interrupt is in its
    chain of causes, or when a handler here took a signal at most :data:`MANGLED_WITHIN_S` seconds before."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    if _state["when"] is not None and time.monotonic() - _state["when"] <= MANGLED_WITHIN_S:
        return Terminated() if _state["last"] == signal.SIGTERM else KeyboardInterrupt()
    return None


class _ShieldedImport:
    """``sys.meta_path`` entry: the first import of a module named in :attr:`names` runs inside :func:`shielded`
    (in the main thread), so a signal that arrives meanwhile is raised when the import has finished, in Python
    code, instead of inside the module's C++ start-up."""

    names = frozenset({"torch"})

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.names or threading.current_thread() is not threading.main_thread():
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _ShieldedLoader(spec.loader)
                return spec
        return None


class _ShieldedLoader:
    """Wraps a module's loader for the time of its import only (:class:`_ShieldedImport`)."""

    def __init__(self, inner):
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self._inner  # the module keeps its real loader (introspection, resources)
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._inner
        with shielded():
            self._inner.exec_module(module)

    def __getattr__(self, name):
        return getattr(self._inner, name)


_SHIELDED_IMPORT = _ShieldedImport()


def _redeliver_swallowed(hook_args) -> None:
    """``sys.unraisablehook``: a signal whose exception was raised inside a callback Python cannot propagate from
    (a weakref callback of the import lock, a ``__del__``) would be printed as "Exception ignored" with a traceback
    and then lost - the command would go on as if never interrupted.  Such an interrupt is sent again instead: the
    handler then raises it at the next instruction of ordinary code, where the command's cleanup catches it."""
    exc = hook_args.exc_value
    if isinstance(exc, KeyboardInterrupt):
        # from another thread and a moment later: raised here (or via raise_signal, which runs the handler at
        # once) the exception would be swallowed again; a signal landing in a callback once more re-arms this
        sig = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
        threading.Timer(0.01, os.kill, (os.getpid(), sig)).start()
        return
    _default_unraisablehook(hook_args)


_default_unraisablehook = sys.unraisablehook


def install_handlers():
    """SIGTERM -> :class:`Terminated` in the main thread (a no-op elsewhere, where signals cannot be set), and an
    interrupt swallowed by a callback re-delivered (:func:`_redeliver_swallowed`); returns the previous SIGTERM
    handler (for :func:`restore_handlers`)."""
    if threading.current_thread() is threading.main_thread():
        sys.unraisablehook = _redeliver_swallowed
        _state["last"] = _state["when"] = None
        if _SHIELDED_IMPORT not in sys.meta_path:
            sys.meta_path.insert(0, _SHIELDED_IMPORT)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _raise_interrupt)
        return signal.signal(signal.SIGTERM, _raise_terminated)
    return None


def restore_handlers(previous) -> None:
    """Put back the SIGTERM handler :func:`install_handlers` replaced (a caller that runs commands in-process),
    and forget any interrupt CPython remembered as unhandled (:func:`_forget_escaped_interrupt`)."""
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)
        if signal.getsignal(signal.SIGINT) is _raise_interrupt:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(_SHIELDED_IMPORT)
        sys.unraisablehook = _default_unraisablehook
    _forget_escaped_interrupt()


def _forget_escaped_interrupt() -> None:
    """CPython sets ``_Py_UnhandledKeyboardInterrupt`` when a KeyboardInterrupt leaves code it runs through
    ``PyRun_*`` (some extension imports do), and ``python -m`` then ends the process *by SIGINT* at exit whatever
    status the command returned (seen: exit -2 instead of 130 after a Ctrl-C during imports).  The command has
    handled the interrupt, so the flag is cleared (best effort: other interpreters have no such flag)."""
    try:
        import ctypes

        ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 0
    except (ImportError, ValueError, AttributeError, OSError):
        pass


def exit_status(e: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM: a :class:`Terminated`, or a plain ``KeyboardInterrupt`` that code in between
    raised in place of the SIGTERM the handler here took last."""
    return EXIT_SIGTERM if isinstance(e, Terminated) or _state["last"] == signal.SIGTERM else 130


@contextlib.contextmanager
def shielded():
    """Defer SIGINT/SIGTERM until the ``with`` block ends, then deliver the first one that came.  A block inside
    another leaves the signals to the outer one (which delivers them when *it* ends)."""
    if threading.current_thread() is not threading.main_thread() or _state["depth"]:
        yield
        return
    got: list[int] = []
    # a signal the process ignores (SIGINT of a job started in the background, `nohup`) stays ignored: deferring it
    # would deliver it, so the command stopped only when the signal came inside a shielded block
    old = {s: h for s in (signal.SIGINT, signal.SIGTERM) if (h := signal.getsignal(s)) is not signal.SIG_IGN}
    for s in old:
        signal.signal(s, lambda signum, frame: got.append(signum))
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        for s, h in old.items():
            signal.signal(s, h)
        if got:
            _took(got[0])
            raise Terminated() if got[0] == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def starting_children():
    """Start child processes inside this block: they inherit SIGINT *ignored* (a disposition of SIG_IGN survives
    exec, and Python then installs no KeyboardInterrupt handler), so a Ctrl-C that reaches the process group while a
    child boots cannot kill it half-started with a traceback.  SIGTERM to this process is held back until the
    block ends (:func:`shielded`); a Ctrl-C inside the block itself (the few milliseconds of a fork and exec) is
    lost - the signal mask does not survive Python's spawn, so it cannot be held back for the children alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with shielded():
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def child_ignores_interrupts() -> None:
    """In a worker process: keep ignoring SIGINT (the parent decides when workers stop, and stops them with
    SIGTERM, whose default action ends the process silently)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def _children(pid: int) -> set[int]:
    """Live children of ``pid`` (Linux /proc; empty elsewhere), those of all its threads: a child belongs to the
    thread that started it (Ray starts processes from threads of its own), and an orphan is handed to a subreaper's
    thread, not always the main one."""
    out: set[int] = set()
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out |= {int(x) for x in f.read().split()}
        except OSError:
            pass
    return out


def _end(pids: set[int], grace: float = 3.0) -> None:
    """SIGTERM ``pids``, SIGKILL whatever still runs after ``grace`` seconds, and reap them (they are ours)."""
    import time

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 1.0)):
        for p in pids:
            with contextlib.suppress(OSError):
                os.kill(p, sig)
        end = time.monotonic() + wait
        while pids and time.monotonic() < end:
            for p in list(pids):
                with contextlib.suppress(ChildProcessError, OSError):
                    if os.waitpid(p, os.WNOHANG)[0] == p:
                        pids.discard(p)
            time.sleep(0.05)
        if not pids:
            return


@contextlib.contextmanager
def service_processes():
    """Run a service that starts daemons of its own (a local Ray instance) inside this block, so that none of its
    processes outlives the command however it ends.

    * On Linux this process becomes a *child subreaper*: a daemon orphaned when its parent dies (Ray's agents when
      a terminal's Ctrl-C, sent to the whole process group, kills the raylet) is re-parented here instead of to
      init; whatever of the service still runs when the block ends is stopped (SIGTERM, then SIGKILL) and reaped.
    * The service may replace this process's SIGINT/SIGTERM handlers (Ray's C++ core turns SIGTERM into a stack
      dump and an abort, and resets it when it shuts down): the block's caller puts them back with the function
      it is given, and they are put back when the block ends."""
    main = threading.current_thread() is threading.main_thread()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}

    def reinstate() -> None:
        for s, h in handlers.items():
            if h is not None:
                signal.signal(s, h)

    before = _children(os.getpid())
    subreaper = False
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError, ImportError):
            import ctypes

            subreaper = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    try:
        yield reinstate
    finally:
        reinstate()
        with shielded():  # the cleanup itself is not cut short by a second Ctrl-C
            # stopping a daemon orphans its own children, which re-parent here a moment later: look again
            for _ in range(5):
                left = _children(os.getpid()) - before
                if not left:
                    break
                _end(left)
            if subreaper:
                with contextlib.suppress(OSError, AttributeError, ImportError):
                    import ctypes

                    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


__all__ = ["EXIT_SIGTERM", "Terminated", "child_ignores_interrupts", "exit_status", "install_handlers", "restore_handlers",
           "service_processes", "shielded",
           "starting_children"]
