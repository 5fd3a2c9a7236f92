"""Replacing an output folder as a whole, so a reader sees the old folder or the new one, never a mix.

* :func:`staging_dir` -- a hidden temporary sibling ``.NAME.tmp-PID-XXXX`` to write the new content into;
* :func:`replace_dir` -- two renames (``NAME`` -> ``.NAME.old-PID``, staging -> ``NAME``) inside
  :func:`~mmmos.core.interrupts.shielded`, so a Ctrl-C or SIGTERM cannot fall between them (the old folder
  gone and the new one deleted by the caller's cleanup);
* :func:`recover` -- what a *killed* (SIGKILL, power loss) earlier writer left beside ``NAME``: its staging
  folders are removed, and its ``.NAME.old-PID`` is put back when ``NAME`` is missing (killed between the
  renames), else removed.  Folders of a writer that is still running are left alone;
* a folder could be created at this path: :func:`mmmos.core.outputs.check_creatable`, checked before anything is
  written.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from mmmos.core.interrupts import shielded


def _old_name(out: Path, pid: int) -> Path:
    return out.with_name(f".{out.name}.old-{pid}")


def staging_dir(out: Path) -> Path:
    """A new empty hidden sibling of ``out`` (its parent created if needed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))


def _alive(pid: int) -> bool:
    if pid == os.getpid():  # ours: this process is not writing it now (calls here are sequential)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    return True


def leftovers(out: Path) -> tuple[list[Path], list[Path]]:
    """(old folders, staging folders) beside ``out`` that no running process owns."""
    olds, tmps = [], []
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return olds, tmps
    for p in entries:
        for prefix, into in ((f".{out.name}.old-", olds), (f".{out.name}.tmp-", tmps)):
            if p.name.startswith(prefix):
                pid = p.name[len(prefix):].split("-", 1)[0]
                if pid.isdigit() and not _alive(int(pid)) and p.is_dir() and not p.is_symlink():
                    into.append(p)
    return olds, tmps


def recover(out: Path) -> None:
    """Undo what a killed earlier :func:`replace_dir` (or its writer) left beside ``out``; see the module doc."""
    olds, tmps = leftovers(out)
    if olds and not os.path.lexists(out):
        # killed between the two renames: the old folder is the last complete one (a staging folder may be half)
        newest = max(olds, key=lambda p: p.stat().st_mtime)
        os.replace(newest, out)
        olds.remove(newest)
    for p in olds + tmps:
        shutil.rmtree(p, ignore_errors=True)


def replace_dir(tmp: Path, out: Path) -> None:
    """Put the finished folder ``tmp`` in place of ``out`` (which may not exist) and delete the old one."""
    old = _old_name(out, os.getpid())
    if old.exists():
        shutil.rmtree(old)
    swapped = False
    try:
        with shielded():  # an interrupt is delivered after the second rename, never between the two
            if os.path.lexists(out):
                os.replace(out, old)
                try:
                    os.replace(tmp, out)
                except BaseException:  # whatever stopped the second rename (a full disk, an exception raised by
                    # other code than a signal handler): the old folder goes back, so ``out`` is never missing
                    if not os.path.lexists(out):
                        os.replace(old, out)
                    raise
                swapped = True
            else:
                os.replace(tmp, out)
    finally:
        if swapped:  # also when the deferred interrupt is raised: the old folder is of no use any more
            shutil.rmtree(old, ignore_errors=True)


__all__ = ["leftovers", "recover", "replace_dir", "staging_dir"]
