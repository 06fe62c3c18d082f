"""Figures written as PNG files: a run's accuracy curve (outputs.py), its reconstructions, and the scripts' and
reports' lines, bars and image grids.

Every figure has labelled axes with units, a title and a legend, is drawn without a display and is written
atomically, as every other file of a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

Series = tuple[Sequence[float], Sequence[float], Sequence[float] | None]  # x, y, spread (or None)


def _figure(width: float, height: float):
    """A figure outside pyplot: drawing files never switches the caller's backend (a notebook's
    inline plots keep working after `lfmsl.run`) and needs no display."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def new_axes(width: float = 6.4):
    """A (figure, axes) pair of the project's figure size, drawn without a display."""
    figure = _figure(width, 4.2)
    return figure, figure.subplots()


def new_panels(count: int, sharey: bool = True):
    """A figure of `count` side-by-side panels, sharing the y axis unless told: (figure, list of axes)."""
    figure = _figure(4.2 * count, 3.8)
    axes = figure.subplots(1, count, squeeze=False, sharey=sharey)
    return figure, list(axes[0])


def save(figure, path: Path) -> Path:
    """Write `figure` as a PNG at `path`."""
    import io

    from lfmsl.io.atomic import write_bytes

    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=120)
    write_bytes(path, png.getvalue())  # a reader never sees half a picture
    return Path(path)


def line_plot(series: Mapping[str, Series], path: Path, xlabel: str, ylabel: str, title: str,
              logx: bool = False, xticks: Sequence[float] | None = None) -> Path:
    """One line per label, with error bars where a spread is given."""
    figure, axes = new_axes()
    for label, (x, y, spread) in series.items():
        axes.errorbar(x, y, yerr=spread, marker="o", markersize=4, capsize=3, label=label)
    if logx:
        axes.set_xscale("log")
    if xticks is not None:
        axes.set_xticks(list(xticks), [f"{t:g}" for t in xticks])
        axes.minorticks_off()
    elif all(float(v).is_integer() for x, _, _ in series.values() for v in x):  # rounds, counts
        from matplotlib.ticker import MaxNLocator

        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return save(figure, path)


def bar_plot(labels: Sequence[str], values: Sequence[float], path: Path, ylabel: str, title: str,
             spread: Sequence[float] | None = None, legend: str = "final test accuracy") -> Path:
    """One bar per label (e.g. each ablation setting)."""
    figure, axes = new_axes(max(6.4, 0.8 * len(labels)))
    axes.bar(range(len(labels)), values, yerr=spread, capsize=3, label=legend)
    axes.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    axes.set_xlabel("setting")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    low = min(values) if values else 0.0
    axes.set_ylim(max(0.0, low - 10.0), None)
    axes.grid(alpha=0.3, axis="y")
    axes.legend(fontsize="small")
    return save(figure, path)


def image_grid(rows: Mapping[str, Sequence], path: Path, title: str) -> Path:
    """Images in rows, each row labelled (grey for one channel, values clipped to [0, 1]): a person judges a
    reconstruction by looking at it."""
    import numpy as np

    names = list(rows)
    columns = max(len(images) for images in rows.values())
    figure = _figure(1.0 * columns + 1.6, 1.05 * len(names) + 0.6)
    for row, name in enumerate(names):
        for column, image in enumerate(rows[name]):
            axes = figure.add_subplot(len(names), columns, row * columns + column + 1)
            image = np.clip(np.asarray(image, np.float32), 0, 1)
            axes.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
            axes.set_xticks([])
            axes.set_yticks([])
            if column == 0:
                axes.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    figure.suptitle(title)
    return save(figure, path)
