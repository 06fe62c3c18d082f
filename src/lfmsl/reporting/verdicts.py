"""The study's comparisons: ours minus a baseline on one metric, paired by seed, and the verdict on the claim."""

from __future__ import annotations

from lfmsl.config import Config
from lfmsl.reporting import stats
from lfmsl.reporting.outcomes import Cells, by_seed
from lfmsl.reporting.tables import number

METRICS = {  # name -> (per-run value, scale for display, unit, claimed direction of ours minus theirs)
    "final accuracy": (lambda o: o.final, 100.0, "points", 1),
    "area under the accuracy curve": (lambda o: o.auc, 100.0, "points", 1),
    "rounds to target": (lambda o: o.rounds_to_target, 1.0, "rounds", -1),
    "simulated seconds to target": (lambda o: o.latency_to_target, 1.0, "s", -1),
}

NEITHER = "neither reaches the target"


def comparison(cells: Cells, ours: Config, theirs: Config, metric: str) -> tuple[stats.Estimate | None, str]:
    """Ours minus theirs paired by seed, and the verdict. A time to the target is compared only on
    the seeds where at least one of the two reaches it: where neither does, it says nothing."""
    value, _, _, direction = METRICS[metric]
    a, b = (by_seed(cells, c) for c in (ours, theirs))
    seeds = [s for s in set(a) & set(b) if not metric.endswith("to target") or a[s].reached or b[s].reached]
    d = stats.paired_difference({s: value(a[s]) for s in seeds}, {s: value(b[s]) for s in seeds})
    if d is None and set(a) & set(b):
        return None, NEITHER
    return d, stats.verdict(d, direction)


def verdict_cell(d: stats.Estimate | None, verdict: str, scale: float) -> str:
    """A table cell: the difference, its 95 % interval and the verdict, or why there is none."""
    if d is None:
        return verdict if verdict == NEITHER else "no runs yet"
    if d.interval is None:
        return f"{number(d.mean, scale)} (1 seed): {verdict}"
    low, high = d.interval
    return f"{number(d.mean, scale)} [{number(low, scale)}, {number(high, scale)}]: **{verdict}**"
