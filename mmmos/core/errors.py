"""The error vocabulary shared by every layer.

* :class:`UserError` - a problem the user can fix (bad file, bad option, missing input). Library code raises
  it (or a subclass) with one clear sentence naming the file/option; the CLI prints that line and exits 2
  (no traceback unless ``--debug``).
* Partial failure (some clips bad, the rest done) is not an exception: commands report the bad items and
  return :data:`EXIT_PARTIAL`.

Library code never calls ``sys.exit``.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1        # an unexpected error (a bug): traceback shown
EXIT_USER = 2          # a user error: one line
EXIT_PARTIAL = 3       # finished, but some items failed (listed in the report)
EXIT_INTERRUPTED = 130  # Ctrl-C


class UserError(Exception):
    """A user-facing problem: its message is one line the user can act on."""


__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USER", "UserError"]
