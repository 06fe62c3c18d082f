"""The privacy study: what the server can rebuild of the clients' inputs under each algorithm, and what the
defences cost. Which runs it is made of, and running them.

Fashion-MNIST on the reproduction study's axis (K = 300 samples per client, 10 rounds, seeds 0, 1, 2), leakage
measured after rounds 1, 5 and 10 (--privacy-every 5) with one attack budget for every run. The sections, cheapest
first, so an interrupted study has its small-N answers first:
  (a) every split algorithm at N = 10, then (a100) at N = 100;
  (b) LocFedMix-SL with --loc-weight 0, 0.1 and 1, and with its decoders kept local, at N = 10;
  (c) the defences for PSL and LocFedMix-SL at N = 10: NoPeek and Gaussian noise, three strengths each;
  (d) the cut: allconv with a shallow (1 block) and a deep (4 blocks) client segment, N = 10.
Every run lives in `<results>/runs/<run name>` (through `lfmsl.experiments.sweep`): a re-run skips what has
finished and resumes what was interrupted. `Scale.quick()` is the same study shrunk to seconds, for the tests.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

from lfmsl.algorithms import without_inert
from lfmsl.config import Config
from lfmsl.experiments import sweep
from lfmsl.experiments.run_options import RunOptions

SPLIT_ALGORITHMS = ("sl", "psl", "sflv1", "sflv2", "locsplitfed", "locfedmix", "sglr", "mix2sfl")
OURS = "locfedmix"  # the algorithm every other is compared with, paired by seed
DEFENDED = ("psl", OURS)


@dataclasses.dataclass(frozen=True)
class Scale:
    """How large the study is: the full one, or a tiny one with the same structure."""

    samples_per_client: int = 300
    batch_size: int = 32
    rounds: int = 10
    privacy_every: int = 5
    seeds: tuple[int, ...] = (0, 1, 2)
    clients: int = 10
    clients_large: int = 100
    algorithms: tuple[str, ...] = SPLIT_ALGORITHMS
    loc_weights: tuple[float, ...] = (0.0, 0.1, 1.0)
    nopeek_weights: tuple[float, ...] = (0.1, 1.0, 5.0)
    noise: tuple[float, ...] = (0.1, 0.5, 2.0)
    cut_model: str = "allconv"
    cuts: tuple[int, ...] = (1, 4)
    aux_size: int = 1000
    attack_steps: int = 300
    test_size: int | None = None

    @classmethod
    def quick(cls) -> "Scale":
        return cls(samples_per_client=16, batch_size=8, rounds=2, privacy_every=1, seeds=(0, 1), clients=2,
                   clients_large=3, algorithms=("psl", "locfedmix"), loc_weights=(0.0, 1.0), nopeek_weights=(1.0,),
                   noise=(0.5,), cuts=(1, 4), aux_size=32, attack_steps=5, test_size=50)


def base(scale: Scale, **values) -> Config:
    return Config(dataset="fashion_mnist", samples_per_client=scale.samples_per_client, batch_size=scale.batch_size,
                  rounds=scale.rounds, test_size=scale.test_size, privacy_every=scale.privacy_every,
                  aux_size=scale.aux_size, attack_steps=scale.attack_steps, **values)


def _seeded(configs: Sequence[Config], scale: Scale) -> list[Config]:
    return [dataclasses.replace(without_inert(c), seed=s) for c in configs for s in scale.seeds]


def algorithms(scale: Scale, clients: int) -> list[Config]:
    """(a) Every split algorithm, each attacked by every attack its server can run."""
    return _seeded([base(scale, algorithm=a, clients=clients) for a in scale.algorithms], scale)


def locfedmix_variants(scale: Scale) -> list[Config]:
    """(b) LocFedMix-SL's local regulariser at three weights, and its decoders kept local."""
    locfedmix = base(scale, algorithm=OURS, clients=scale.clients)
    return _seeded([dataclasses.replace(locfedmix, loc_weight=w) for w in scale.loc_weights]
                   + [dataclasses.replace(locfedmix, average_decoders=False)], scale)


def defences(scale: Scale) -> list[Config]:
    """(c) NoPeek and smashed-data noise at three strengths each, for PSL and LocFedMix-SL."""
    configs = []
    for a in DEFENDED:
        plain = base(scale, algorithm=a, clients=scale.clients)
        configs += [dataclasses.replace(plain, nopeek_weight=w) for w in scale.nopeek_weights]
        configs += [dataclasses.replace(plain, smash_noise=s) for s in scale.noise]
    return _seeded(configs, scale)


def cut_depth(scale: Scale) -> list[Config]:
    """(d) A shallow and a deep client segment of allconv, for PSL and LocFedMix-SL."""
    return _seeded([base(scale, algorithm=a, clients=scale.clients, model=scale.cut_model, cut=c)
                    for c in scale.cuts for a in DEFENDED], scale)


SECTIONS = ("a", "b", "c", "d", "a100")


def configs_of(scale: Scale, section: str) -> list[Config]:
    return {"a": lambda: algorithms(scale, scale.clients), "a100": lambda: algorithms(scale, scale.clients_large),
            "b": lambda: locfedmix_variants(scale), "c": lambda: defences(scale),
            "d": lambda: cut_depth(scale)}[section]()


def run_study(scale: Scale, results: Path, options: RunOptions, sections: Sequence[str] = SECTIONS,
              log: Callable[[str], None] = print) -> dict[str, list[sweep.Run]]:
    """Run (or find finished) the sections in order, as `options` says (its data folders; its --runs-per-program
    groups each cell's seeds); returns each section's runs."""
    runs_dir = Path(results) / "runs"
    return {section: sweep.run_sweep(configs_of(scale, section), runs_dir, options.load_dataset, options,
                                      log=log) for section in sections}
