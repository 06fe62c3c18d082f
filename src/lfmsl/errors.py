"""Errors a user can cause, reported as one line instead of a traceback."""

from __future__ import annotations


class UsageError(Exception):
    """A bad option, missing data or impossible configuration; the message says what to do."""


class Diverged(UsageError):
    """A loss became NaN or infinite; the message names the round and the likely cause."""

    exit_code = 3


class DiskFull(UsageError):
    """No space left where a run writes; nothing finished is lost, and the message says how to continue."""

    exit_code = 5

    @classmethod
    def at(cls, where: object, error: BaseException, then: str) -> "DiskFull":
        """The one-line message for a full disk under `where`, the system's words in brackets, then what to do."""
        return cls(f"no space left on the disk of {where} ({first_line(error, 120)}); nothing finished is lost: "
                   f"free some space, then {then}")


def disk_full(error: BaseException) -> bool:
    """Whether `error`, or one it was raised from, is the disk being full: OSError ENOSPC or EDQUOT, or a library's
    wrapping of it (orbax and tensorstore raise RESOURCE_EXHAUSTED with the OS's text)."""
    import errno

    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(error)
        if "No space left on device" in text or "Disk quota exceeded" in text or (
                "RESOURCE_EXHAUSTED" in text and ("Error writing" in text or "space" in text)):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


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
