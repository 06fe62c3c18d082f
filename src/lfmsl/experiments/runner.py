"""`lfmsl.run`: validate, load, simulate with a progress bar and checkpoints, write the outputs.

`run` is the one way a run happens, fresh or resumed: the command line, the sweep, the scripts
and the notebook all go through it, with a `Config` (what to simulate) and a `RunOptions` (how).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from lfmsl.io import checkpoint, outputs
from lfmsl.algorithms import validate
from lfmsl.config import Config
from lfmsl.core.backend import check_backend
from lfmsl.experiments.round_profile import RoundProfile
from lfmsl.experiments.run_options import RunOptions
from lfmsl.errors import DiskFull, Diverged, UsageError, disk_full, plural
from lfmsl.costs.latency import summary_fields
from lfmsl.io.rundir import RunDir
from lfmsl.io.data import Dataset
from lfmsl.io.runlock import RunLock
from lfmsl.stopping import StopRequests

def describe(record: dict) -> str:
    accuracy = f"acc {100 * record['test_accuracy']:.2f}%"
    if "test_accuracy_std" in record:
        accuracy += f" ±{100 * record['test_accuracy_std']:.2f}"
    if "train_loss" not in record:  # --dropout: every participant failed
        return f"{accuracy}, round lost: all {record['participants']} participants failed"
    return f"{accuracy} loss {record['train_loss']:.4f}"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class RunResult(NamedTuple):
    """What `run` returns: exactly what the run folder holds."""

    history: list[dict]  # one record per round, as in metrics.jsonl
    summary: dict  # as in summary.json
    path: Path  # the run folder


def run(config: Config, out: str | Path | None = None, resume: bool = False, options: RunOptions | None = None, *,
        dataset: Dataset | None = None, **settings: Any) -> RunResult:
    """Run one simulation of `config` into the folder `out`; its round records and summary.

    `out=None` is a new folder under runs/ (as `lfmsl run` does), because a run always keeps its
    metrics, summary and checkpoints: it can be resumed and read later (pass a temporary folder
    for a throwaway run). `out` must hold no run, unless `resume`: then a stopped run of the same
    configuration there continues from its newest checkpoint (a larger `rounds` extends it) with
    the data folders it was started with unless others are given, and a finished one
    (`RunDir.finished`) returns at once, without any work. `options` says how the run is carried
    out (`RunOptions`); `settings` are its fields one by one (`progress=False`), given on top.
    `dataset`, when given, is the loaded `config.dataset` (a sweep loads each dataset once).

    Every option is checked here, once, before any folder is made or data loaded. Holds `out`
    for this process throughout (`runlock.RunLock`: another writer is refused). Raises UsageError
    when `out` holds a run of another configuration (or any run, without `resume`), Diverged when
    a loss becomes NaN or infinite or explodes (unless `options.allow_divergence`), Interrupted
    after SIGINT or SIGTERM at the next safe point (the last completed round saved); its message
    ends with `options.how_to_continue` (by default: `lfmsl run --resume` of the folder). A
    resumed run with no checkpoint to continue from does not start again at round 1 over rounds
    already in metrics.jsonl or checkpoints moved aside as unreadable: UsageError says what is there.
    """
    validate(config)
    check_backend()  # and the platform asked for in JAX_PLATFORMS can start
    return run_checked(config, out, resume, dataclasses.replace(options or RunOptions(), **settings), dataset)


def run_checked(config: Config, out: str | Path | None, resume: bool, options: RunOptions,
                dataset: Dataset | None = None) -> RunResult:
    """`run` of a configuration that `validate` has accepted: a sweep checks its whole grid before its first run,
    and each run is then checked no more. Of a distributed run's processes, process 0 alone writes the folder
    (`rundir.Observed`), and all of them stop where it refuses the folder."""
    from lfmsl.core import processes

    processes.agree("configurations", json.dumps(config.to_dict(), sort_keys=True))
    if out is None and processes.count() > 1:
        raise UsageError("--distributed: give --out DIR, the run folder every process takes part in")
    folder = RunDir(out) if out is not None else RunDir.new("runs", config.algorithm, config.dataset)
    if not processes.writes():
        folder = folder.observed()
    created = not folder.path.exists()
    try:
        summary = _run_locked(config, folder, resume, options, dataset)
    except UsageError:
        if created:  # a run refused before it wrote its configuration leaves no folder behind
            folder.discard_unstarted()
        raise
    except Exception as error:
        if not disk_full(error):
            raise
        started = folder.config() is not None
        then = _how_to_continue(options, folder) if started else "run the same command again"
        if not started and created:
            folder.discard_unstarted()
        raise DiskFull.at(folder.path, error, then) from None
    return RunResult(folder.metrics(), summary, folder.path)


def _how_to_continue(options: RunOptions, folder: RunDir) -> str:
    return options.how_to_continue or f"continue with: lfmsl run --resume {folder.path}"


def _run_locked(config: Config, folder: RunDir, resume: bool, options: RunOptions, dataset: Dataset | None) -> dict:
    from lfmsl.core.processes import decided_by_first

    # Signals only set a flag, read at safe points; one writer per folder.
    with StopRequests() as stop, RunLock(folder.path) if folder.writes else contextlib.nullcontext():
        finished = decided_by_first(lambda: _open_run_dir(config, folder, resume))
        if finished is not None:
            log(f"lfmsl: the run in {folder.path} already finished its {config.rounds} rounds; nothing to do")
            return finished
        if resume:  # the data folders the run was started with, unless given
            recorded = folder.sources()
            options = dataclasses.replace(options, manual_dir=options.manual_dir or recorded.get("manual_dir"),
                                          data_dir=options.data_dir or recorded.get("data_dir"))
        store = checkpoint.Checkpoints(folder.path)
        try:
            if dataset is None:
                dataset = options.load_dataset(config.dataset)
            return _simulate(config, folder, store, dataset, options, stop)
        finally:
            store.close()


def _open_run_dir(config: Config, folder: RunDir, resume: bool) -> dict | None:
    """Create or check the run folder; the summary of a run there that is already finished. A run with no
    checkpoint that would start again over rounds the folder holds is refused."""
    finished = None
    if resume and folder.config() is not None:
        # Refuses a run of another configuration.
        finished = folder.finished(config, lambda message: log(f"lfmsl: {message}"))
    else:
        folder.create()  # refuses a folder that holds a run
    if finished is None and not folder.has_checkpoints():
        folder.check_nothing_lost_by_restarting()
    return finished


def _simulate(config: Config, folder: RunDir, store: checkpoint.Checkpoints, dataset: Dataset, options: RunOptions,
              stop: StopRequests) -> dict:
    from lfmsl.experiments.simulation import Simulation

    out, how_to_continue = folder.path, options.how_to_continue
    resume_hint = _how_to_continue(options, folder)
    then = resume_hint if how_to_continue or folder.config() else "start the run again"
    stop.check(f"while loading the data; nothing was lost; {then}")
    steps = store.steps()
    if steps:
        folder.check_rounds(steps[-1], config.rounds)
    log(f"lfmsl: {config.algorithm} on {config.dataset}, {plural(config.clients, 'client')}, "
        f"{plural(config.rounds, 'round')} -> {out}" + outputs.numerics_note())
    simulation = Simulation(config, dataset)  # data-dependent checks happen here, before compiling
    history, board = _continue_from_checkpoint(config, folder, store, simulation, options, steps)
    start = len(history)

    if start < config.rounds:
        log(f"lfmsl: {simulation.context.iterations} iterations per round, executor {simulation.context.executor}; "
            "compiling...")
        simulation.compile()
        log(f"lfmsl: compiled in {simulation.compile_time_s:.1f} s (executor {simulation.context.executor})")
    stop.check(f"before round {start + 1} of {config.rounds}; nothing was lost; {resume_hint}")
    progress_bar = _progress_bar(config.rounds, start, options.progress)
    started = time.perf_counter()
    try:
        history = _run_rounds(simulation, store, folder, history, options.checkpoint_every, stop, progress_bar,
                              options.allow_divergence, board=board,
                              profile=RoundProfile(options.profile, len(history)))
    finally:
        board.close()
        if progress_bar is not None:
            progress_bar.close()
    if len(history) < config.rounds:
        stop.check(f"after round {len(history)} of {config.rounds}, which is saved; {resume_hint}")
    summary = finish(config, folder, simulation, history, start, time.perf_counter() - started,
                     simulation.compile_time_s, simulation.context.executor)
    # The caller learns of a stop request all the same.
    stop.check("after the run finished; every output is written" + (f"; {how_to_continue}" if how_to_continue else ""))
    return summary


def _continue_from_checkpoint(config: Config, folder: RunDir, store: checkpoint.Checkpoints, simulation,
                              options: RunOptions, steps: list[int]) -> tuple[list[dict], Any]:
    """Write the run's configuration and put its newest checkpoint (if any) into `simulation`; the history so far
    and the TensorBoard log, both rewritten to hold exactly the rounds the checkpoint holds."""
    folder.write_config(config, {"manual_dir": options.manual_dir, "data_dir": options.data_dir})
    snapshot = store.latest(simulation.state) if steps else None
    history = []
    if snapshot is not None:
        checkpoint.check_same_run(snapshot, config.to_dict(), folder.path)
        simulation.state = simulation.placement.place_state(snapshot.state)
        simulation.run_key, history = snapshot.run_key, snapshot.history
        log(f"lfmsl: resuming after round {snapshot.rounds_done} from {store.directory / str(snapshot.rounds_done)}")
    folder.write_metrics(history)  # drops rounds past the checkpoint: they are recomputed
    board = folder.tensorboard(history)  # rebuilt: it holds what metrics.jsonl holds
    folder.drop_summary()  # a finished run being extended is not finished
    return history, board


def finish(config: Config, folder: RunDir, simulation, history: list[dict], start: int, run_time_s: float,
           compile_time_s: float, executor: str) -> dict:
    """Write a finished run's summary, plot and reconstructions, say so, and return the summary. `compile_time_s`
    and `executor` are those of the program that ran it (a group's, where it shared one: grouped.py)."""
    summary = {
        "config": config.to_dict(),
        "resolved": {
            "model": simulation.model.name,
            "executor": executor,
            "iterations_per_round": simulation.context.iterations,
            "client_sizes": {"min": int(min(map(len, simulation.client_indices))),
                             "max": int(max(map(len, simulation.client_indices)))},
            **({"active_per_iteration": list(simulation.active)} if simulation.active is not None else {}),
        },
        "resumed_after_round": start,
        "compile_time_s": compile_time_s,
        "run_time_s": run_time_s,
        **outputs.summarise_run(history),
        **outputs.summarise_privacy(history),
        **summary_fields(history, config.target_accuracy),
        **outputs.environment(),
    }
    folder.write_summary(summary)
    if folder.writes:
        outputs.plot_accuracy({config.algorithm: history}, folder.plot_path,
                              f"{config.algorithm} on {config.dataset}, {config.clients} clients")
    if simulation.privacy_images and folder.writes:
        from lfmsl.io.plots import image_grid

        folder.write_privacy_images(simulation.privacy_images)
        image_grid(simulation.privacy_images, folder.privacy_plot_path,
                   f"{config.algorithm}: client {int(simulation.leakage.clients[0])}'s inputs and what the server "
                   f"rebuilt (round {len(history)})")
    log(
        f"lfmsl: done. final accuracy {100 * summary['final_test_accuracy']:.2f}%, "
        f"best {100 * summary['best_test_accuracy']:.2f}% "
        f"(round {summary['best_round']}), {summary['total_wall_time_s']:.1f} s for {plural(len(history), 'round')} "
        f"+ {compile_time_s:.1f} s compile; simulated latency {summary['sim_latency_s']:.3g} s, "
        f"{summary['comm_bytes'] / 1e6:.4g} MB sent. Outputs in {folder.path}"
    )
    return summary


def _run_rounds(simulation, store: checkpoint.Checkpoints, folder: RunDir, history: list[dict], every: int,
                stop: StopRequests, progress_bar, allow_divergence: bool = False, board=None,
                profile: RoundProfile = RoundProfile(None, 0)) -> list[dict]:
    """Rounds in segments that end at each checkpoint: the state after a segment is saved before
    the next round donates its buffers. Stops early, saved, when `stop` says so. `profile` may trace one round,
    as a segment of its own."""
    config = simulation.config
    wall_time = history[-1]["wall_time_s"] if history else 0.0
    while len(history) < config.rounds and stop.keep_going():
        done = len(history)
        segment_end = profile.segment_end(done, min(config.rounds, (done // every + 1) * every))
        with profile.around(done):
            for record in simulation.rounds(done, segment_end, keep_going=stop.keep_going):
                accept(record, wall_time, history, config, store, folder, board, allow_divergence)
                _show(record, config, progress_bar)
        if len(history) > done:
            wall_time = history[-1]["wall_time_s"]
            save(store, folder, simulation.state, simulation.run_key, history, config)
    return history


def accept(record: dict, wall_time: float, history: list[dict], config: Config, store: checkpoint.Checkpoints,
           folder: RunDir, board=None, allow_divergence: bool = False) -> None:
    """Check a round's record (Diverged where its loss is not sound), then append it to the run's metrics,
    TensorBoard log and `history`. `wall_time`: the simulator time of the run's earlier sessions."""
    record["wall_time_s"] += wall_time  # simulator time summed over the sessions of a run
    check_loss(record, first_train_loss(history), config, store, allow_divergence)
    folder.append_metrics(record)
    if board is not None:
        board.add(record)
    history.append(record)


def save(store: checkpoint.Checkpoints, folder: RunDir, state, run_key, history: list[dict], config: Config) -> None:
    """Checkpoint the state after the rounds in `history`; on a full disk, cut metrics.jsonl back to the rounds the
    last whole checkpoint holds (--resume recomputes the others) before raising."""
    try:
        store.save(len(history), state, run_key, history, history[-1]["wall_time_s"], config.to_dict())
    except Exception as error:
        if disk_full(error):
            folder.keep_metrics(store.steps()[-1] if store.steps() else 0)
        raise


EXPLODED_LOSS = 1e3  # a training loss above this, or EXPLOSION times round 1's, counts as diverged
EXPLOSION = 100.0


def first_train_loss(history: list[dict]) -> float | None:
    """The training loss of the first round that trained (rounds lost to --dropout have none)."""
    return next((r["train_loss"] for r in history if "train_loss" in r), None)


def check_loss(record: dict, first_train_loss: float | None, config: Config, store: checkpoint.Checkpoints,
               allow_divergence: bool = False) -> None:
    """Stop at the first NaN or infinite loss, or a training loss that exploded while staying
    finite (unless `allow_divergence`), naming the round and the likely cause."""
    named = ("train_loss", "test_loss")
    losses = list(named) + sorted(k for k in record if k.endswith("loss") and k not in named)
    for name in losses:
        value = record.get(name, 0.0)
        if not math.isfinite(value):
            what = {"train_loss": "training loss", "test_loss": "test loss"}.get(name, name.replace("_", " "))
            raise Diverged(f"the {what} became {value} in round {record['round']}; {_likely_cause(config, store)}")
    if "train_loss" not in record:  # a round lost to --dropout trained nothing
        return
    loss, limit = record["train_loss"], EXPLODED_LOSS
    if first_train_loss is not None and first_train_loss > 0:
        limit = min(limit, EXPLOSION * first_train_loss)
    if loss > limit and not allow_divergence:
        first = f" ({loss / first_train_loss:.3g} times round 1's {first_train_loss:.3g})" if first_train_loss else ""
        raise Diverged(f"the training loss exploded to {loss:.3g} in round {record['round']}{first}; "
                       f"{_likely_cause(config, store)}; pass --allow-divergence to let the run go on regardless")


def _likely_cause(config: Config, store: checkpoint.Checkpoints) -> str:
    own = (("client-lr", config.client_lr), ("server-lr", config.server_lr))
    rates = f"--lr {config.lr}" + "".join(f", --{flag} {rate}" for flag, rate in own if rate is not None)
    steps = store.steps()
    kept = (f"the last good checkpoint (round {steps[-1]}) is in {store.directory}"
            if steps else "there is no checkpoint yet (it diverged before the first one)")
    return f"the learning rate ({rates}) is probably too high; {kept}"


def _show(record: dict, config: Config, progress_bar) -> None:
    if progress_bar is not None:
        progress_bar.set_postfix_str(describe(record))
        progress_bar.update(1)
    else:
        log(f"round {record['round']}/{config.rounds}: {describe(record)} ({record['round_time_s']:.1f} s)")


def _progress_bar(rounds: int, done: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=rounds, initial=done, unit="round", desc="lfmsl", file=sys.stderr, dynamic_ncols=True)
