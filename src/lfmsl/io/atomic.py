"""Files written whole or not at all: a unique temporary name, fsync, then os.replace.

A reader (or a run resumed after a kill) never sees half a file, and two writers never share a
temporary. The file gets the mode of the one it replaces, or that of a plain open() (0666 less
the umask), not the temporary's 0600. A write killed before its rename leaves `.<name>.<random>.tmp`; `remove_leftovers`
clears those once the folder's lock is held, i.e. when no other writer can be using them.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

SUFFIX = ".tmp"


def write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=SUFFIX, dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fchmod(stream.fileno(), _mode(path))  # mkstemp's 0600 would make outputs unreadable to others
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _mode(path: Path) -> int:
    """The mode of the file being replaced, else what a plain open() would give (0666 less the umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without changing it where Linux says it (os.umask can only set it)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def remove_leftovers(folder: str | Path, older_than_s: float = 0.0) -> list[Path]:
    """Delete the temporaries of writes that were killed before their rename; returns them.

    In a folder without a lock, `older_than_s` spares the temporaries a live writer may still use."""
    import time

    now = time.time()
    leftovers = [p for p in Path(folder).glob(f".*{SUFFIX}") if p.is_file() and now - p.stat().st_mtime >= older_than_s]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers
