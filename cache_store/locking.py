"""Coordination between writers of one encoder folder: a folder lock and per-clip claims.

* :func:`folder_lock` - ``fcntl.flock`` on ``<encoder folder>/.lock``, held only for short bookkeeping steps
  (claiming clips, committing a part, editing ``damaged.json``), never while encoding.
* :class:`Claims` - before a writer encodes a clip it claims it: ``claims/<clip_key>`` holds
  ``host pid token``.  Another writer skips a clip claimed by a live writer, so two extracts over one store
  (sharded or not) never compute or store a clip twice.  A claim is removed when its clip is committed or the
  writer closes; claims of dead processes on this host (or older than ``STALE_SECONDS`` from another host)
  are taken over.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
import uuid
from pathlib import Path

STALE_SECONDS = 6 * 3600  # a claim from another host this old is assumed abandoned


def pid_alive(pid: int) -> bool:
    """Whether a process of this host still runs (used to clean up only dead writers' leftovers)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        self.token = f"{self.host} {os.getpid()} {uuid.uuid4().hex[:12]}"
        self.held: set[str] = set()

    def held_by_other(self, key: str) -> bool:
        """True when a live writer other than this one holds ``key``."""
        f = self.dir / key
        try:
            text = f.read_text()
            age = time.time() - f.stat().st_mtime
        except OSError:
            return False
        if text == self.token:
            return False
        parts = text.split()
        if len(parts) != 3 or not parts[1].isdigit():
            return False  # an unreadable claim (torn write of a dead writer) protects nothing
        if parts[0] == self.host:
            return pid_alive(int(parts[1]))
        return age < STALE_SECONDS

    def take(self, key: str) -> bool:
        if self.held_by_other(key):
            return False
        tmp = self.dir / f".{key}.{uuid.uuid4().hex[:8]}"
        tmp.write_text(self.token)
        os.replace(tmp, self.dir / key)
        self.held.add(key)
        return True

    def release(self, keys) -> None:
        for k in list(keys):
            if k in self.held:
                with contextlib.suppress(OSError):
                    if (self.dir / k).read_text() == self.token:
                        (self.dir / k).unlink()
                self.held.discard(k)

    def release_all(self) -> None:
        self.release(set(self.held))


__all__ = ["Claims", "STALE_SECONDS", "folder_lock", "pid_alive"]
