"""One writer per run folder: an exclusive OS file lock that a killed process releases by itself.

Two runs writing into one folder interleave their metrics and mix their configurations and
checkpoints. `fcntl.flock` on `<run>/.lfmsl.lock` makes a second writer stop at once with a line
naming the process that holds the folder; the kernel drops the lock when that process ends,
however it ends, so there is never a stale lock to remove by hand.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from lfmsl.io.atomic import remove_leftovers
from lfmsl.errors import UsageError

LOCK_FILE = ".lfmsl.lock"
PID_WIDTH = 10  # the holder's pid, right-aligned: overwritten in place, so a reader never sees an empty or mixed file
HOLDER_WAIT_S = 1.0  # how long a refused writer waits to read the holder's pid (written just after its lock)


class RunBusy(UsageError):
    """Another process is writing to the run folder."""


class RunLock:
    """`with RunLock(folder):` holds `folder` for this process (creating it if needed)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._file = None

    def __enter__(self) -> "RunLock":
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle = os.fdopen(os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666), "r+")
        except OSError as error:
            raise UsageError(f"cannot write to the output folder {self.folder}: {error.strerror}; "
                             "choose another --out") from None
        deadline = time.monotonic() + HOLDER_WAIT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(handle)
                if holder is None and time.monotonic() < deadline:  # the holder is between its lock and its pid
                    time.sleep(0.01)
                    continue
                handle.close()
                raise RunBusy(f"{self.folder} is in use by another lfmsl process (pid {holder or 'unknown'}); "
                              "wait for it to end, or choose another --out") from None
        handle.seek(0)
        handle.write(f"{os.getpid():>{PID_WIDTH}}\n")  # one fixed-width write over the old pid: never an empty file
        handle.truncate()
        handle.flush()
        self._file = handle
        remove_leftovers(self.folder)  # temporaries of a killed writer: nobody else can be writing them now
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None


def _holder(handle) -> int | None:
    """The pid in the lock file if that process is alive; None if the file is empty or names a
    process that has ended (the kernel releases its lock, so the holder is another, about to write)."""
    handle.seek(0)
    text = handle.read().split()
    if not text or not text[0].isdigit():
        return None
    pid = int(text[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return pid
