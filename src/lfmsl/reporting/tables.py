"""The report's Markdown: tables, and estimates written as 'mean ± half-width'."""

from __future__ import annotations

from typing import Sequence

from lfmsl.reporting import stats


def number(x: float, scale: float = 1.0) -> str:
    """`x * scale` for a table: two decimals, or three significant digits where those would mislead."""
    v = x * scale
    return f"{v:.3g}" if abs(v) >= 1000 or (v != 0 and abs(v) < 0.01) else f"{v:.2f}"


def describe(e: stats.Estimate | None, scale: float = 1.0, n_wanted: int | None = None) -> str:
    """'mean ± half-width' (or the mean alone with one seed), and how many seeds if some are missing."""
    if e is None:
        return "-"
    mean = number(e.mean, scale)
    text = mean if e.half_width is None else f"{mean} ± {number(e.half_width, scale)}"
    return text + (f" ({e.n}/{n_wanted} seeds)" if n_wanted and e.n < n_wanted else "")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
