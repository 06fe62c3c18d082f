"""`python -m lfmsl` and the `lfmsl` command.

Ctrl-C and SIGTERM are held as stop requests from the first instruction, before jax is imported
(one that interrupted the import of jaxlib's extension ended in an ImportError traceback), to
the last. Once the command's work is done, a signal ends the process at once with 130 or 143,
and the process ends without the interpreter's finalization, which puts the default handlers
back (a late SIGTERM then killed it silently) and tears jaxlib down, where signals crashed it.
"""

import atexit
import os
import signal
import sys
from typing import NoReturn

from lfmsl.stopping import SIGNALS, StopRequests


def _exit(status: int) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _after_the_work(signum: int) -> str:
    return f"lfmsl: stopped by {signal.Signals(signum).name}, after the work was done"


def _exit_at_once(signum: int, frame) -> None:
    print(_after_the_work(signum), file=sys.stderr)  # the same one line as a signal that came a moment earlier
    _exit(128 + signum)  # every output is written; nothing is left to stop cleanly


def main() -> NoReturn:
    requests = StopRequests().__enter__()  # held for the life of the process
    from lfmsl.cli import main as cli_main

    status = cli_main()
    for signum in SIGNALS:
        signal.signal(signum, _exit_at_once)
    if requests.signum is not None and status == 0:  # came after the command last looked
        print(_after_the_work(requests.signum), file=sys.stderr)
        status = 128 + requests.signum
    atexit._run_exitfuncs()  # what the interpreter's own exit would run (jax's clean-up among them)
    _exit(status)


if __name__ == "__main__":
    main()
