"""Cross-device scale: final test accuracy against the clients drawn per round (K of N = 1,000), for
PSL, SplitFed V2 and LocFedMix-SL, on ideal devices and with participants failing (--dropout) on
devices of unequal speed (--device-spread). Writes cross_device.png and cross_device.md into --out.

Example: python scripts/cross_device.py --per-round 10,50,100 --seeds 0,1,2
"""

from __future__ import annotations

import dataclasses
import sys

from lfmsl.config import Config
from lfmsl.experiments import figures, script_options, sweep
from lfmsl.experiments.flags import add_flags
from lfmsl.io import plots


def main(argv=None) -> int:
    p = script_options.parser("cross_device", __doc__, datasets="fashion_mnist", rounds=10, train_size=None,
                              clients="1000", algorithms="psl,sflv2,locfedmix")
    varied = p.add_argument_group("what the figure varies: the clients per round, and the failing condition's devices")
    add_flags(p, Config, ("clients_per_round", "dropout", "device_spread"), lists=("clients_per_round",), into=varied,
              renamed={"clients_per_round": "per_round"},
              defaults=dict(clients_per_round=[10, 50, 100], dropout=0.3, device_spread=1.0))
    args = script_options.parse(p, argv)
    if args.quick:
        args.per_round = [2]
    base = script_options.base_config(args, target_accuracy=args.target_accuracy)
    failing = dict(dropout=args.dropout, device_spread=args.device_spread)
    conditions = {"ideal devices": {}, f"dropout {args.dropout}, spread {args.device_spread}": failing}
    configs = [dataclasses.replace(base, algorithm=a, clients=n, clients_per_round=k, seed=s, **changes)
               for changes in conditions.values() for a in args.algorithm for n in args.clients for k in args.per_round
               for s in args.seeds]
    runs = script_options.run(args, configs)
    rows = sweep.aggregate(runs, keys=["algorithm", "clients", "clients_per_round", "dropout", "device_spread"])
    series = {}
    for name, changes in conditions.items():
        for algorithm in args.algorithm:
            dropout = changes.get("dropout", 0.0)
            mine = sorted((r for r in rows if r["algorithm"] == algorithm and r["dropout"] == dropout),
                          key=lambda r: r["clients_per_round"])
            series[f"{figures.LABELS[algorithm]}, {name}"] = ([r["clients_per_round"] for r in mine],
                                                             [100 * r["final_test_accuracy_mean"] for r in mine],
                                                             [100 * r["final_test_accuracy_std"] for r in mine])
    args.out.mkdir(parents=True, exist_ok=True)
    plots.line_plot(series, args.out / "cross_device.png", "clients per round K", "final test accuracy (%)",
                    f"K of N = {args.clients[0]} clients, {args.rounds} rounds", logx=True, xticks=args.per_round)
    table = sweep.markdown_table(rows, ["final_test_accuracy", "sim_latency_s", "sim_latency_to_target_s",
                                        "total_wall_time_s"])
    section = ("Final test accuracy and simulated latency", table + "\n![accuracy against K](cross_device.png)\n")
    title = "Cross-device scale: accuracy against the clients per round"
    path = figures.write_report(args.out, "cross_device", title, runs, [section])
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(script_options.entry(main))
