"""`run_group`: several runs of one program (grouped.py) at once, each with its own folder, lock, metrics,
checkpoints, TensorBoard log, summary and plot, written as its rounds finish, exactly as `lfmsl.run` writes them.

What happens to one run happens to it alone: a run whose folder another process holds, or that cannot be
resumed, is left out of the group; a run whose loss diverges stops there, keeping its last good checkpoint, and
the others go on (its lane of the program computes on to the group's end and nothing of it is written). Runs
that stopped after different rounds (a kill between two runs' checkpoints) continue as separate groups.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Sequence

from lfmsl.config import Config
from lfmsl.errors import DiskFull, Diverged, UsageError, disk_full
from lfmsl.experiments.run_options import RunOptions
from lfmsl.experiments.runner import (RunResult, _continue_from_checkpoint, _open_run_dir, accept, describe, finish,
                                      log, save)
from lfmsl.io import checkpoint
from lfmsl.io.data import Dataset
from lfmsl.io.rundir import RunDir
from lfmsl.io.runlock import RunLock
from lfmsl.stopping import StopRequests

Outcome = RunResult | UsageError  # what became of each run of a group


@dataclasses.dataclass
class _Member:
    """One run of a group as it is being written."""

    config: Config
    folder: RunDir
    store: checkpoint.Checkpoints | None = None
    history: list = dataclasses.field(default_factory=list)
    board: object = None
    outcome: Outcome | None = None  # set once the run finished, failed or was left out


def run_many(configs: Sequence[Config], outs: Sequence[Path], resume: bool, options: RunOptions,
             dataset: Dataset | None = None) -> list[Outcome]:
    """Each configuration into its own folder, the runs that differ only in values trained as one program
    (`options.runs_per_program` caps a group); each run's RunResult, or the UsageError that stopped it (Diverged,
    RunBusy, another run in its folder), the other runs unaffected."""
    from lfmsl.algorithms import validate
    from lfmsl.core.backend import check_backend
    from lfmsl.experiments.grouped import most_per_program, programs

    for config in configs:
        validate(config)
    check_backend()
    datasets = {dataset.name: dataset} if dataset is not None else {}
    outcomes: list[Outcome | None] = [None] * len(configs)
    for group in programs(configs, most_per_program(options.runs_per_program)):
        name = configs[group[0]].dataset
        if name not in datasets:
            datasets[name] = options.load_dataset(name)
        together = run_program([configs[i] for i in group], [outs[i] for i in group], resume, options,
                               datasets[name])
        for i, outcome in zip(group, together):
            outcomes[i] = outcome
    return outcomes


def run_program(configs: Sequence[Config], outs: Sequence[str | Path], resume: bool, options: RunOptions,
                dataset: Dataset) -> list[Outcome]:
    """The runs of one group (`grouped.programs`): one run as `lfmsl.run` runs it, more as one program; each run's
    RunResult, or the UsageError that stopped it (a full disk stops every run of the group)."""
    from lfmsl.experiments.runner import run_checked

    try:
        if len(configs) == 1:
            return [run_checked(configs[0], outs[0], resume, options, dataset)]
        return run_group(configs, outs, options, dataset, resume)
    except UsageError as error:
        return [error] * len(configs)


def run_group(configs: Sequence[Config], outs: Sequence[str | Path], options: RunOptions, dataset: Dataset,
              resume: bool = True) -> list[Outcome]:
    """Run (or, with `resume`, resume or find finished) each `configs[i]` in `outs[i]`, those not finished sharing
    one program;
    each run's result, or the UsageError that left it out (RunBusy, Diverged, a run of another configuration in
    its folder). The configurations are ones `validate` accepted that `grouped.program_of` maps to one program.
    Raises Interrupted after SIGINT or SIGTERM (every run saved after its last round), DiskFull on a full disk."""
    members = [_Member(config, RunDir(out)) for config, out in zip(configs, outs)]
    with StopRequests() as stop, contextlib.ExitStack() as held:
        for m in members:
            try:
                held.enter_context(RunLock(m.folder.path))
                finished = _open_run_dir(m.config, m.folder, resume)
                if finished is not None:
                    m.outcome = RunResult(m.folder.metrics(), finished, m.folder.path)
                    continue
                m.store = checkpoint.Checkpoints(m.folder.path)
                held.callback(m.store.close)
                steps = m.store.steps()
                if steps:
                    m.folder.check_rounds(steps[-1], m.config.rounds)
            except UsageError as error:
                m.outcome = error
        todo = [m for m in members if m.outcome is None]
        after = {id(m): _checkpointed(m) for m in todo}  # the round each run's last checkpoint followed
        try:
            for start in sorted(set(after.values())):
                _run_together([m for m in todo if after[id(m)] == start], options, dataset, stop)
        except Exception as error:
            if not disk_full(error):
                raise
            raise DiskFull.at(members[0].folder.path.parent, error,
                              options.how_to_continue or "run the same command again") from None
    return [m.outcome for m in members]


def _checkpointed(m: _Member) -> int:
    steps = m.store.steps()
    return steps[-1] if steps else 0


def _run_together(members: list[_Member], options: RunOptions, dataset: Dataset, stop: StopRequests) -> None:
    """Run `members`, all checkpointed after the same round, as one group to their last round; where they cannot
    fit in memory together, as two groups of half as many, and so on."""
    from lfmsl.experiments.grouped import GroupSimulation, GroupTooLarge, ShapesDiffer

    then = options.how_to_continue or "run the same command again"
    stop.check(f"before a group of {len(members)} runs; nothing was lost; {then}")
    try:
        group = GroupSimulation([m.config for m in members], dataset)
    except ShapesDiffer as differ:  # each set of runs whose shapes agree is a group of its own
        log(f"lfmsl: {differ}; they run as {len(differ.groups)} programs")
        for indices in differ.groups:
            _run_together([members[i] for i in indices], options, dataset, stop)
        return
    for m, simulation in zip(members, group.members):
        m.history, m.board = _continue_from_checkpoint(m.config, m.folder, m.store, simulation, options,
                                                       m.store.steps())
    rounds, start = members[0].config.rounds, len(members[0].history)
    log(f"lfmsl: {len(members)} runs in one program, {group.template.context.iterations} iterations per round, "
        f"executor {group.executor}; compiling...")
    try:
        group.start()
        group.compile()
    except GroupTooLarge as too_large:
        if len(members) == 1:
            raise
        log(f"lfmsl: {too_large} cannot fit in memory; splitting the group in two")
        for m in members:
            m.board.close()
        del group
        half = len(members) // 2
        _run_together(members[:half], options, dataset, stop)
        _run_together(members[half:], options, dataset, stop)
        return
    log(f"lfmsl: compiled in {group.compile_time_s:.1f} s (executor {group.executor})")
    started = time.perf_counter()
    done = start  # rounds the group has run (a run that diverged keeps fewer)
    try:
        while done < rounds and stop.keep_going():
            wall_time = [m.history[-1]["wall_time_s"] if m.history else 0.0 for m in members]  # each segment adds on
            segment_end = min(rounds, (done // options.checkpoint_every + 1) * options.checkpoint_every)
            saved = done
            for records in group.rounds(done, segment_end, keep_going=stop.keep_going):
                for m, record, earlier in zip(members, records, wall_time):
                    if m.outcome is None:
                        _accept(m, record, earlier, options)
                _show(members, records, rounds)
                done += 1
            for index, m in enumerate(members):
                if m.outcome is None and done > saved:
                    save(m.store, m.folder, group.state_of(index), group.members[index].run_key, m.history, m.config)
            if all(m.outcome is not None for m in members):
                break
    finally:
        for m in members:
            m.board.close()
    stop.check(f"after round {done} of {rounds} of a group of {len(members)} runs, each saved; {then}")
    for index, m in enumerate(members):
        if m.outcome is None:
            summary = finish(m.config, m.folder, group.members[index], m.history, start,
                             time.perf_counter() - started, group.compile_time_s, group.executor)
            m.outcome = RunResult(m.folder.metrics(), summary, m.folder.path)


def _accept(m: _Member, record: dict, wall_time: float, options: RunOptions) -> None:
    """`accept` for one run of the group: a diverged run stops alone, its last good checkpoint kept."""
    try:
        accept(record, wall_time, m.history, m.config, m.store, m.folder, m.board, options.allow_divergence)
    except Diverged as error:
        log(f"lfmsl: {m.folder.path.name}: {error}; the other runs of its group go on")
        m.outcome = error


SHOWN_APART = 4  # runs whose round is shown one by one; a larger group's line gives the range over its runs


def _show(members: list[_Member], records: list[dict], rounds: int) -> None:
    """One line per round for the whole group: each run's accuracy and loss in the group's order, or for more than
    SHOWN_APART runs the range of each over the runs still going (each run's own numbers are in its metrics)."""
    going = [bool(m.outcome is None or m.history and m.history[-1] is record) for m, record in zip(members, records)]
    if len(members) <= SHOWN_APART:
        text = " | ".join(describe(r) if g else "stopped" for r, g in zip(records, going))
    else:
        shown = [r for r, g in zip(records, going) if g and "train_loss" in r]
        accuracy = [100 * r["test_accuracy"] for r in shown]
        loss = [r["train_loss"] for r in shown]
        text = (f"{len(shown)} runs: acc {min(accuracy):.2f} to {max(accuracy):.2f}% loss {min(loss):.4f} to "
                f"{max(loss):.4f}" if shown else f"{len(members)} runs: no round trained")
        stopped = going.count(False)
        text += f", {stopped} stopped" if stopped else ""
    log(f"round {records[0]['round']}/{rounds}: {text} ({records[0]['round_time_s']:.1f} s)")
