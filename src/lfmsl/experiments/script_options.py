"""The experiment scripts' (scripts/*.py) command line: the options they share, how those become
the configurations they run, and how a script ends.

Each script builds a list of configurations, runs them through the sweep machinery (finished
runs are skipped, so a script can be re-run to redraw its figures), then plots and tabulates
(`lfmsl.experiments.figures`). Their flags are the run's own (`lfmsl.experiments.flags`) with the
script's defaults; `--quick` shrinks everything to a smoke test that takes seconds per run.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Callable, Sequence

from lfmsl.config import Config
from lfmsl.experiments import sweep
from lfmsl.experiments.flags import add_flags, values_of
from lfmsl.experiments.run_options import RunOptions
from lfmsl.experiments.study import SPLIT_ALGORITHMS
from lfmsl.errors import UsageError

SPLIT_BASELINES = SPLIT_ALGORITHMS  # the paper's comparison: what the scripts run by default
QUICK = dict(rounds=1, train_size=120, samples_per_client=None, test_size=200, clients=[3], eval_clients=2,
             target_accuracy=0.3)
SHARED = ("dataset", "algorithm", "clients", "rounds", "train_size", "samples_per_client", "test_size", "seed",
          "eval_clients", "target_accuracy")
LISTS = ("dataset", "algorithm", "clients", "seed")  # a script runs each of their values
RENAMED = {"seed": "seeds"}


def _str_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parser(name: str, description: str, *, datasets: str, rounds: int, train_size: int | None, clients: str,
           test_size: int | None = 2000, algorithms: str = ",".join(SPLIT_BASELINES)) -> argparse.ArgumentParser:
    """The options every script has, with the script's own defaults."""
    p = argparse.ArgumentParser(prog=f"scripts/{name}.py", description=description)
    defaults = dict(dataset=_str_list(datasets), algorithm=_str_list(algorithms),
                    clients=[int(n) for n in _str_list(clients)], rounds=rounds, train_size=train_size,
                    test_size=test_size, seed=[0], eval_clients=4, target_accuracy=0.8)
    add_flags(p, Config, SHARED, lists=LISTS, defaults=defaults, renamed=RENAMED)
    g = p.add_argument_group("input and output")
    g.add_argument("--from-runs", type=Path, nargs="+", default=None, metavar="DIR",
                   help="plot finished run folders (each with summary.json; folders of folders are searched one level "
                        "down) instead of running")
    g.add_argument("--from-clients", type=int, default=None, metavar="N",
                   help="with --from-runs: only the runs with N clients")
    g.add_argument("--runs-dir", type=Path, default=Path("runs") / name,
                   help=f"where the runs go (default: runs/{name})")
    g.add_argument("--out", type=Path, default=Path("docs") / "figures" / name,
                   help=f"where figures and tables go (default: docs/figures/{name})")
    g.add_argument("--quick", action="store_true",
                   help="a tiny configuration (1 round, 120 samples, 3 clients, 200 test samples): a smoke test")
    add_flags(p, RunOptions, ("manual_dir", "data_dir", "runs_per_program"), into=g)
    return p


def parse(p: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, then shrink to the quick configuration where asked."""
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
        args.dataset, args.seeds = args.dataset[:1], args.seeds[:1]
    return args


def base_config(args: argparse.Namespace, **overrides) -> Config:
    """The configuration all of a script's runs share, before what the script varies."""
    if args.samples_per_client:
        sizes = dict(samples_per_client=args.samples_per_client, train_size=None)
    else:
        sizes = dict(train_size=args.train_size)
    values = dict(dataset=args.dataset[0], rounds=args.rounds, test_size=args.test_size, eval_clients=args.eval_clients,
                  **sizes)
    values.update(overrides)
    return Config(**values)


def run_options(args: argparse.Namespace) -> RunOptions:
    """How a script's runs are carried out: its data folders, no progress bars."""
    return RunOptions(**values_of(args, RunOptions), progress=False)


def run(args: argparse.Namespace, configs: Sequence[Config]) -> list[sweep.Run]:
    """Run (or find finished) every configuration under --runs-dir."""
    from lfmsl.experiments.runner import log

    options = run_options(args)
    return sweep.run_sweep(configs, args.runs_dir, options.load_dataset, options, log=log)


def seeds_of(config: Config, seeds: Sequence[int]) -> list[Config]:
    return [dataclasses.replace(config, seed=s) for s in seeds]


def run_folders(paths: Sequence[Path]) -> list[sweep.Run]:
    """Finished runs in the given folders, or in their subfolders (e.g. runs/n100-r5)."""
    found = []
    for path in paths:
        if not path.is_dir():
            raise UsageError(f"--from-runs {path}: no such folder")
        found += sweep.finished_runs(path)
    return found


def curve_runs(args: argparse.Namespace) -> list[sweep.Run]:
    """The runs behind a curve figure: --from-runs, or one run per algorithm and seed at the largest --clients."""
    if args.from_runs:
        return [r for r in run_folders(args.from_runs)
                if r.config.algorithm in args.algorithm and args.from_clients in (None, r.config.clients)]
    base = base_config(args, clients=max(args.clients))
    return run(args, [dataclasses.replace(base, dataset=d, algorithm=a, seed=s)
                      for d in args.dataset for a in args.algorithm for s in args.seeds])


def curves_main(name: str, description: str, x_key: str, xlabel: str, title: str, argv: Sequence[str] | None) -> int:
    """The whole of scripts/convergence.py and scripts/latency.py: runs, figure, report."""
    from lfmsl.experiments.figures import curves_report

    args = parse(parser(name, description, datasets="mnist", rounds=3, train_size=3000, clients="50"), argv)
    path = curves_report(args, curve_runs(args), name, x_key, xlabel, title)
    print(path.read_text())
    return 0


def study_main(argv: Sequence[str] | None, name: str, description: str, sections: Sequence[str],
               scales: Callable[[bool], object], run_study: Callable, write_report: Callable) -> int:
    """The whole of a study script (scripts/reproduce.py, scripts/privacy.py): its sections in order into
    results/<name> (finished runs skipped, interrupted ones resumed), then its report from whatever has finished.
    `scales(quick)` is the study's size; `run_study(scale, results, options, sections, log)`,
    `write_report(scale, results)`."""
    p = argparse.ArgumentParser(prog=f"scripts/{name}.py", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=Path("results") / name,
                   help=f"folder of the study: runs/ and the report (default: results/{name})")
    # --parts too: studies' commands already typed and running use it
    p.add_argument("--sections", "--parts", type=_str_list, default=list(sections),
                   help=f"comma list of sections to run, of {', '.join(sections)} (default: all, in that order)")
    p.add_argument("--quick", action="store_true",
                   help="the same study shrunk to seconds per run (2 or 3 clients, 16 samples each, 2 rounds, 2 seeds)")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: write the report from the runs that have finished")
    add_flags(p, RunOptions, ("manual_dir", "data_dir", "runs_per_program"), into=p)
    args = p.parse_args(argv)
    unknown = [section for section in args.sections if section not in sections]
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(sections)}")
    from lfmsl.experiments.runner import log

    scale = scales(args.quick)
    if not args.report_only:
        run_study(scale, args.results, run_options(args), args.sections, log=log)
    log(f"{name}: report in {write_report(scale, args.results)}")
    return 0


def entry(main: Callable[[Sequence[str] | None], int]) -> int:
    """Run a script's main; a user's error is one line and exit status 2, and Ctrl-C or SIGTERM
    (the run in flight saved, so a re-run resumes it) one line and 130 or 143, as in the CLI."""
    from lfmsl.stopping import exit_status

    return exit_status(lambda: main(None), "", "; run the same command again to continue")
