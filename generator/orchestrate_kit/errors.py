"""The one error type for mistakes a user can fix.

Raise ``UserError`` with a full sentence saying what is wrong, and a ``hint`` naming the command
that fixes it; ``main()`` prints both and exits 1. Anything else that escapes a command is a bug.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: a bad path, a dirty tree, a mangled answers file, ..."""

    def __init__(self, message: str, hint: str | None = None, details: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        # Lines printed under the message, e.g. the dirty files that stopped an upgrade.
        self.details = details or []
