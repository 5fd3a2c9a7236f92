"""Output files of the commands: checked before the work, written whole.

:func:`check_output_file` refuses, before any clip is scored, a path that cannot take the output (a folder, a
parent that is a file, a place nothing can be created in), so a long run never ends in a traceback with its work
lost.  :func:`replace_whole` writes through a temporary file in the same folder and a rename: an interrupted
write leaves the old file or none, never half of one under the final name.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from mmmos.core.errors import UserError


class OutputPathError(UserError, OSError):
    """An output path that cannot be written."""


def check_output_file(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` as a :class:`Path` once its folder exists (created if needed) and takes a new file in it."""
    p = Path(path)
    if p.is_dir():
        raise OutputPathError(f"{option} {p}: is a folder; give a file name")
    try:
        check_creatable(p, folder=False)
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"{option} {p}: cannot write there ({e.strerror or e})") from None
    return p


def check_creatable(path: Path, folder: bool = True) -> None:
    """Raise ``OSError`` (one-line message) unless a folder (``folder``) or a file can be put at ``path``: an existing
    ``path`` must be of that kind, and the nearest existing ancestor of its parent a folder that accepts a new entry
    (probed by making and removing one, since permission bits do not tell, e.g. for root under /proc or on a
    read-only mount)."""
    path = Path(path)
    if folder and os.path.lexists(path) and not path.is_dir():
        raise NotADirectoryError(f"{path} exists and is not a folder")
    if not folder and path.is_dir():
        raise IsADirectoryError(f"{path} is a folder")
    base = path.parent  # where a new folder, or the hidden sibling a folder is swapped from, is made
    while not base.exists():
        if os.path.lexists(base):  # a dangling link
            raise NotADirectoryError(f"{base} is a broken link")
        base = base.parent
    if not base.is_dir():
        raise NotADirectoryError(f"{base} is not a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".mmmos-probe-", dir=base)
    except OSError as e:
        raise OSError(f"cannot create anything in {base} ({e.strerror or e})") from None
    os.rmdir(probe)


def replace_whole(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary name beside ``path``, then rename it to ``path``."""
    p = Path(path)
    fd, name = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)


__all__ = ["OutputPathError", "check_creatable", "check_output_file", "replace_whole"]
