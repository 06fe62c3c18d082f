"""One writer per run folder: an exclusive OS file lock that a killed process releases by itself.

Two runs writing into one folder interleave their metrics and mix their configurations and
checkpoints. `fcntl.flock` on `<run>/.lfmsl.lock` makes a second writer stop at once with a line
naming the process that holds the folder; the kernel drops the lock when that process ends,
however it ends, so there is never a stale lock to remove by hand.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from lfmsl.io.atomic import remove_leftovers
from lfmsl.errors import UsageError

LOCK_FILE = ".lfmsl.lock"


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
            handle = open(self.folder / LOCK_FILE, "a+")
        except OSError as error:
            raise UsageError(f"cannot write to the output folder {self.folder}: {error.strerror}; choose another --out") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunBusy(f"{self.folder} is in use by another lfmsl process (pid {holder}); wait for it to end, "
                          "or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        remove_leftovers(self.folder)  # temporaries of a killed writer: nobody else can be writing them now
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None
