"""Scalability (the paper's claim 1): final test accuracy against the number of clients, for
every split algorithm, on each dataset. The training set is fixed and split among more
clients, so each client holds less data as N grows. Writes scalability_<dataset>.png and
scalability.md into --out.

Example: python scripts/scalability.py --dataset fashion_mnist,mnist --clients 2,10,50 --rounds 3 --train-size 3000
"""

from __future__ import annotations

import dataclasses
import sys

from lfmsl.experiments import figures, script_options, sweep

from lfmsl.io import plots


def main(argv=None) -> int:
    p = script_options.parser("scalability", __doc__, datasets="fashion_mnist,mnist", rounds=3, train_size=3000,
                              clients="2,10,50")
    args = script_options.parse(p, argv)
    base = script_options.base_config(args)
    configs = [dataclasses.replace(base, dataset=d, algorithm=a, clients=n, seed=s)
               for d in args.dataset for a in args.algorithm for n in args.clients for s in args.seeds]
    runs = script_options.run(args, configs)
    args.out.mkdir(parents=True, exist_ok=True)
    sections = []
    for dataset in args.dataset:
        rows = sweep.aggregate([r for r in runs if r.config.dataset == dataset], keys=["algorithm", "clients"])
        series = {}
        for algorithm in args.algorithm:
            mine = sorted((row for row in rows if row["algorithm"] == algorithm), key=lambda row: row["clients"])
            series[figures.LABELS[algorithm]] = ([row["clients"] for row in mine],
                                                 [100 * row["final_test_accuracy_mean"] for row in mine],
                                                 [100 * row["final_test_accuracy_std"] for row in mine])
        name = f"scalability_{dataset}.png"
        data = (f"{args.samples_per_client} samples per client" if args.samples_per_client
                else f"{args.train_size or 'all'} training samples")
        plots.line_plot(series, args.out / name, "number of clients N", "final test accuracy (%)",
                        f"Scalability on {dataset} ({args.rounds} rounds, {data})", logx=True, xticks=args.clients)
        table = sweep.markdown_table(rows, ["final_test_accuracy", "best_test_accuracy", "sim_latency_s", "comm_bytes",
                                            "total_wall_time_s"])
        sections.append((dataset, table + f"\n![scalability on {dataset}]({name})\n"))
    path = figures.write_report(args.out, "scalability", "Scalability: accuracy against the number of clients", runs,
                                sections)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(script_options.entry(main))
