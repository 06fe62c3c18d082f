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


def first_line(error: BaseException, limit: int = 200) -> str:
    """An exception's first line for a one-line message: at most `limit` characters, cut at a word and marked
    with an ellipsis where it is longer (a cut mid-word reads as a typo); its type's name where it has no text."""
    text = (str(error).splitlines() or [""])[0].strip()
    if not text:
        return type(error).__name__
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(" ,;:") + " …"


def plural(count: int, noun: str) -> str:
    """'1 round', '2 rounds'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
