"""Ablations of LocFedMix-SL: each of mix, loc and fed on and off (all 8 combinations, from
PSL = all off to LocFedMix-SL = all on), the mixup Beta alpha, the number of mixing partners,
and the averaging interval. Writes PNG figures and ablations.md into --out.

Example: python scripts/ablations.py --dataset fashion_mnist --train-size 3000 --clients 20 --rounds 3
"""

from __future__ import annotations

import dataclasses
import itertools
import sys

from lfmsl.experiments import figures, script_options, sweep

from lfmsl.io import plots

ALPHAS = (0.2, 0.5, 1.0, 2.0)
PARTNERS = (1, 2, 4)
INTERVALS = (1, 5, None)  # iterations between averaging; None: once per round
STUDIES = ("switches", "mix_alpha", "mix_partners", "avg_every")


def switches_label(config) -> str:
    on = [name for name in ("mix", "loc", "fed") if getattr(config, name)]
    return "+".join(on) if on else "none (PSL)"


def main(argv=None) -> int:
    p = script_options.parser("ablations", __doc__, datasets="fashion_mnist", rounds=3, train_size=3000, clients="20")
    p.add_argument("--studies", type=lambda t: t.split(","), default=list(STUDIES),
                   help=f"comma list of {', '.join(STUDIES)} (default: all)")
    args = script_options.parse(p, argv)
    clients = max(args.clients)
    base = script_options.base_config(args, algorithm="locfedmix", clients=clients)
    partners = [k for k in PARTNERS if k < clients]
    switches = [(False,) * 3, (True,) * 3] if args.quick else list(itertools.product((False, True), repeat=3))
    quick = lambda values, default: [default] if args.quick else values  # --quick: PSL and LocFedMix-SL only
    studies = {
        "switches": [dataclasses.replace(base, mix=m, loc=l, fed=f) for m, l, f in switches],
        "mix_alpha": [dataclasses.replace(base, mix_alpha=a) for a in quick(ALPHAS, 1.0)],
        "mix_partners": [dataclasses.replace(base, mix_partners=k) for k in quick(partners, 1)],
        "avg_every": [dataclasses.replace(base, avg_every=t) for t in quick(INTERVALS, None)],
    }
    studies = {name: configs for name, configs in studies.items() if name in args.studies}
    configs = [s for study in studies.values() for c in study for s in script_options.seeds_of(c, args.seeds)]
    runs = script_options.run(args, list(dict.fromkeys(configs)))
    groups = sweep.by_config(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    dataset = base.dataset
    sections = []
    for study, study_configs in studies.items():
        keys = ["mix", "loc", "fed"] if study == "switches" else [study]
        rows = sweep.aggregate([r for c in study_configs for r in groups[c]], keys=keys)
        accuracy = [100 * row["final_test_accuracy_mean"] for row in rows]
        spread = [100 * row["final_test_accuracy_std"] for row in rows]
        title = f"LocFedMix-SL ablation: {study} ({dataset}, {clients} clients, {args.rounds} rounds)"
        if study == "switches":
            labels = [switches_label(c) for c in study_configs]
            plots.bar_plot(labels, accuracy, args.out / "switches.png", "final test accuracy (%)", title, spread)
        else:
            x = [getattr(c, study) or c_iterations(groups[c]) for c in study_configs]
            xlabel = {"mix_alpha": "mixup Beta(alpha, alpha) parameter alpha",
                      "mix_partners": "mixing partners per client n_s",
                      "avg_every": "averaging interval T_c (iterations)"}[study]
            plots.line_plot({"LocFedMix-SL": (x, accuracy, spread)}, args.out / f"{study}.png", xlabel,
                            "final test accuracy (%)", title, logx=study != "mix_partners", xticks=x)
        table = sweep.markdown_table(rows, ["final_test_accuracy", "best_test_accuracy", "sim_latency_s", "comm_bytes"])
        sections.append((study, table + f"\n![{study}]({'switches' if study == 'switches' else study}.png)\n"))
    path = figures.write_report(args.out, "ablations", "Ablations of LocFedMix-SL", runs, sections)
    print(path.read_text())
    return 0


def c_iterations(runs) -> int:
    """Iterations per round of a run (the default averaging interval)."""
    return runs[0].summary["resolved"]["iterations_per_round"]


if __name__ == "__main__":
    sys.exit(script_options.entry(main))
