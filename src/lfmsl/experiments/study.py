"""The reproduction study of LocFedMix-SL's claims: which runs it is made of, and running them.

Every section, (a) to (e), is a list of configurations on Fashion-MNIST where each client holds K samples
(`--samples-per-client`), so more clients bring more data, as in the authors' setup. All runs
live in one folder, `<results>/runs/<run name>`, so a configuration shared by two sections runs
once, and a re-run skips what has finished and resumes what was interrupted (through
`lfmsl.experiments.sweep`). `Scale.quick()` is the same study shrunk to seconds, for the test suite.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Callable, Sequence

from lfmsl.experiments import sweep
from lfmsl.algorithms import exchange, names, without_inert
from lfmsl.config import Config
from lfmsl.experiments.run_options import RunOptions

SPLIT_ALGORITHMS = names(role="paper")  # the paper's comparison, in the order the algorithms list themselves
LATER_ALGORITHMS = names(role="later")
# the imbalance is between a server and clients that train side by side
IMBALANCE_ALGORITHMS = tuple(a for a in SPLIT_ALGORITHMS if exchange(Config(algorithm=a)).schedule == "parallel")
SGD_RATES = (0.01, 0.03, 0.1)
NON_IID = "dirichlet:0.3"


@dataclasses.dataclass(frozen=True)
class Scale:
    """How large the study is: the full one, or a tiny one with the same structure."""

    samples_per_client: int = 300
    batch_size: int = 32
    rounds: int = 10
    seeds: tuple[int, ...] = (0, 1, 2)
    clients: tuple[int, ...] = (10, 20, 50, 100)  # (a)
    clients_imbalance: tuple[int, ...] = (10, 100)  # (b)
    clients_fixed: int = 50  # (c) and (d)
    algorithms: tuple[str, ...] = SPLIT_ALGORITHMS
    imbalance_algorithms: tuple[str, ...] = IMBALANCE_ALGORITHMS
    later_algorithms: tuple[str, ...] = LATER_ALGORITHMS
    switches: tuple[tuple[bool, bool, bool], ...] = tuple(itertools.product((False, True), repeat=3))
    avg_every: tuple[int, ...] = (1, 5)  # iterations; the default, once per round, is in the switches
    cut_model: str = "allconv"  # (e)
    # (e): the client holds one conv block (0.5 % of the parameters) or four (46 %, 68 % of the FLOPs)
    cuts: tuple[int, ...] = (1, 4)
    clients_cut: tuple[int, ...] = (10, 100)  # (e)
    sgd_rates: tuple[float, ...] = SGD_RATES
    lr_check_rounds: int = 3
    test_size: int | None = None  # the full test set

    @classmethod
    def quick(cls) -> "Scale":
        return cls(samples_per_client=16, batch_size=8, rounds=2, seeds=(0, 1), clients=(2, 3), clients_imbalance=(2,),
                   clients_fixed=3, clients_cut=(2,), cuts=(4,), algorithms=("psl", "locfedmix"),
                   imbalance_algorithms=("psl", "locfedmix"), later_algorithms=(),
                   switches=((False, False, False), (True, True, True)), avg_every=(1,), sgd_rates=(0.03, 0.1),
                   lr_check_rounds=1, test_size=50)


def base(scale: Scale, **values) -> Config:
    return Config(dataset="fashion_mnist", samples_per_client=scale.samples_per_client, batch_size=scale.batch_size,
                  rounds=scale.rounds, test_size=scale.test_size, **values)


def _seeded(configs: Sequence[Config], scale: Scale) -> list[Config]:
    return [dataclasses.replace(c, seed=s) for c in configs for s in scale.seeds]


def scaling(scale: Scale) -> list[Config]:
    """(a) Scalability and convergence on the authors' axis: N grows, K samples each, IID, Adam."""
    return _seeded([base(scale, algorithm=a, clients=n) for n in scale.clients for a in scale.algorithms], scale)


def lr_check(scale: Scale) -> list[Config]:
    """The SGD learning rate for (b): centralized training on the largest (b) pool, one seed."""
    n = max(scale.clients_imbalance)
    return [dataclasses.replace(base(scale, algorithm="centralized", clients=n, optimizer="sgd", lr=lr),
                                rounds=scale.lr_check_rounds)
            for lr in scale.sgd_rates]


def imbalance(scale: Scale, sgd_lr: float) -> list[Config]:
    """(b) The regime where the paper's imbalance exists: plain SGD, gradient of the combined loss."""
    return _seeded([imbalance_config(scale, a, n, sgd_lr)
                    for n in scale.clients_imbalance for a in scale.imbalance_algorithms], scale)


def imbalance_config(scale: Scale, algorithm: str, clients: int, sgd_lr: float) -> Config:
    """One configuration of (b), seed 0 (locsplitfed sends no gradient down, so it keeps --client-grad's default)."""
    return without_inert(base(scale, algorithm=algorithm, clients=clients, optimizer="sgd", lr=sgd_lr,
                              client_grad="global"))


def non_iid(scale: Scale, round_mode: str = "wrap") -> list[Config]:
    """(c) Label skew: Dirichlet(0.3) over the N x K samples. Clients then differ in size: in the
    'wrap' rounds the smaller ones wrap around their data, in the 'epoch' rounds each does its own epoch."""
    return _seeded([base(scale, algorithm=a, clients=scale.clients_fixed, partition=NON_IID, round_mode=round_mode)
                    for a in scale.algorithms], scale)


def ablations(scale: Scale) -> list[Config]:
    """(d) LocFedMix-SL's components on and off, and the averaging interval T_c."""
    locfedmix = base(scale, algorithm="locfedmix", clients=scale.clients_fixed)
    switched = [dataclasses.replace(locfedmix, mix=m, loc=l, fed=f) for m, l, f in scale.switches]
    intervals = [dataclasses.replace(locfedmix, avg_every=t) for t in scale.avg_every]
    return _seeded(switched + intervals, scale)


def cut_depth(scale: Scale) -> list[Config]:
    """(e) Where the model is cut: the algorithms of (a) on `allconv` with a shallow and a deep client segment."""
    return _seeded([base(scale, algorithm=a, clients=n, model=scale.cut_model, cut=c)
                    for c in scale.cuts for n in scale.clients_cut for a in scale.algorithms], scale)


def later_work(scale: Scale) -> list[Config]:
    """(a) for SGLR and Mix2SFL, run last: the issue adds them where the budget allows."""
    return _seeded([base(scale, algorithm=a, clients=n) for n in scale.clients for a in scale.later_algorithms], scale)


SECTIONS = ("a", "b", "c", "d", "e", "later")  # (c) runs in both round modes


def best_rate(checks: Sequence[tuple[float, float]]) -> float:
    """Of (learning rate, final accuracy) pairs, the rate with the highest accuracy; a tie goes to the smaller rate."""
    return max(checks, key=lambda check: (check[1], -check[0]))[0]


def run_study(scale: Scale, results: Path, options: RunOptions, sections: Sequence[str] = SECTIONS,
              log: Callable[[str], None] = print) -> dict[str, list[sweep.Run]]:
    """Run (or find finished) the sections in order, as `options` says (its data folders; its --runs-per-program
    groups each cell's seeds); returns each section's runs."""
    runs_dir = Path(results) / "runs"
    done: dict[str, list[sweep.Run]] = {}
    run = lambda configs: sweep.run_sweep(configs, runs_dir, options.load_dataset, options, log=log)
    if "a" in sections:
        done["a"] = run(scaling(scale))
    if "b" in sections:
        done["lr"] = run(lr_check(scale))
        done["b"] = run(imbalance(scale, best_rate([(r.config.lr, r.summary["final_test_accuracy"])
                                                    for r in done["lr"]])))
    if "d" in sections:
        done["d"] = run(ablations(scale))
    if "c" in sections:
        done["c"] = run(non_iid(scale))
        done["c-epoch"] = run(non_iid(scale, "epoch"))
    if "e" in sections:
        done["e"] = run(cut_depth(scale))
    if "later" in sections and scale.later_algorithms:
        done["later"] = run(later_work(scale))
    return done
