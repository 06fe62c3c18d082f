#!/usr/bin/env python
"""What measuring leakage costs against the training it measures: one round, and one leakage measurement
(every attack the algorithm allows, with the study's budget), each compiled once and timed side by side.

    python scripts/privacy_cost.py                              # locfedmix and psl at N = 10 and 100, 300 samples each
    python scripts/privacy_cost.py --algorithms sflv1 --clients 100 --repeats 5

On synthetic images of Fashion-MNIST's shape (the times do not depend on the pixels). Reported per case: the
median round time, the median time of one measurement, and their ratio over the study's run (10 rounds, measured
after rounds 1, 5 and 10): the share of the run the attacks add.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    from lfmsl.config import Config
    from lfmsl.experiments.flags import add_flags

    p = argparse.ArgumentParser(prog="scripts/privacy_cost.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p, Config, ("algorithm", "clients", "samples_per_client", "rounds", "privacy_every", "attack_steps"),
              lists=("algorithm", "clients"), renamed={"algorithm": "algorithms"},
              defaults=dict(algorithm=["locfedmix", "psl"], clients=[10, 100], samples_per_client=300, rounds=10,
                            privacy_every=5, attack_steps=300))
    p.add_argument("--repeats", type=int, default=3, help="times each is timed; the median is reported (default: 3)")
    p.add_argument("--quick", action="store_true", help="2 clients of 32 samples, 5 attack steps, one repeat: seconds")
    return p.parse_args(argv)


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def case(algorithm: str, clients: int, args: argparse.Namespace) -> dict:
    from lfmsl.config import Config
    from lfmsl.experiments.leakage import measured_rounds
    from lfmsl.experiments.simulation import Simulation
    from lfmsl.io.data import Dataset

    config = Config(algorithm=algorithm, clients=clients, samples_per_client=args.samples_per_client,
                    rounds=args.rounds, privacy_every=args.privacy_every, attack_steps=args.attack_steps,
                    aux_size=min(1000, args.samples_per_client * clients))
    rng = np.random.default_rng(0)
    train = clients * args.samples_per_client + config.aux_size
    dataset = Dataset("fashion_mnist", rng.integers(0, 256, (train, 28, 28, 1), np.uint8), np.arange(train) % 10,
                      rng.integers(0, 256, (100, 28, 28, 1), np.uint8), np.arange(100) % 10, 10)
    simulation = Simulation(config, dataset)
    simulation.compile()
    state, data, inputs = simulation.state, simulation.data, simulation.round_inputs(0)
    fresh_state = lambda: jax.tree.map(lambda x: x.copy(), state)  # a round donates the state's buffers
    round_s = median_time(lambda: simulation._round(fresh_state(), data, *inputs), args.repeats)
    measure_s = median_time(lambda: simulation._leakage(state, data), args.repeats)
    measured = len(measured_rounds(config))
    return {"algorithm": algorithm, "clients": clients, "round_s": round_s, "measure_s": measure_s,
            "attacks": ",".join(simulation.leakage.attacks), "share": measured * measure_s / (args.rounds * round_s)}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.clients, args.samples_per_client, args.attack_steps = [2], 32, 5
        args.repeats, args.rounds, args.privacy_every = 1, 2, 1
    print(f"{'algorithm':10} {'N':>5} {'round (s)':>10} {'measure (s)':>12} {'attacks':24} measurements / training")
    for clients in args.clients:
        for algorithm in args.algorithms:
            r = case(algorithm, clients, args)
            print(f"{r['algorithm']:10} {r['clients']:>5} {r['round_s']:>10.2f} {r['measure_s']:>12.2f} "
                  f"{r['attacks']:24} {100 * r['share']:.0f} %", flush=True)
    return 0


if __name__ == "__main__":
    from lfmsl.experiments import script_options

    sys.exit(script_options.entry(main))
