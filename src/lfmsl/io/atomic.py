"""Files written whole or not at all: a unique temporary name, fsync, then os.replace.

A reader (or a run resumed after a kill) never sees half a file, and two writers never share a
temporary. A write killed before its rename leaves `.<name>.<random>.tmp`; `remove_leftovers`
clears those once the folder's lock is held, i.e. when no other writer can be using them.
"""

from __future__ import annotations

import os
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
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
