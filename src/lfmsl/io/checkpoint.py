"""Checkpoints of a run, so that a crash, a pre-emption or Ctrl-C never costs finished rounds.

A run folder (`lfmsl.io.rundir.RunDir`) holds `checkpoints/<rounds done>/`, each an orbax
checkpoint of the whole `State` plus a JSON part with the round, the run key and the metrics
history so far. Round r's randomness is `fold_in(run_key, r)`, so (state, rounds done, run key)
is all a resumed run needs to compute exactly what an uninterrupted run would have.

Orbax writes a checkpoint into `<step>.orbax-checkpoint-tmp` and renames it once complete, so a
process killed while writing leaves a folder that is never listed as a step (checked with
SIGKILL, orbax-checkpoint 0.12.8). A process killed while orbax deletes an old checkpoint can
leave a listed step that cannot be read; `Checkpoints.latest` then takes the one before it.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lfmsl.core import processes
from lfmsl.errors import UsageError, disk_full, first_line
from lfmsl.io.rundir import UNREADABLE_DIR, RunDir

FORMAT = 1  # version of the JSON part; bump when its meaning changes


@dataclasses.dataclass
class Snapshot:
    """What a checkpoint restores: the state after `rounds_done` rounds and the history so far."""

    rounds_done: int
    state: Any
    run_key: jax.Array
    history: list[dict]
    wall_time_s: float  # simulator time of those rounds, summed over every session of the run
    # the configuration the checkpoint was written under (None: written by an lfmsl that did not keep it)
    config: dict | None = None


class Checkpoints:
    """The checkpoints of one run folder: save every few rounds, restore the newest readable one."""

    def __init__(self, run_dir: Path, max_to_keep: int = 2):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = RunDir(run_dir).checkpoints.absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            enable_async_checkpointing=False,  # the next round donates the state's buffers
            cleanup_tmp_directories=True,  # what a killed save left behind
        )
        try:
            # the metadata is read before any restore
            handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
            self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)
        except OSError as error:
            raise UsageError(f"cannot write checkpoints to {self.directory}: {error.strerror}; "
                             "choose another --out") from None

    def steps(self) -> list[int]:
        """Rounds done of every complete-looking checkpoint, oldest first."""
        return sorted(self._manager.all_steps())

    def save(self, rounds_done: int, state: Any, run_key: jax.Array, history: list[dict], wall_time_s: float,
             config: dict | None = None) -> None:
        """Write a checkpoint of the state after `rounds_done` rounds, and the configuration it was computed under;
        returns once it is on disk."""
        ocp = self._ocp
        meta = {
            "format": FORMAT,
            "rounds_done": rounds_done,
            "run_key": jax.random.key_data(run_key).tolist(),
            "run_key_impl": str(jax.random.key_impl(run_key)),
            "wall_time_s": wall_time_s,
            "history": history,
            **({} if config is None else {"config": config}),
        }
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        _drop_closed_loop_tracebacks()  # a failing save's writes print them during the save
        absl_log, quiet = logging.getLogger("absl"), WritesOf(self.directory)
        absl_log.addFilter(quiet)  # orbax's threads log the error the save raises here, once each
        try:
            self._manager.save(rounds_done, args=args, force=True)
            self._manager.wait_until_finished()
        except Exception as error:
            if disk_full(error):  # one line says so (the runner's); the writes left running must not add tracebacks
                _quiet_reads_left_running(self.directory)
            raise
        finally:
            absl_log.removeFilter(quiet)

    def latest(self, like: Any) -> Snapshot | None:
        """The newest checkpoint that reads back whole, shaped like `like`; None if there is none.

        A checkpoint that reads but holds another tree or other shapes than `like` (written by
        another lfmsl or another model) is valid: UsageError names the difference, and nothing is
        moved. A newer checkpoint that cannot be read (cut short, torn) is moved aside into
        `checkpoints.unreadable/` (with a warning), never deleted, so that the rounds after the
        one restored can be saved again. If checkpoints exist but none can be read, the run stops
        rather than silently starting again.
        """
        ocp = self._ocp
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        steps = self.steps()
        _quiet_reads_left_running(self.directory)
        for step in reversed(steps):
            stored = self._layout(step)
            if stored is not None:
                difference = _difference(stored, _leaves(like))
                if difference:
                    raise UsageError(
                        f"the checkpoint {self.directory / str(step)} does not fit this run ({difference}); it is "
                        "valid but written for another model or by another lfmsl version, so it was left in place; "
                        "continue that run with the lfmsl that wrote it, or choose another --out for a new run"
                    )
            try:
                restored = self._manager.restore(
                    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore())
                )
                return _snapshot(step, restored.state, restored.meta)
            # the layout fits, so a failure to read means: cut short or damaged
            except Exception as error:  # noqa: BLE001
                reason = first_line(error)
                aside = self.directory.with_name(UNREADABLE_DIR) / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
                last_error = reason
                if processes.writes():  # of a distributed run's processes, process 0 moves it and says so
                    print(f"lfmsl: checkpoint {self.directory / str(step)} is incomplete or damaged ({reason}); "
                          f"moved to {aside}; using the one before", file=sys.stderr)
                    aside.parent.mkdir(exist_ok=True)
                    shutil.move(self.directory / str(step), aside)
                self._manager.reload()
        if steps:
            raise UsageError(f"no checkpoint in {self.directory} can be read (the last error: {last_error}); "
                             f"each was moved into {UNREADABLE_DIR}/; "
                             + RunDir(self.directory.parent).start_again_advice())
        return None

    def _layout(self, step: int) -> dict[str, tuple] | None:
        """Path -> (shape, dtype) of every array the checkpoint holds; None where its metadata does not read."""
        try:
            metadata = self._manager.item_metadata(step)["state"]
        except Exception:  # noqa: BLE001 - unreadable metadata: the restore below decides
            return None
        tree = getattr(metadata, "tree", metadata)
        return None if tree is None else _leaves(tree)

    def close(self) -> None:
        self._manager.close()


class DropClosedLoopTracebacks:
    """A stderr that drops the tracebacks tensorstore's threads print when a write they finish posts to orbax's
    event loop after a failed save closed it (dozens after a disk filled up, each 'RuntimeError: Event loop is
    closed'); everything else passes through. Each thread's text is assembled apart, so lfmsl's own line, written
    by the main thread while a traceback is half printed, neither joins nor splits it. A traceback is held until
    its last line decides it. Once one was dropped, stray frame lines and closed-loop lines are dropped too (a
    safety net: lfmsl's own lines never start with a space)."""

    START = "Traceback (most recent call last):"
    CLOSED = "RuntimeError: Event loop is closed"

    def __init__(self, stream: Any):
        self.stream, self._dropped = stream, False
        self._held: dict[int, list[str]] = {}
        self._partial: dict[int, str] = {}
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            thread = threading.get_ident()
            held = self._held.setdefault(thread, [])
            *lines, partial = (self._partial.get(thread, "") + text).split("\n")
            for line in lines:
                self._line(held, line + "\n")
            if partial and not held and not self.START.startswith(partial[: len(self.START)]):
                self.stream.write(partial)  # a progress bar's '\r' line, or text awaiting its newline
                partial = ""
            self._partial[thread] = partial
        return len(text)

    def _line(self, held: list[str], line: str) -> None:
        if not held and not line.startswith(self.START):
            if not (self._dropped and (line[:1] == " " or line.strip() == self.CLOSED)):
                self.stream.write(line)
            return
        held.append(line)
        if line.strip() and not line[:1].isspace() and not line.startswith(self.START):  # an exception's own line
            block = "".join(held)
            held.clear()
            if line.strip() == self.CLOSED:
                self._dropped = True
            else:
                self.stream.write(block)

    def flush(self) -> None:
        with self._lock:
            thread = threading.get_ident()
            if self._partial.get(thread) and not self._held.get(thread):
                self.stream.write(self._partial.pop(thread))
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _drop_closed_loop_tracebacks() -> None:
    """Put `DropClosedLoopTracebacks` in front of stderr, once per process."""
    if not isinstance(sys.stderr, DropClosedLoopTracebacks):
        sys.stderr = DropClosedLoopTracebacks(sys.stderr)


def _quiet_reads_left_running(directory: Path) -> None:
    """A restore that fails leaves orbax's other reads of the checkpoint running on tensorstore's
    threads. Each that finishes posts to orbax's event loop, closed by then, and Python prints a
    traceback for each (dozens for one torn checkpoint, during the restore and after it); asyncio
    logs the failed reads that nobody awaited. lfmsl says in one line what was wrong, so these two
    are dropped from the first restore on; every other error and record goes where it would."""
    if not isinstance(sys.unraisablehook, DropPostsToClosedLoops):
        sys.unraisablehook = DropPostsToClosedLoops(sys.unraisablehook)
    _drop_closed_loop_tracebacks()
    asyncio_log = logging.getLogger("asyncio")
    if not any(isinstance(f, UnawaitedReadsOf) and f.directory == directory for f in asyncio_log.filters):
        asyncio_log.addFilter(UnawaitedReadsOf(directory))


class DropPostsToClosedLoops:
    """An unraisable-error hook that drops the RuntimeError of a callback posted to a closed event
    loop and hands every other error to the hook it replaced."""

    def __init__(self, forward: Any):
        self.forward = forward

    def __call__(self, unraisable: Any) -> None:
        error = unraisable.exc_value
        closed = isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
        shutting_down = isinstance(error, ImportError) and "Python is likely shutting down" in str(error)
        if not (closed or shutting_down):
            self.forward(unraisable)


class WritesOf(logging.Filter):
    """Drops the error records orbax's writer threads log for a save under `directory` (the save raises it too)."""

    def __init__(self, directory: Path):
        super().__init__()
        self.directory = directory

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and str(self.directory) in record.getMessage())


class UnawaitedReadsOf(logging.Filter):
    """Drops asyncio's 'Task (or Future) exception was never retrieved' for reads of files under `directory`."""

    def __init__(self, directory: Path):
        super().__init__()
        self.directory = directory

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        unawaited = message.startswith(("Task exception was never retrieved", "Future exception was never retrieved"))
        return not (unawaited and f'"{self.directory}/' in message)


def _snapshot(step: int, state: Any, meta: dict) -> Snapshot:
    """Check that the JSON part belongs to this step, and rebuild the typed run key.

    The arrays are put back as a fresh run has them (uncommitted to a device), so the round
    compiles to the same program as in a run that was never stopped; an array spread over several processes
    (a distributed run) stays as orbax laid it out, on the run's mesh: no process can read all of it.
    """
    if meta.get("format") != FORMAT or meta.get("rounds_done") != step or len(meta.get("history", ())) != step:
        raise ValueError(f"its metadata does not describe {step} rounds")
    uncommitted = lambda leaf: jnp.asarray(np.asarray(leaf)) if getattr(leaf, "is_fully_addressable", True) else leaf
    state = jax.tree.map(uncommitted, state)
    run_key = jax.random.wrap_key_data(jnp.asarray(meta["run_key"], dtype=jnp.uint32), impl=meta["run_key_impl"])
    return Snapshot(step, state, run_key, list(meta["history"]), float(meta["wall_time_s"]), meta.get("config"))


def _leaves(tree: Any) -> dict[str, tuple]:
    """Path -> (shape, dtype) of a tree's arrays, the path named alike for a live state (named
    tuples, dicts) and a checkpoint's metadata (dicts)."""
    def name(key) -> str:
        for attribute in ("key", "name", "idx"):
            if hasattr(key, attribute):
                return str(getattr(key, attribute))
        return str(key)

    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {"/".join(map(name, path)): (tuple(getattr(leaf, "shape", ())), str(getattr(leaf, "dtype", "?")))
            for path, leaf in leaves}


def _difference(stored: dict[str, tuple], expected: dict[str, tuple], most: int = 2) -> str:
    """What differs between a checkpoint's arrays and the run's, in a few words ('' if nothing)."""
    def listed(paths: list[str]) -> str:
        return ", ".join(paths[:most]) + (f" and {len(paths) - most} more" if len(paths) > most else "")

    differences = []
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    if missing:
        differences.append(f"it lacks {listed(missing)}")
    if extra:
        differences.append(f"it holds {listed(extra)}, which this run does not have")
    changed = sorted(p for p in set(stored) & set(expected) if stored[p] != expected[p])
    if changed:
        first = changed[0]
        (shape, dtype), (want_shape, want_dtype) = stored[first], expected[first]
        what = (f"shape {shape} where this run has {want_shape}" if shape != want_shape
                else f"dtype {dtype} where this run has {want_dtype}")
        more = f" ({len(changed) - 1} more arrays differ)" if len(changed) > 1 else ""
        differences.append(f"{first} has {what}{more}")
    return "; ".join(differences)


def check_same_run(snapshot: Snapshot, config: dict, folder: Path) -> None:
    """Refuse to resume a checkpoint under another configuration (config.json edited by hand): a run folder holds
    one run. More rounds are what resuming is for, so `rounds` may differ."""
    if snapshot.config is None:
        return
    changed = [name for name in sorted(set(config) | set(snapshot.config))
               if name != "rounds" and config.get(name) != snapshot.config.get(name)]
    if changed:
        what = ", ".join(f"{name} {snapshot.config.get(name)!r} -> {config.get(name)!r}" for name in changed)
        raise UsageError(f"{folder}'s checkpoints were computed under another configuration than its config.json "
                         f"now holds ({what}); put config.json back as it was to resume, or start a new run with "
                         "another --out")
