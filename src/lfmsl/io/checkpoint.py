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
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lfmsl.errors import UsageError
from lfmsl.io.rundir import RunDir

FORMAT = 1  # version of the JSON part; bump when its meaning changes


@dataclasses.dataclass
class Snapshot:
    """What a checkpoint restores: the state after `rounds_done` rounds and the history so far."""

    rounds_done: int
    state: Any
    run_key: jax.Array
    history: list[dict]
    wall_time_s: float  # simulator time of those rounds, summed over every session of the run


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
            self._manager = ocp.CheckpointManager(self.directory, options=options)
        except OSError as error:
            raise UsageError(f"cannot write checkpoints to {self.directory}: {error.strerror}; choose another --out") from None

    def steps(self) -> list[int]:
        """Rounds done of every complete-looking checkpoint, oldest first."""
        return sorted(self._manager.all_steps())

    def save(self, rounds_done: int, state: Any, run_key: jax.Array, history: list[dict], wall_time_s: float) -> None:
        """Write a checkpoint of the state after `rounds_done` rounds; returns once it is on disk."""
        ocp = self._ocp
        meta = {
            "format": FORMAT,
            "rounds_done": rounds_done,
            "run_key": jax.random.key_data(run_key).tolist(),
            "run_key_impl": str(jax.random.key_impl(run_key)),
            "wall_time_s": wall_time_s,
            "history": history,
        }
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self._manager.save(rounds_done, args=args, force=True)
        self._manager.wait_until_finished()

    def latest(self, like: Any) -> Snapshot | None:
        """The newest checkpoint that reads back whole, shaped like `like`; None if there is none.

        A newer checkpoint that cannot be read is moved aside into `checkpoints.unreadable/`
        (with a warning), never deleted, so that the rounds after the one restored can be saved
        again. If checkpoints exist but none can be read, the run stops rather than silently
        starting again.
        """
        ocp = self._ocp
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        steps = self.steps()
        for step in reversed(steps):
            try:
                restored = self._manager.restore(
                    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore())
                )
                return _snapshot(step, restored.state, restored.meta)
            except Exception as error:  # noqa: BLE001 - any failure to read means: not usable
                reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
                aside = self.directory.with_name(self.directory.name + ".unreadable") / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
                print(f"lfmsl: checkpoint {self.directory / str(step)} is incomplete or damaged ({reason}); moved to {aside}; "
                      "using the one before", file=sys.stderr)
                last_error = reason
                aside.parent.mkdir(exist_ok=True)
                shutil.move(self.directory / str(step), aside)
                self._manager.reload()
        if steps:
            raise UsageError(
                f"no checkpoint in {self.directory} can be read (the last error: {last_error}); "
                f"delete that folder to start the run again"
            )
        return None

    def close(self) -> None:
        self._manager.close()


def _snapshot(step: int, state: Any, meta: dict) -> Snapshot:
    """Check that the JSON part belongs to this step, and rebuild the typed run key.

    The arrays are put back as a fresh run has them (uncommitted to a device), so the round
    compiles to the same program as in a run that was never stopped.
    """
    if meta.get("format") != FORMAT or meta.get("rounds_done") != step or len(meta.get("history", ())) != step:
        raise ValueError(f"its metadata does not describe {step} rounds")
    state = jax.tree.map(lambda leaf: jnp.asarray(np.asarray(leaf)), state)
    run_key = jax.random.wrap_key_data(jnp.asarray(meta["run_key"], dtype=jnp.uint32), impl=meta["run_key_impl"])
    return Snapshot(step, state, run_key, list(meta["history"]), float(meta["wall_time_s"]))
