"""Ctrl-C and SIGTERM as requests to stop cleanly: finish the step in flight, save, exit.

A pre-empted Colab or TPU runtime, a batch scheduler and a user at the keyboard all stop a run
with SIGTERM or SIGINT. Inside `StopRequests` they only set a flag that the run reads at safe
points (after loading the data, after compiling, between rounds, after the summary). An
exception raised asynchronously inside JAX's compiler or a checkpoint write made the
interpreter crash on exit (exit 139 in 3 of 4 tries), so nothing is ever interrupted there.
A second Ctrl-C interrupts at the next Python instruction (the previous checkpoint stays usable).

The command line holds requests from its first instruction (`lfmsl.__main__`), imports included:
a Ctrl-C that interrupted the import of jaxlib's extension left an ImportError traceback.
"""

from __future__ import annotations

import signal
import sys
from typing import Callable
import threading

from lfmsl.errors import DiskFull, Interrupted, UsageError, disk_full, first_line

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """Within `with`, SIGINT and SIGTERM are recorded instead of interrupting the program.

    Nested uses share the outermost one's record: a sweep and each run in it see one request.
    """

    _active: "StopRequests | None" = None  # the outermost one in effect
    # Where several processes are one run (core/processes.py): given whether this process was asked to stop, whether
    # any was. Every process asks at the same points of the run, so all stop after the same round.
    shared: Callable[[bool], bool] | None = None

    def __init__(self) -> None:
        self._signum: int | None = None
        self._previous: dict[int, object] = {}
        self._outer: StopRequests | None = None

    @property
    def signum(self) -> int | None:
        return self._outer.signum if self._outer is not None else self._signum

    @property
    def signal_name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    def _asked(self) -> bool:
        outermost = self._outer or self
        if StopRequests.shared is not None and StopRequests.shared(self.signum is not None) and self.signum is None:
            outermost._signum = signal.SIGINT  # another process of the run was asked to stop
        return self.signum is not None

    def keep_going(self) -> bool:
        return not self._asked()

    def check(self, what: str) -> None:
        """Raise `Interrupted` if a stop was asked for; `what` says what is kept and how to go on."""
        if self._asked():
            raise Interrupted(f"stopped by {self.signal_name} {what}", self.signum)

    def _handle(self, signum: int, frame) -> None:
        if self._signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now
        self._signum = signum

    def __enter__(self) -> "StopRequests":
        if StopRequests._active is not None:
            self._outer = StopRequests._active
        elif threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = {signum: signal.signal(signum, self._handle) for signum in SIGNALS}
            StopRequests._active = self
        return self

    def __exit__(self, *exc) -> None:
        if StopRequests._active is self:
            StopRequests._active = None
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


def exit_status(command: Callable[[], int], prefix: str, after_stop: str = "") -> int:
    """Run `command` and turn what a user can cause into one line on stderr and an exit status:
    a UsageError 2 (3 for Diverged, 5 for a full disk), Ctrl-C or SIGTERM 130 or 143 (the run in flight saved).

    Signals are held as stop requests throughout (`stopping.StopRequests`): the run reads them at
    safe points, and one that arrived where nothing reads it still sets the exit status.
    """
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
        except Exception as error:  # a full disk where no run was writing (a sweep's tables, a report): one line too
            if not disk_full(error):
                raise
            print(f"{prefix}error: no space left on the disk ({first_line(error, 120)}); free some space and run "
                  "the same command again (what was finished is kept)", file=sys.stderr)
            return DiskFull.exit_code
        if stop.signum is not None and status == 0:
            print(f"{prefix}stopped by {stop.signal_name}, after the work was done{after_stop}", file=sys.stderr)
            return 128 + stop.signum
        return status
