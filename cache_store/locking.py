"""Coordination between writers of one encoder folder: a folder lock and per-clip claims.

* :func:`folder_lock` - ``fcntl.flock`` on ``<encoder folder>/.lock``, held only for short bookkeeping steps
  (claiming clips, committing a part, editing ``damaged.json``), never while encoding.
* :class:`Claims` - before a writer encodes a clip it claims it: ``claims/<clip_key>`` holds
  ``host pid token``, the token being ``<random>.<process start time>.<boot id>``.  Another writer skips a clip
  claimed by a live writer, so two extracts over one store (sharded or not) never compute or store a clip twice.
  A claim is removed when its clip is committed or the writer closes.

  Whether the writer of a claim is alive: on the same host (and boot) its PID must run *and* have the start time
  the claim records - a PID reused by an unrelated process, a writer from before a reboot, or (for claims of older
  versions without a start time) a process started after the claim was written, never blocks a clip.  A writer on
  another host cannot be asked, so it keeps its claims fresh (``HEARTBEAT_SECONDS``) and a claim not touched for
  ``STALE_SECONDS`` is taken over.  (Before, a reused PID blocked a clip on every re-run, and claims of dead
  writers on other hosts held for 6 h.)
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import time
import uuid
from functools import lru_cache
from pathlib import Path

from mmmos.core.interrupts import shielded

HEARTBEAT_SECONDS = 30.0  # a writer touches its claims this often
STALE_SECONDS = 300.0     # a claim from another host not touched for this long is abandoned (10 missed beats)


def pid_alive(pid: int) -> bool:
    """Whether a process of this host still runs (used to clean up only dead writers' leftovers)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_start(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), or None when unknown."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


@lru_cache(maxsize=1)
def boot_id() -> str:
    """This boot of this host (Linux), so a claim from before a reboot is never mistaken for a live one."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:12]
    except OSError:
        return "-"


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def claim_writer_alive(text: str, claim_mtime: float, host: str) -> bool | None:
    """Whether the writer that wrote claim ``text`` on this host (``host``) still runs; None when the claim is
    from another host (or unreadable: False)."""
    parts = text.split()
    if len(parts) != 3 or not parts[1].isdigit():
        return False  # an unreadable claim (torn write of a dead writer) protects nothing
    if parts[0] != host:
        return None
    pid = int(parts[1])
    if not pid_alive(pid):
        return False
    tok = parts[2].split(".")
    started = process_start(pid)
    if len(tok) == 3 and tok[1].isdigit():  # this version: the writer's boot and start time
        if tok[2] != boot_id():
            return False  # written before a reboot
        return started is None or started == int(tok[1])
    # an older claim without a start time: a process that started after the claim was written is not its writer
    bt = _boot_time()
    if started is None or bt is None:
        return True
    return bt + started / os.sysconf("SC_CLK_TCK") <= claim_mtime + 1.0


@contextlib.contextmanager
def folder_lock(folder: Path):
    """Exclusive lock on ``folder/.lock`` for the duration of the ``with`` block."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class Claims:
    """This writer's claims on clips of one encoder folder (call :meth:`take` under :func:`folder_lock`)."""

    def __init__(self, folder: Path):
        self.dir = folder / "claims"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = socket.gethostname()
        pid = os.getpid()
        self.token = f"{self.host} {pid} {uuid.uuid4().hex[:12]}.{process_start(pid) or 0}.{boot_id()}"
        self.held: set[str] = set()
        self._beat: threading.Thread | None = None
        self._stop = threading.Event()

    def holder(self, key: str) -> str | None:
        """``host pid`` of the live writer other than this one that holds ``key``, or None."""
        f = self.dir / key
        try:
            text = f.read_text()
            mtime = f.stat().st_mtime
        except OSError:
            return None
        if text == self.token:
            return None
        alive = claim_writer_alive(text, mtime, self.host)
        if alive is None:  # another host: alive while it keeps the claim fresh
            alive = time.time() - mtime < STALE_SECONDS
        return " ".join(text.split()[:2]) if alive else None

    def held_by_other(self, key: str) -> bool:
        """True when a live writer other than this one holds ``key``."""
        return self.holder(key) is not None

    def take(self, key: str) -> bool:
        if self.held_by_other(key):
            return False
        tmp = self.dir / f".{key}.{uuid.uuid4().hex[:8]}"
        # a Ctrl-C between the write and the rename left the hidden file for good (CI: "claims left behind")
        with shielded():
            try:
                tmp.write_text(self.token)
                os.replace(tmp, self.dir / key)
                self.held.add(key)
            finally:
                tmp.unlink(missing_ok=True)
        self._start_heartbeat()
        return True

    def _start_heartbeat(self) -> None:
        """Touch the held claims every HEARTBEAT_SECONDS (for writers on other hosts, which judge by age)."""
        if self._beat is not None:
            return

        stop = self._stop

        def beat():
            while not stop.wait(HEARTBEAT_SECONDS):
                for k in list(self.held):
                    with contextlib.suppress(OSError):
                        os.utime(self.dir / k)

        self._beat = threading.Thread(target=beat, name="mmmos-claims-heartbeat", daemon=True)
        self._beat.start()

    def release(self, keys) -> None:
        for k in list(keys):
            if k in self.held:
                with contextlib.suppress(OSError):
                    if (self.dir / k).read_text() == self.token:
                        (self.dir / k).unlink()
                self.held.discard(k)

    def release_all(self) -> None:
        self.release(set(self.held))
        self._stop.set()
        self._beat, self._stop = None, threading.Event()


__all__ = ["Claims", "HEARTBEAT_SECONDS", "STALE_SECONDS", "boot_id", "claim_writer_alive", "folder_lock",
           "pid_alive", "process_start"]
