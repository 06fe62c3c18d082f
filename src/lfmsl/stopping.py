"""Ctrl-C and SIGTERM as requests to stop cleanly: finish the round in flight, save, exit.

A pre-empted Colab or TPU runtime, a batch scheduler and a user at the keyboard all stop a run
with SIGTERM or SIGINT. Inside `StopRequests` they only set a flag that the round loop reads
before it dispatches the next round; a second Ctrl-C interrupts at once (the previous
checkpoint stays usable).
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """Within `with`, SIGINT and SIGTERM are recorded instead of killing the process."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def signal_name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    def keep_going(self) -> bool:
        return self.signum is None

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now
        self.signum = signum

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = {signum: signal.signal(signum, self._handle) for signum in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
