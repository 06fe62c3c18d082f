"""Errors a user can cause, reported as one line instead of a traceback."""


class UsageError(Exception):
    """A bad option, missing data or impossible configuration; the message says what to do."""
