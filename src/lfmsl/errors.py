"""Errors a user can cause, reported as one line instead of a traceback."""

from __future__ import annotations


class UsageError(Exception):
    """A bad option, missing data or impossible configuration; the message says what to do."""


class Diverged(UsageError):
    """A loss became NaN or infinite; the message names the round and the likely cause."""

    exit_code = 3


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped a run after its last completed round was saved."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum
