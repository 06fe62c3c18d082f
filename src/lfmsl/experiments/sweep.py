"""`lfmsl sweep`: a grid of runs in one process, one folder each, and a table over seeds.

Every configuration flag takes a comma list (`--algorithm psl,locfedmix --clients 10,50
--seed 0,1 --mix-alpha 0.5,1`; `lfmsl.experiments.flags`); the grid is their product. Each run
gets a folder named from its options that differ from the defaults, so a re-run of the same or a
larger grid finds the runs that already finished (`RunDir.finished`) and skips them.
Each dataset is loaded once. The table (results.csv, results.md) has one row per
configuration with the mean and standard deviation over seeds.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import itertools
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from lfmsl.io.atomic import remove_leftovers, write_text
from lfmsl.algorithms import inert_options, validate, without_inert
from lfmsl.config import Config
from lfmsl.core.backend import check_backend
from lfmsl.experiments.flags import values_of
from lfmsl.experiments.run_options import RunOptions
from lfmsl.errors import UsageError
from lfmsl.io.rundir import RunDir

DEFAULTS = Config()
CONTINUE = "the same lfmsl sweep command continues the sweep (and writes its tables)"  # after Ctrl-C or SIGTERM
TABLE_LEFTOVER_AGE_S = 600  # a sweep folder has no lock: spare a table write of another sweep in flight
NAMED = ("algorithm", "dataset", "clients", "seed")  # always in a run folder's name
METRICS = (  # summary key, table heading, scale, format
    ("final_test_accuracy", "final acc (%)", 100.0, "{:.2f}"),
    ("best_test_accuracy", "best acc (%)", 100.0, "{:.2f}"),
    ("sim_latency_s", "sim. latency (s)", 1.0, "{:.4g}"),
    ("rounds_to_target", "rounds to target", 1.0, "{:.1f}"),
    ("sim_latency_to_target_s", "sim. latency to target (s)", 1.0, "{:.4g}"),
    ("comm_bytes", "comm. (MB)", 1e-6, "{:.4g}"),
    ("total_wall_time_s", "wall time (s)", 1.0, "{:.1f}"),
)


@dataclasses.dataclass
class Run:
    """One run of a sweep: its configuration, folder and summary (None until finished)."""

    config: Config
    path: Path
    summary: dict | None = None
    skipped: str | None = None  # why the sweep left it out: another process has it, or it failed
    exit_code: int = 0  # of a run that failed: 2 for a usage error, 3 for a diverged loss


def grid(values: dict, log: Callable[[str], None] = lambda message: None) -> list[Config]:
    """The product of every list-valued option; scalars are the same in every run.

    An option that does nothing in a combination (`--mix-alpha` for psl) is dropped there, and
    the runs it would have repeated run once.
    """
    lists = {k: (v if isinstance(v, list) else [v]) for k, v in values.items() if k in Config.__dataclass_fields__}
    keys = list(lists)
    configs = [Config(**dict(zip(keys, combo))) for combo in itertools.product(*(lists[k] for k in keys))]
    dropped = sorted({f"--{name.replace('_', '-')} for {c.algorithm}" for c in configs for name in inert_options(c)})
    if dropped:
        log(f"lfmsl sweep: options that do nothing there are left out: {', '.join(dropped)}")
    return list(dict.fromkeys(without_inert(c) for c in configs))  # a repeated run is one run


def run_name(config: Config) -> str:
    """A folder name from the options that define the run, stable across grids."""
    words = [config.algorithm, config.dataset, f"n{config.clients}", f"s{config.seed}"]
    for field in dataclasses.fields(Config):
        value = getattr(config, field.name)
        if field.name in NAMED or value == getattr(DEFAULTS, field.name):
            continue
        name = f"{'no-' if value is False else ''}{field.name.replace('_', '-')}"
        words.append(name if isinstance(value, bool) else f"{name}={value}")
    return "_".join(words).replace("/", "-").replace(":", "-")


def run_sweep(configs: Sequence[Config], out: Path, load: Callable[[str], object],
              options: RunOptions = RunOptions(progress=False), log: Callable[[str], None] = print) -> list[Run]:
    """Run every configuration not yet finished under `out` through `lfmsl.run` with `options`,
    loading each dataset once. The whole grid is checked before its first run. A run that another
    process is running (two sweeps over one grid) is skipped, not waited for, and tried once more at
    the end (the other may have finished or stopped it); one that fails (diverged, damaged beyond
    repair, another run in its folder) is named, and the others go on."""
    check_grid(configs)
    check_backend()
    options = dataclasses.replace(options, how_to_continue=CONTINUE)
    from lfmsl.experiments.round_builder import require_state_fits

    require_state_fits(configs)
    runs = [Run(config, Path(out) / run_name(config)) for config in configs]
    for run in runs:
        with _failures(run, log):  # a damaged run counts as not finished: running it repairs it
            run.summary = RunDir(run.path).finished(run.config, lambda message: log(f"lfmsl sweep: {message}"))
    todo = [run for run in runs if run.summary is None and run.skipped is None]
    finished = sum(run.summary is not None for run in runs)
    log(f"lfmsl sweep: {len(runs)} runs, {finished} already finished, {len(todo)} to run -> {out}")
    from lfmsl.stopping import StopRequests

    datasets: dict[str, object] = {}

    def dataset(name: str):
        if name not in datasets:
            datasets[name] = load(name)
        return datasets[name]

    def run_each(batch: list[Run], stop) -> None:
        for group in programs(sorted(batch, key=lambda r: r.config.dataset), options.runs_per_program):
            names = ", ".join(run.path.name for run in group)
            stop.check(f"before the run{'s' if len(group) > 1 else ''} {names}; every finished run is kept; {CONTINUE}")
            log(f"lfmsl sweep: {names}")
            for run in group:
                run.skipped = None
            _run_group(group, options, dataset(group[0].config.dataset), log)  # interrupted runs resume

    from lfmsl.core.compile_cache import kept_programs

    with StopRequests() as stop, kept_programs(out):  # runs that share a program compile it once
        run_each(todo, stop)
        # Once more the runs another sweep had: finished since (found so), stopped (resumed here) or still running.
        run_each(still_running(runs), stop)
    return runs


def check_grid(configs: Iterable[Config]) -> None:
    """Refuse a bad combination anywhere in the grid (UsageError), before its first run."""
    for config in configs:
        validate(config)


def programs(runs: Sequence[Run], most: int | None = None) -> list[list[Run]]:
    """`runs` in the groups that train as one program (`grouped.programs`), at most `most` each (None: the default
    of --runs-per-program, `grouped.most_per_program`)."""
    from lfmsl.experiments.grouped import most_per_program, programs as groups

    return [[runs[i] for i in group] for group in groups([run.config for run in runs], most_per_program(most))]


def _run_group(group: list[Run], options: RunOptions, dataset, log: Callable[[str], None]) -> None:
    """Run `group` as one program (group_runner.py), recording each run's summary, or why it is left out."""
    from lfmsl.experiments.group_runner import run_program

    outcomes = run_program([run.config for run in group], [run.path for run in group], True, options, dataset)
    for run, outcome in zip(group, outcomes):
        with _failures(run, log):
            if isinstance(outcome, UsageError):
                raise outcome
            run.summary = outcome.summary


@contextlib.contextmanager
def _failures(run: Run, log: Callable[[str], None]) -> Iterator[None]:
    """Record in `run` why it is left out (another process has it, or it failed) instead of raising."""
    from lfmsl.io.runlock import RunBusy

    try:
        yield
    except RunBusy as busy:  # another sweep over the same grid has it: share the work
        run.skipped = str(busy)
        log(f"lfmsl sweep: skipped, {str(busy).split(';')[0]}; tried again after the others")
    except UsageError as error:  # diverged, or damaged beyond repair: the other runs go on
        run.skipped, run.exit_code = " ".join(str(error).splitlines()), getattr(error, "exit_code", 2)
        log(f"lfmsl sweep: {run.path.name} failed: {run.skipped}")


INCOMPLETE = 4  # the exit status of a sweep whose tables lack runs another process is still running


def still_running(runs: Sequence[Run]) -> list[Run]:
    """Runs left out of the tables only because another process is running them (not failed)."""
    return [run for run in runs if run.summary is None and run.exit_code == 0 and run.skipped is not None]


def left_out(runs: Sequence[Run]) -> str | None:
    """One line naming every run the tables leave out, and why; None if none is."""
    missing = [run for run in runs if run.summary is None]
    if not missing:
        return None
    names = "; ".join(f"{run.path.name} ({run.skipped or 'not run'})" for run in missing)
    return f"{len(missing)} of {len(runs)} runs are not in the tables: {names}"


def varying(configs: Iterable[Config], ignore: Sequence[str] = ("seed",)) -> list[str]:
    """Options whose value differs between configurations, in Config order."""
    configs = list(configs)
    return [f.name for f in dataclasses.fields(Config)
            if f.name not in ignore and len({getattr(c, f.name) for c in configs}) > 1]


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def without_seed(config: Config) -> Config:
    """What the runs of one configuration over seeds share: the configuration with seed 0."""
    return dataclasses.replace(config, seed=0)


def by_config(runs: Iterable[Run]) -> dict[Config, list[Run]]:
    """Runs grouped over seeds, keyed by `without_seed`, in the order first seen."""
    groups: dict[Config, list[Run]] = {}
    for run in runs:
        groups.setdefault(without_seed(run.config), []).append(run)
    return groups


def aggregate(runs: Sequence[Run], keys: Sequence[str] | None = None) -> list[dict]:
    """One row per configuration up to the seed: mean and std (ddof=1) over seeds of each metric.

    The rows name the options in `keys`, by default those that vary between the runs.
    """
    finished = [r for r in runs if r.summary is not None]
    keys = list(keys or varying([r.config for r in finished]) or ["algorithm"])
    with_target = any(r.config.target_accuracy is not None for r in finished)
    metrics = [m[0] for m in METRICS if with_target or "target" not in m[0]]
    current = [dataclasses.replace(run, summary=current_summary(run)) if run.path.exists() else run for run in finished]
    rows = []
    for group in by_config(current).values():
        row = {k: getattr(group[0].config, k) for k in keys}
        row["seeds"] = len(group)
        for key in metrics:
            values = [r.summary[key] for r in group if r.summary.get(key) is not None]
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(values)
            row[f"{key}_n"] = len(values)
        rows.append(row)
    return rows


def _cell(row: dict, key: str, scale: float, fmt: str) -> str:
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    if mean is None:
        return "not reached" if "target" in key else "-"
    text = f"{fmt.format(mean * scale)} ± {fmt.format(std * scale)}" if row["seeds"] > 1 else fmt.format(mean * scale)
    if row[f"{key}_n"] < row["seeds"]:
        text += f" ({row[f'{key}_n']}/{row['seeds']} seeds)"
    return text


def markdown_table(rows: Sequence[dict], metrics: Sequence[str] | None = None) -> str:
    """The rows as a Markdown table (mean ± std over seeds where there are several)."""
    if not rows:
        return "(no finished runs)\n"
    chosen = [m for m in METRICS if f"{m[0]}_mean" in rows[0] and (metrics is None or m[0] in metrics)]
    keys = [k for k in rows[0] if not any(k.startswith(m[0]) for m in METRICS) and k != "seeds"]
    header = keys + ["seeds"] + [m[1] for m in chosen]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row[k]) for k in keys] + [str(row["seeds"])]
        cells += [_cell(row, key, scale, fmt) for key, _, scale, fmt in chosen]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(rows: Sequence[dict], out: Path) -> None:
    """results.csv (every column) and results.md (readable) in `out`, after removing the
    temporaries of table writes killed earlier (one takes milliseconds, so an old one is a leftover)."""
    out.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out, older_than_s=TABLE_LEFTOVER_AGE_S)
    if rows:
        stream = io.StringIO(newline="")
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
        write_text(out / "results.csv", stream.getvalue())
    write_text(out / "results.md", markdown_table(rows))


def history(run: Run) -> list[dict]:
    """A run's round records with the cost fields computed from its configuration.

    Bytes and simulated latency are static functions of the configuration, so they are recomputed
    rather than read: runs made before the ledger existed, or under another cost model, then
    compare on one footing.
    """
    records = RunDir(run.path).metrics()
    if not records:
        return records
    from lfmsl.costs.run_costs import annotate

    resolved = run.summary["resolved"]
    return annotate(records, run.config, resolved["iterations_per_round"], resolved.get("active_per_iteration"))


def current_summary(run: Run) -> dict:
    """The run's summary with its cost totals recomputed like `history`."""
    from lfmsl.costs.latency import summary_fields

    return {**run.summary, **summary_fields(history(run), run.config.target_accuracy)}


def finished_runs(path: Path) -> list[Run]:
    """The finished runs in `path`, a run folder or a folder of them such as a sweep's (`RunDir.find`).

    A damaged one raises DamagedRun, a one-line error that names the file, rather than being dropped.
    """
    runs = []
    for folder in RunDir.find(path):
        summary = folder.finished()
        if summary is not None:
            runs.append(Run(RunDir.summary_config(summary), folder.path, summary))
    return runs


def sweep_command(args: argparse.Namespace) -> int:
    """`lfmsl sweep`: run the grid, then write the tables (not with --no-tables: one of several sweeps sharing the
    grid, whose tables are written once they all end)."""
    from lfmsl.experiments.runner import log

    configs = grid(vars(args), log)
    options = RunOptions(**values_of(args, RunOptions))
    runs = run_sweep(configs, args.out, options.load_dataset, options, log)
    status = max((run.exit_code for run in runs), default=0)  # a failed run fails the sweep, after the others ran
    if args.no_tables:
        return status
    return max(status, report(runs, args.out, log))


def tables_command(args: argparse.Namespace, log: Callable[[str], None] = print) -> int:
    """The tables of `lfmsl sweep ARGS`'s grid from the runs its folder holds, running none: after several sweeps
    that shared the grid (`lfmsl launch --own-runs`) have ended."""
    runs = [Run(config, Path(args.out) / run_name(config)) for config in grid(vars(args))]
    for run in runs:
        with _failures(run, log):
            run.summary = RunDir(run.path).finished(run.config)
    return report(runs, args.out, log)


def report(runs: Sequence[Run], out: Path, log: Callable[[str], None]) -> int:
    """Write and print the tables of `runs`, name the runs they lack, and return INCOMPLETE where another process
    is still running some of them (0 otherwise)."""
    from lfmsl.core import processes

    rows = aggregate(runs)
    if processes.writes():  # of a distributed sweep's processes, process 0 writes
        write_tables(rows, out)
        log(f"lfmsl sweep: tables in {out / 'results.csv'} and {out / 'results.md'}")
    print(markdown_table(rows), end="")
    missing = left_out(runs)
    if missing:
        log(f"lfmsl sweep: {missing}")
    busy = still_running(runs)
    if busy and all(run.exit_code == 0 for run in runs):  # two sweeps over one grid: the last to end writes them whole
        log(f"lfmsl sweep: {len(busy)} of {len(runs)} runs are still running in another process, so these tables lack "
            "them; run the same command again once it ends (finished runs are not run again)")
        return INCOMPLETE
    return 0
