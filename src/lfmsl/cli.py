"""The command line: `lfmsl run` and `lfmsl sweep` (also `python -m lfmsl ...`).

Their option flags are generated from the declarations on `Config` and `RunOptions`
(`lfmsl.experiments.flags`); only the commands' own flags (--out, --resume, ...) are written here.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Sequence

from lfmsl.config import Config
from lfmsl.errors import UsageError
from lfmsl.stopping import exit_status

_NOT_GIVEN = object()  # the default of every option when only the options given are wanted


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line saying what to do, not a usage dump, and no
    abbreviated flags: in a sweep a typo must not silently become another option."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _folder(text: str) -> Path:
    """An argparse type: a non-empty path (an empty --out would write into the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder name, got an empty one")
    return Path(text)


def build_parser(explicit_only: bool = False) -> argparse.ArgumentParser:
    """The parser of every command; `explicit_only` leaves out the options not given."""
    from lfmsl.experiments.flags import add_flags
    from lfmsl.experiments.run_options import IO, RunOptions

    parser = _Parser(prog="lfmsl", description="Simulate parallel split learning: LocFedMix-SL and its baselines.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = commands.add_parser("run", help="run one simulation",
                              description="Run one simulation and write its metrics, summary and plot.")
    add_flags(run, Config)
    if explicit_only:
        run.set_defaults(**dict.fromkeys(Config.__dataclass_fields__, _NOT_GIVEN))
    g = run.add_argument_group(IO)
    g.add_argument("--out", type=_folder, default=None, metavar="DIR",
                   help="output folder (default: a new folder under runs/)")
    g.add_argument("--resume", type=_folder, default=None, metavar="DIR",
                   help="continue the stopped run in DIR with the configuration it was started with; options given as "
                        "well must match it, except a larger --rounds, which extends the run")
    add_flags(run, RunOptions, ("checkpoint_every", "manual_dir", "data_dir", "progress", "allow_divergence",
                                "profile"), into=g)
    g.add_argument("--distributed", action="store_true",
                   help="join jax.distributed first (one process per host of a TPU pod slice or GPU cluster; see "
                        "docs/SCALING.md)")
    sweep = commands.add_parser(
        "sweep", help="run a grid of simulations and tabulate them",
        description="Run every combination of the comma-separated option values (e.g. --algorithm psl,locfedmix "
                    "--clients 10,50 --seed 0,1), one folder per run, skipping runs already finished, then write "
                    "results.csv and results.md with the mean and std over seeds.")
    add_flags(sweep, Config, lists=True)
    g = sweep.add_argument_group(IO)
    g.add_argument("--out", type=_folder, required=True, metavar="DIR",
                   help="folder of the sweep: one subfolder per run, and the tables")
    add_flags(sweep, RunOptions, ("manual_dir", "data_dir", "allow_divergence", "runs_per_program"), into=g)
    g.add_argument("--progress", action="store_true", help="a progress bar per run (default: one line per run)")
    g.add_argument("--distributed", action="store_true",
                   help="join jax.distributed first; every process takes part in each run (docs/SCALING.md)")
    g.add_argument("--no-tables", action="store_true",
                   help="run the grid's runs but write no tables: for one of several sweeps that share the grid (as "
                        "'lfmsl launch --own-runs' starts them), whose tables are written once all have ended")
    launch = commands.add_parser(
        "launch", help="run one command as several processes on this machine, joined by jax.distributed (or share a "
                       "sweep's runs out among them)",
        description="Start N processes of 'lfmsl run' or 'lfmsl sweep' (the command after '--') as one run: a "
                    "coordinator on a free local port, and on the CPU --devices-per-process devices each. Process 0 "
                    "alone writes the run folder; the exit status is the worst of the processes'. With --own-runs a "
                    "sweep's processes run runs of their own instead.")
    launch.add_argument("--processes", type=int, required=True, metavar="N", help="how many processes")
    launch.add_argument("--devices-per-process", type=int, default=None, metavar="D",
                        help="CPU devices each process makes (XLA's forced host device count; default: one)")
    launch.add_argument("--own-runs", action="store_true",
                        help="for a sweep: each process takes runs of the grid of its own, on its own devices, instead "
                             "of every process taking part in each run (no jax.distributed); the tables are written "
                             "once all have ended")
    launch.add_argument("arguments", nargs=argparse.REMAINDER, metavar="-- run|sweep ARGS",
                        help="the lfmsl command each process runs")
    return parser


def run_config(args: argparse.Namespace, argv: Sequence[str] | None) -> Config:
    """`lfmsl run`'s configuration: the flags, or with --resume the run's own with the flags given on top."""
    from lfmsl.experiments.flags import values_of

    if args.resume is None:
        return Config(**values_of(args, Config))
    from lfmsl.io.rundir import CONFIG_FILE, RunDir

    if args.out is not None and args.out.resolve() != args.resume.resolve():
        raise UsageError("--resume DIR continues the run in DIR and writes there; leave out --out")
    folder = RunDir(args.resume)
    stored = folder.config()
    if stored is None:
        found = folder.run_files()
        if found:  # another run's leftovers: --out there is refused too, so suggest neither
            raise folder.not_resumable(found)
        raise UsageError(f"{args.resume} holds no run to resume (no {CONFIG_FILE}); start one with --out {args.resume}")
    given = build_parser(explicit_only=True).parse_args(sys.argv[1:] if argv is None else argv)
    given_values = {name: value for name, value in values_of(given, Config).items() if value is not _NOT_GIVEN}
    return dataclasses.replace(stored, **given_values)


def main(argv: Sequence[str] | None = None) -> int:
    return exit_status(lambda: _dispatch(argv), "lfmsl: ")


def _dispatch(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        raise UsageError("say what to do: 'lfmsl run', 'lfmsl sweep' or 'lfmsl launch' (see 'lfmsl --help')")
    if args.command == "launch":
        from lfmsl.launch import launch

        return launch(args.processes, args.devices_per_process, args.arguments, own_runs=args.own_runs,
                      parse=parser.parse_args)
    if args.distributed:  # before JAX touches a device
        return _distributed(args, argv)
    return _command(args, argv)


def _distributed(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """The command as one process of several. Where another process is lost, this one says so in one line and ends
    at once: JAX would otherwise wait for it at exit, then abort with its own report."""
    import os

    from lfmsl.core import processes

    processes.initialize()
    try:
        return _command(args, argv)
    except Exception as error:  # noqa: BLE001 - anything else is re-raised as it was
        lost = processes.lost_contact(error)
        if lost is None:
            raise
        folder = args.resume or args.out
        print(f"lfmsl: error: {lost}; the run continues from its last checkpoint when the same processes start "
              f"again with --resume {folder}" if args.command == "run" else
              f"lfmsl: error: {lost}; run the same command again to continue the sweep", file=sys.stderr, flush=True)
        os._exit(processes.LOST_EXIT)


def _command(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    if args.command == "sweep":
        from lfmsl.experiments.sweep import sweep_command

        return sweep_command(args)
    config = run_config(args, argv)
    from lfmsl.experiments.flags import values_of
    from lfmsl.experiments.run_options import RunOptions
    from lfmsl.experiments.runner import run

    options = RunOptions(**values_of(args, RunOptions))
    run(config, args.resume or args.out, resume=args.resume is not None, options=options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
