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
        p.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p.parent, prefix=f".{p.name}.", suffix=".probe"):
            pass
    except OSError as e:
        raise OutputPathError(f"{option} {p}: cannot write there ({e.strerror or type(e).__name__})") from None
    return p


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


__all__ = ["OutputPathError", "check_output_file", "replace_whole"]
