"""The experiment scripts' (scripts/*.py) reports: each algorithm's label and colour, the settings
line of a report's head, the report itself, and the accuracy curves of convergence.py and latency.py.

What the scripts take on their command lines and how they run is `lfmsl.experiments.script_options`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from lfmsl import algorithms
from lfmsl.experiments import sweep
from lfmsl.io.atomic import write_text

# In registration order, which fixes each one's colour.
LABELS = {name: algorithms.label(name) for name in algorithms.names()}

SETTINGS = ("dataset", "clients", "rounds", "train_size", "samples_per_client", "test_size", "batch_size", "partition",
            "lr", "eval_clients", "latency_profile", "seed")


def settings_line(runs: Sequence[sweep.Run]) -> str:
    """The settings the runs actually used (each option's distinct values), for a report's head."""
    settings = []
    for name in SETTINGS:
        values = {getattr(r.config, name) for r in runs}
        try:
            values = sorted(values)
        except TypeError:  # None beside numbers
            values = sorted(values, key=str)
        shown = ", ".join("all" if v is None else str(v) for v in values)
        settings.append(f"{name.replace('_', ' ')} {shown}")
    from lfmsl.costs.latency import profile_for

    profiles = sorted({str(profile_for(r.config)) for r in runs})
    return "; ".join(settings) + f"; simulated devices and links: {', '.join(profiles)}"


def write_report(out: Path, name: str, title: str, runs: Sequence[sweep.Run],
                 sections: Sequence[tuple[str, str]]) -> Path:
    """`<name>.md`: a title, the settings of `runs`, then (heading, body) sections."""
    out.mkdir(parents=True, exist_ok=True)
    text = [f"# {title}", "", f"Settings: {settings_line(runs)}.", ""]
    for heading, body in sections:
        text += [f"## {heading}", "", body.rstrip(), ""]
    path = out / f"{name}.md"
    write_text(path, "\n".join(text))
    return path


def curves_report(args: argparse.Namespace, runs: Sequence[sweep.Run], name: str, x_key: str, xlabel: str,
                  title: str) -> Path:
    """Test accuracy against `x_key` per algorithm (mean over seeds), and the table of the targets."""
    from lfmsl.costs.latency import summary_fields

    import numpy as np

    args.out.mkdir(parents=True, exist_ok=True)
    sections = []
    for dataset in dict.fromkeys(r.config.dataset for r in runs):
        series, lines = {}, []
        groups = sweep.by_config([r for r in runs if r.config.dataset == dataset])
        # In LABELS' order, so each algorithm has the colour it has in scalability's figure.
        for key, group in sorted(groups.items(), key=lambda item: list(LABELS).index(item[0].algorithm)):
            histories = [sweep.history(r) for r in group]
            length = min(len(h) for h in histories)
            x = np.mean([[rec[x_key] for rec in h[:length]] for h in histories], axis=0)
            y = 100 * np.array([[rec["test_accuracy"] for rec in h[:length]] for h in histories])
            series[LABELS[key.algorithm]] = (list(x), list(y.mean(0)), list(y.std(0)) if len(group) > 1 else None)
            reached = [summary_fields(h, args.target_accuracy) for h in histories]
            hit = [f for f in reached if f["rounds_to_target"] is not None]
            mean = lambda k: float(np.mean([f[k] for f in hit])) if hit else None
            at_end = lambda k: float(np.mean([h[length - 1][k] for h in histories]))
            lines.append((LABELS[key.algorithm], key.clients, len(group), float(y[:, -1].mean()),
                          float(y.max(1).mean()), length, mean("rounds_to_target"), mean("sim_latency_to_target_s"),
                          at_end("sim_latency_s"), at_end("comm_bytes") / 1e6, f"{len(hit)}/{len(group)}"))
        figure = f"{name}_{dataset}.png"
        from lfmsl.io import plots

        plots.line_plot(series, args.out / figure, xlabel, "test accuracy (%)", f"{title} on {dataset}",
                        logx=x_key == "sim_latency_s")
        target = f"{100 * args.target_accuracy:g}%"
        header = ["algorithm", "clients", "seeds", "final acc (%)", "best acc (%)", "rounds", f"rounds to {target}",
                  f"sim. latency to {target} (s)", "sim. latency, all rounds (s)", "comm. (MB)",
                  "seeds reaching target"]
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
