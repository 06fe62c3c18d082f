"""What each finished run of the study says about the claims, from its run folder alone.

Per run: the final test accuracy; the area under the accuracy curve (the mean accuracy over the
rounds, so a run that gets there sooner scores higher); the rounds and the simulated seconds to
the regime's target accuracy. A run that never reaches the target counts as reaching it one
round after its last, a lower bound that favours it.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable

import numpy as np

from lfmsl.config import Config
from lfmsl.experiments import sweep

TARGETS = {"iid": 0.80, "non_iid": 0.75, "sgd": 0.70}  # fixed before the study's results were read


def target_for(config: Config) -> float:
    """The regime's target accuracy: Adam IID 80 %, label skew 75 %, SGD 70 %."""
    if config.optimizer == "sgd":
        return TARGETS["sgd"]
    return TARGETS["iid"] if config.partition == "iid" else TARGETS["non_iid"]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one finished run says about the claims."""

    curve: tuple[float, ...]  # test accuracy after each round
    latency: tuple[float, ...]  # cumulative simulated seconds after each round
    update_ratio: float  # mean over rounds
    client_drift: float  # at the last round
    target: float

    @property
    def final(self) -> float:
        return self.curve[-1]

    @property
    def auc(self) -> float:
        return float(np.mean(self.curve))

    @property
    def reached(self) -> bool:
        return max(self.curve) >= self.target

    @property
    def rounds_to_target(self) -> float:
        hit = [r for r, a in enumerate(self.curve, 1) if a >= self.target]
        return float(hit[0]) if hit else float(len(self.curve) + 1)

    @property
    def latency_to_target(self) -> float:
        r = int(self.rounds_to_target)
        if r <= len(self.latency):
            return self.latency[r - 1]
        return self.latency[-1] * r / len(self.latency)  # one more round of the same length: a lower bound


def outcome(run: sweep.Run) -> Outcome:
    records = sweep.history(run)  # costs recomputed with the current ledger and latency model
    ratios = [r["update_ratio"] for r in records if "update_ratio" in r]
    return Outcome(tuple(r["test_accuracy"] for r in records), tuple(r["sim_latency_s"] for r in records),
                   float(np.mean(ratios)) if ratios else math.nan, float(records[-1].get("client_drift", math.nan)),
                   target_for(run.config))


Cells = dict[Config, dict[int, Outcome]]  # a configuration with seed 0 -> {seed: outcome}


def load_cells(runs_dir: Path) -> Cells:
    """Every finished run under `runs_dir`, grouped by configuration over seeds."""
    if not Path(runs_dir).is_dir():
        return {}
    groups = sweep.by_config(sweep.finished_runs(runs_dir))
    return {key: {run.config.seed: outcome(run) for run in group} for key, group in groups.items()}


def by_seed(cells: Cells, config: Config) -> dict[int, Outcome]:
    """The outcomes of `config` over its seeds ({} if none has finished)."""
    return cells.get(sweep.without_seed(config), {})


def values(cells: Cells, config: Config, metric: Callable[[Outcome], float]) -> dict[int, float]:
    return {seed: metric(o) for seed, o in by_seed(cells, config).items()}
