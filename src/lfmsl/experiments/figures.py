"""What the experiment scripts (scripts/*.py) share: their options, the runs, the reports.

Each script builds a list of configurations, runs them through the sweep machinery (finished
runs are skipped, so a script can be re-run to redraw its figures), then plots and tabulates.
`--quick` shrinks everything to a smoke test that takes seconds per run.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Callable, Sequence

from lfmsl import algorithms

from lfmsl.experiments import sweep
from lfmsl.config import Config
from lfmsl.io.atomic import write_text
from lfmsl.errors import UsageError

SPLIT_BASELINES = ("sl", "psl", "sflv1", "sflv2", "locsplitfed", "locfedmix")  # the paper's comparison: what the scripts run by default
LABELS = {name: algorithms.label(name) for name in algorithms.names()}  # in registration order, which fixes each one's colour
QUICK = dict(rounds=1, train_size=120, samples_per_client=None, test_size=200, clients=[3], eval_clients=2, target_accuracy=0.3)


def int_list(text: str) -> list[int]:
    """A comma list of whole numbers, for argparse: a bad item is a one-line usage error."""
    try:
        return [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of whole numbers such as 10,50,100, got {text!r}") from None


def _str_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parser(name: str, description: str, *, datasets: str, rounds: int, train_size: int | None, clients: str, test_size: int | None = 2000,
           algorithms: str = ",".join(SPLIT_BASELINES)) -> argparse.ArgumentParser:
    """The options every script has, with the script's own defaults."""
    p = argparse.ArgumentParser(prog=f"scripts/{name}.py", description=description)
    p.add_argument("--dataset", type=_str_list, default=_str_list(datasets), help=f"comma list of datasets (default: {datasets})")
    p.add_argument("--algorithm", type=_str_list, default=_str_list(algorithms), help=f"comma list of algorithms (default: {algorithms})")
    p.add_argument("--clients", type=int_list, default=int_list(clients), help=f"comma list of client counts (default: {clients})")
    p.add_argument("--rounds", type=int, default=rounds, help=f"rounds per run (default: {rounds})")
    p.add_argument("--train-size", type=int, default=train_size, help=f"training samples, stratified subset (default: {train_size or 'all'})")
    p.add_argument("--samples-per-client", type=int, default=None, metavar="K",
                   help="each client holds K samples, so the data grows with the clients (replaces --train-size)")
    p.add_argument("--test-size", type=int, default=test_size, help=f"test samples scored, stratified subset (default: {test_size or 'all'})")
    p.add_argument("--seeds", type=int_list, default=[0], help="comma list of seeds (default: 0)")
    p.add_argument("--eval-clients", type=int, default=4, help="clients scored where clients keep their own models (default: 4)")
    p.add_argument("--target-accuracy", type=float, default=0.8, help="target test accuracy, a fraction (default: 0.8; --quick: 0.3)")
    p.add_argument("--from-runs", type=Path, nargs="+", default=None, metavar="DIR",
                   help="plot finished run folders (each with summary.json; folders of folders are searched one level down) instead of running")
    p.add_argument("--from-clients", type=int, default=None, metavar="N", help="with --from-runs: only the runs with N clients")
    p.add_argument("--runs-dir", type=Path, default=Path("runs") / name, help=f"where the runs go (default: runs/{name})")
    p.add_argument("--out", type=Path, default=Path("docs") / "figures" / name, help=f"where figures and tables go (default: docs/figures/{name})")
    p.add_argument("--quick", action="store_true", help="a tiny configuration (1 round, 120 samples, 3 clients, 200 test samples): a smoke test")
    p.add_argument("--manual-dir", default=None, help="original dataset files for tfds without internet (default: $LFMSL_MANUAL_DIR)")
    p.add_argument("--data-dir", default=None, help="tfds data folder (default: $LFMSL_DATA_DIR)")
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
    sizes = dict(samples_per_client=args.samples_per_client, train_size=None) if args.samples_per_client else dict(train_size=args.train_size)
    values = dict(dataset=args.dataset[0], rounds=args.rounds, test_size=args.test_size, eval_clients=args.eval_clients, **sizes)
    values.update(overrides)
    return Config(**values)


def loader(args: argparse.Namespace) -> Callable[[str], object]:
    from lfmsl.io.data import load_dataset

    return lambda name: load_dataset(name, manual_dir=args.manual_dir, data_dir=args.data_dir)


def run(args: argparse.Namespace, configs: Sequence[Config]) -> list[sweep.Run]:
    """Run (or find finished) every configuration under --runs-dir."""
    from lfmsl.experiments.runner import log

    return sweep.run_sweep(configs, args.runs_dir, loader(args), progress=False, log=log)


def seeds_of(config: Config, seeds: Sequence[int]) -> list[Config]:
    return [dataclasses.replace(config, seed=s) for s in seeds]


SETTINGS = ("dataset", "clients", "rounds", "train_size", "samples_per_client", "test_size", "batch_size", "partition", "lr", "eval_clients",
            "latency_profile", "seed")


def settings_line(runs: Sequence[sweep.Run]) -> str:
    """The settings the runs actually used (each option's distinct values), for a report's head."""
    parts = []
    for name in SETTINGS:
        values = {getattr(r.config, name) for r in runs}
        try:
            values = sorted(values)
        except TypeError:  # None beside numbers
            values = sorted(values, key=str)
        shown = ", ".join("all" if v is None else str(v) for v in values)
        parts.append(f"{name.replace('_', ' ')} {shown}")
    from lfmsl.costs.latency import profile_for

    profiles = sorted({str(profile_for(r.config)) for r in runs})
    return "; ".join(parts) + f"; simulated devices and links: {', '.join(profiles)}"


def write_report(out: Path, name: str, title: str, runs: Sequence[sweep.Run], sections: Sequence[tuple[str, str]]) -> Path:
    """`<name>.md`: a title, the settings of `runs`, then (heading, body) sections."""
    out.mkdir(parents=True, exist_ok=True)
    text = [f"# {title}", "", f"Settings: {settings_line(runs)}.", ""]
    for heading, body in sections:
        text += [f"## {heading}", "", body.rstrip(), ""]
    path = out / f"{name}.md"
    write_text(path, "\n".join(text))
    return path


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
    return run([dataclasses.replace(base, dataset=d, algorithm=a, seed=s) for d in args.dataset for a in args.algorithm for s in args.seeds])


def curves_report(args: argparse.Namespace, runs: Sequence[sweep.Run], name: str, x_key: str, xlabel: str, title: str) -> Path:
    """Test accuracy against `x_key` per algorithm (mean over seeds), and the table of the targets."""
    from lfmsl.costs.latency import summary_fields

    import numpy as np

    args.out.mkdir(parents=True, exist_ok=True)
    sections = []
    for dataset in dict.fromkeys(r.config.dataset for r in runs):
        series, lines = {}, []
        groups = sweep.by_config([r for r in runs if r.config.dataset == dataset])
        for key, group in sorted(groups.items(), key=lambda item: list(LABELS).index(item[0].algorithm)):  # same colours as scalability
            histories = [sweep.history(r) for r in group]
            length = min(len(h) for h in histories)
            x = np.mean([[rec[x_key] for rec in h[:length]] for h in histories], axis=0)
            y = 100 * np.array([[rec["test_accuracy"] for rec in h[:length]] for h in histories])
            series[LABELS[key.algorithm]] = (list(x), list(y.mean(0)), list(y.std(0)) if len(group) > 1 else None)
            reached = [summary_fields(h, args.target_accuracy) for h in histories]
            hit = [f for f in reached if f["rounds_to_target"] is not None]
            mean = lambda k: float(np.mean([f[k] for f in hit])) if hit else None
            lines.append((LABELS[key.algorithm], key.clients, len(group), float(y[:, -1].mean()), float(y.max(1).mean()), length,
                          mean("rounds_to_target"), mean("sim_latency_to_target_s"), float(np.mean([h[length - 1]["sim_latency_s"] for h in histories])),
                          float(np.mean([h[length - 1]["comm_bytes"] for h in histories])) / 1e6, f"{len(hit)}/{len(group)}"))
        figure = f"{name}_{dataset}.png"
        from lfmsl.io import plots

        plots.line_plot(series, args.out / figure, xlabel, "test accuracy (%)", f"{title} on {dataset}", logx=x_key == "sim_latency_s")
        header = ["algorithm", "clients", "seeds", "final acc (%)", "best acc (%)", "rounds", f"rounds to {100 * args.target_accuracy:g}%",
                  f"sim. latency to {100 * args.target_accuracy:g}% (s)", "sim. latency, all rounds (s)", "comm. (MB)", "seeds reaching target"]
        table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for line in lines:
            table.append("| " + " | ".join(_fmt(v) for v in line) + " |")
        sections.append((dataset, "\n".join(table) + f"\n\n![{name} on {dataset}]({figure})\n"))
    return write_report(args.out, name, title, runs, sections)


def _fmt(value) -> str:
    if value is None:
        return "not reached"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def curves_main(name: str, description: str, x_key: str, xlabel: str, title: str, argv: Sequence[str] | None) -> int:
    """The whole of scripts/convergence.py and scripts/latency.py: runs, figure, report."""
    args = parse(parser(name, description, datasets="mnist", rounds=3, train_size=3000, clients="50"), argv)
    path = curves_report(args, curve_runs(args), name, x_key, xlabel, title)
    print(path.read_text())
    return 0


def study_main(argv: Sequence[str] | None, name: str, description: str, parts: Sequence[str], scales: Callable[[bool], object],
               run_study: Callable, write_report: Callable) -> int:
    """The whole of a study script (scripts/reproduce.py, scripts/privacy.py): its parts in order into
    results/<name> (finished runs skipped, interrupted ones resumed), then its report from whatever has finished.
    `scales(quick)` is the study's size; `run_study(scale, results, load, parts, log)`, `write_report(scale, results)`."""
    p = argparse.ArgumentParser(prog=f"scripts/{name}.py", description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=Path("results") / name, help=f"folder of the study: runs/ and the report (default: results/{name})")
    p.add_argument("--parts", type=lambda t: [x.strip() for x in t.split(",") if x.strip()], default=list(parts),
                   help=f"comma list of parts to run, of {', '.join(parts)} (default: all, in that order)")
    p.add_argument("--quick", action="store_true", help="the same study shrunk to seconds per run (2 or 3 clients, 16 samples each, 2 rounds, 2 seeds)")
    p.add_argument("--report-only", action="store_true", help="run nothing: write the report from the runs that have finished")
    p.add_argument("--manual-dir", default=None, help="original dataset files for tfds without internet (default: $LFMSL_MANUAL_DIR)")
    p.add_argument("--data-dir", default=None, help="tfds data folder (default: $LFMSL_DATA_DIR)")
    args = p.parse_args(argv)
    unknown = [part for part in args.parts if part not in parts]
    if unknown:
        p.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(parts)}")
    from lfmsl.experiments.runner import log

    scale = scales(args.quick)
    if not args.report_only:
        run_study(scale, args.results, loader(args), args.parts, log=log)
    log(f"{name}: report in {write_report(scale, args.results)}")
    return 0


def entry(main: Callable[[Sequence[str] | None], int]) -> int:
    """Run a script's main; a user's error is one line and exit status 2, and Ctrl-C or SIGTERM
    (the run in flight saved, so a re-run resumes it) one line and 130 or 143, as in the CLI."""
    from lfmsl.stopping import exit_status

    return exit_status(lambda: main(None), "", "; run the same command again to continue")
