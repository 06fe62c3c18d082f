"""Statistics over seeds that decide a claim: means, 95 % confidence intervals, paired differences.

Seeds fix the partition, the batches and the initial model, so two algorithms run with the same
seed form a pair; the paired difference removes the variation they share. With three seeds the
Student t quantile is 4.30, so only differences large against their spread are decided.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

# Two-sided 95 % Student t quantiles t_{0.975, df} for df = 1..30 (standard tables).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
_Z975 = 1.960

SUPPORTED, CONTRADICTED, UNDECIDED = "supported", "contradicted", "undecided"


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with `df` degrees of freedom (the normal's beyond 30)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else _Z975


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its sample standard deviation and 95 % confidence interval."""

    mean: float
    std: float | None  # None with one value
    n: int

    @property
    def half_width(self) -> float | None:
        if self.n < 2:
            return None
        return t975(self.n - 1) * self.std / math.sqrt(self.n)

    @property
    def interval(self) -> tuple[float, float] | None:
        h = self.half_width
        return None if h is None else (self.mean - h, self.mean + h)


def estimate(values: Sequence[float]) -> Estimate | None:
    """Mean, std (ddof 1) and n of the values; None when there are none."""
    values = [float(v) for v in values]
    if not values:
        return None
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return Estimate(mean, std, len(values))


def paired_difference(ours: dict, theirs: dict) -> Estimate | None:
    """The estimate of ours[seed] - theirs[seed] over the seeds both have."""
    seeds = sorted(set(ours) & set(theirs))
    return estimate([ours[s] - theirs[s] for s in seeds])


def verdict(difference: Estimate | None, direction: int = 1) -> str:
    """SUPPORTED where the 95 % interval excludes zero in `direction` (+1: ours larger is the
    claim, -1: ours smaller), CONTRADICTED where it excludes zero the other way, else UNDECIDED."""
    if difference is None or difference.interval is None:
        return UNDECIDED
    low, high = difference.interval
    if low > 0:
        return SUPPORTED if direction > 0 else CONTRADICTED
    if high < 0:
        return SUPPORTED if direction < 0 else CONTRADICTED
    return UNDECIDED
