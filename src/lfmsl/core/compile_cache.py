"""Each program of a sweep compiled once: JAX's persistent compilation cache, kept in the sweep's folder.

The runs of a sweep that differ only in values (seeds, learning rates, ...) lower to the same program (their values
are inputs, never constants: tests/test_grouped.py), so where they run one at a time every run after the first loads
the program its predecessor compiled instead of compiling it again: about 6 of LocFedMix-SL's 7 compile seconds at
N = 10 (docs/PERFORMANCE.md). The cache is a folder of a few MB; an entry that cannot be read (damaged) or written
(a full disk) is one line and a compile, never an error.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import warnings
from pathlib import Path
from typing import Iterator

FOLDER = ".compile-cache"  # in a sweep's --out


def point_at(path: Path | None, **settings) -> dict:
    """Point this process's persistent compilation cache at `path` (None: off), with other jax `settings` of the
    cache; returns the settings it replaced, for `restore`."""
    import jax
    from jax._src import compilation_cache

    settings = {"jax_compilation_cache_dir": None if path is None else str(path), **settings}
    before = {name: getattr(jax.config, name) for name in settings}
    for name, value in settings.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()  # the cache is set up once, at the first compile: again with the new folder
    return before


def restore(before: dict) -> None:
    """Put back the settings `point_at` replaced."""
    import jax
    from jax._src import compilation_cache

    for name, value in before.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


@contextlib.contextmanager
def kept_programs(sweep_folder: Path) -> Iterator[None]:
    """Keep the programs compiled inside in `sweep_folder`/.compile-cache, unless a cache is set already (the
    user's JAX_COMPILATION_CACHE_DIR) or the sweep is one of several processes (each run spans them all)."""
    import jax

    from lfmsl.core import processes

    folder = Path(sweep_folder) / FOLDER
    try:
        usable = jax.config.jax_compilation_cache_dir is None and processes.count() == 1
        if usable:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a folder that cannot be written: the runs say so themselves; compile as without a cache
        usable = False
    if not usable:
        yield
        return
    before = point_at(folder)
    try:
        with _one_line_warnings(folder):
            yield
    finally:
        restore(before)


@contextlib.contextmanager
def _one_line_warnings(folder: Path) -> Iterator[None]:
    """JAX's warning about a cache entry it could not read or write (two lines, naming its own source file) as one
    line of lfmsl's; every other warning as before."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if "persistent compilation cache entry for " not in text:
            return shown(message, category, filename, lineno, file, line)
        entry = text.split("entry for ", 1)[1]
        if "reading" in text:  # JAX would keep the damaged entry and fail on it in every later run: start afresh
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)
            said = f"a program kept in {folder} could not be read ({entry}); the folder was emptied, and the program " \
                   "is compiled again"
        else:
            said = f"a program could not be kept in {folder} ({entry}); the runs go on, compiling it where needed"
        print(f"lfmsl: {said}", file=sys.stderr, flush=True)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown
