"""The ensemble stage's errors: user-fixable problems are :class:`~mmmos.core.errors.UserError`s."""
from __future__ import annotations

from mmmos.core.errors import UserError


class EnsembleError(UserError, ValueError):
    """A bad option, member list or sweep file; the message is one line naming the option or file."""


class EnsembleFileMissing(UserError, FileNotFoundError):
    """A file or folder the ensemble stage needs does not exist (run folder, labels, a DONE config's files)."""


class StrategyUnavailable(UserError, LookupError):
    """A strategy cannot be evaluated on this sweep (e.g. it ranks on a set the sweep does not have)."""


def one_line(e: BaseException | str) -> str:
    """``e``'s message on one line (damaged-file messages from polars span several)."""
    return " ".join(str(e).split())


__all__ = ["EnsembleError", "EnsembleFileMissing", "StrategyUnavailable", "one_line"]
