"""Errors a user can cause, reported as one line instead of a traceback."""

from __future__ import annotations

import sys
from typing import Callable


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


def exit_status(command: Callable[[], int], prefix: str, after_stop: str = "") -> int:
    """Run `command` and turn what a user can cause into one line on stderr and an exit status:
    a UsageError 2 (3 for Diverged), Ctrl-C or SIGTERM 130 or 143 (the run in flight saved).

    Signals are held as stop requests throughout (`stopping.StopRequests`): the run reads them at
    safe points, and one that arrived where nothing reads it still sets the exit status.
    """
    from lfmsl.stopping import StopRequests

    with StopRequests() as stop:
        try:
            status = command()
        except UsageError as error:
            message = " ".join(str(error).splitlines())
            print(f"{prefix}error: {message}", file=sys.stderr)
            return getattr(error, "exit_code", 2)
        except Interrupted as stopped:
            print(f"{prefix}{stopped}{after_stop}", file=sys.stderr)
            return stopped.exit_code
        except KeyboardInterrupt:  # Ctrl-C twice: stopped at once
            print(f"{prefix}interrupted{after_stop}", file=sys.stderr)
            return 130
        if stop.signum is not None and status == 0:
            print(f"{prefix}stopped by {stop.signal_name}, after the work was done{after_stop}", file=sys.stderr)
            return 128 + stop.signum
        return status
