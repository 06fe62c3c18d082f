"""The study report's accuracy curves: one panel per client count, each algorithm's mean over seeds with
its 95 % band, in the same colour in every figure."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from lfmsl.config import Config
from lfmsl.experiments.figures import LABELS
from lfmsl.io import plots
from lfmsl.reporting import stats
from lfmsl.reporting.outcomes import Cells, Outcome

COLOURS = {a: f"C{i}" for i, a in enumerate(LABELS)}  # one colour per algorithm in every figure


def accuracy_panels(cells: Cells, path: Path, ns: Sequence[int], algorithms: Sequence[str],
                    config_of: Callable[[str, int], Config], x_of: Callable[[Outcome], Sequence[float]], xlabel: str,
                    title: str) -> Path:
    """Accuracy curves of the runs `config_of(algorithm, N)`, one panel per N, against `x_of(outcome)`."""
    figure, axes = plots.new_panels(len(ns))
    for ax, n in zip(axes, ns):
        for a in algorithms:
            group = cells.get(config_of(a, n), {})
            if not group:
                continue
            outcomes = list(group.values())
            length = min(len(o.curve) for o in outcomes)
            x = np.mean([list(x_of(o))[:length] for o in outcomes], axis=0)
            y = 100 * np.array([o.curve[:length] for o in outcomes])
            mean = y.mean(0)
            ax.plot(x, mean, marker="o", markersize=3, label=LABELS[a], color=COLOURS[a])
            if len(outcomes) > 1:
                half = stats.t975(len(outcomes) - 1) * y.std(0, ddof=1) / math.sqrt(len(outcomes))
                ax.fill_between(x, mean - half, mean + half, alpha=0.15, color=COLOURS[a])
        if xlabel.startswith("simulated"):
            ax.set_xscale("log")
        ax.set_title(f"N = {n}")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%), 95 % band")
    handles = {label: handle for ax in axes for handle, label in zip(*ax.get_legend_handles_labels())}
    if handles:
        axes[0].legend(handles.values(), handles.keys(), fontsize="small", loc="lower right")
    figure.suptitle(title)
    return plots.save(figure, path)
