"""The reproduction study's report: per-claim tables with 95 % intervals, paired verdicts, figures.

Everything is recomputed from the run folders (config, metrics, summary), so the report can be
rewritten from the committed results alone, part-way through the study as well as at its end:
a cell without all its seeds says how many it has, and a verdict needs at least two seeds.

What a run says is in outcomes.py, the paired comparisons in verdicts.py, the Markdown in tables.py and
the curves in study_figures.py; this module writes the prose around them, claim by claim.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

from lfmsl.config import Config
from lfmsl.experiments import study
from lfmsl.experiments.figures import LABELS
from lfmsl.io import plots
from lfmsl.io.atomic import write_text
from lfmsl.reporting import stats
from lfmsl.reporting.outcomes import TARGETS, Outcome, by_seed, load_cells, values
from lfmsl.reporting.study_figures import accuracy_panels
from lfmsl.reporting.tables import describe, table
from lfmsl.reporting.verdicts import METRICS, comparison, verdict_cell

OURS = "locfedmix"


def by_client_count(rows: dict[int, list[list[str]]], ns: Sequence[int], hi: int) -> str:
    """A table of comparison rows, one column per client count: `rows[n]` holds (baseline, cell) rows, in the order
    of those at N = `hi`."""
    return table(["baseline", *[f"N = {n}" for n in ns]],
                 [[row[0], *[rows[n][i][1] for n in ns]] for i, row in enumerate(rows[hi])])


class Report:
    """Builds the report's sections from the cells of a study of a given scale."""

    def __init__(self, scale: study.Scale, results: Path):
        self.scale, self.results = scale, Path(results)
        self.cells = load_cells(self.results / "runs")
        self.figures = self.results / "figures"
        self.figures.mkdir(parents=True, exist_ok=True)
        self.verdicts: list[tuple[str, str, dict[str, str]]] = []  # (claim, regime, {baseline: cell})
        self.sgd_lr = self._sgd_rate()

    def seeds(self) -> int:
        return len(self.scale.seeds)

    def estimate(self, config: Config, metric: str) -> stats.Estimate | None:
        return stats.estimate(list(values(self.cells, config, METRICS[metric][0]).values()))

    def _sgd_rate(self) -> float | None:
        checks = [(c, o) for c in study.lr_check(self.scale) for o in by_seed(self.cells, c).values()]
        if len(checks) < len(self.scale.sgd_rates):
            return None
        return study.best_rate([(c.lr, o.final) for c, o in checks])

    def comparisons(self, configs: dict[str, Config], metric: str, claim: str | None, regime: str) -> list[list[str]]:
        """Rows 'baseline | ours minus baseline [95 % interval]: verdict'; recorded for the verdict table."""
        scale = METRICS[metric][1]
        rows, cells = [], {}
        for algorithm, config in configs.items():
            if algorithm == OURS:
                continue
            d, verdict = comparison(self.cells, configs[OURS], config, metric)
            cells[algorithm] = verdict_cell(d, verdict, scale)
            rows.append([LABELS[algorithm], cells[algorithm]])
        if claim:
            self.verdicts.append((claim, regime, cells))
        return rows

    def algorithm_table(self, configs: dict[str, Config], metrics: Sequence[str]) -> str:
        rows = []
        for algorithm, config in configs.items():
            row = [LABELS[algorithm]]
            for metric in metrics:
                e = self.estimate(config, metric)
                row.append(describe(e, METRICS[metric][1], self.seeds()))
            outcomes = by_seed(self.cells, config)
            row.append(f"{sum(o.reached for o in outcomes.values())}/{len(outcomes)}")
            rows.append(row)
        return table(["algorithm", *metrics, "seeds reaching the target"], rows)

    # (a) -----------------------------------------------------------------------------------
    def scaling_configs(self, n: int, algorithms: Sequence[str] | None = None) -> dict[str, Config]:
        return {a: study.base(self.scale, algorithm=a, clients=n) for a in (algorithms or self.scale.algorithms)}

    def scalability(self) -> str:
        ns, algorithms = self.scale.clients, self.scale.algorithms + self.scale.later_algorithms
        rows, series = [], {}
        for a in algorithms:
            estimates = [self.estimate(study.base(self.scale, algorithm=a, clients=n), "final accuracy") for n in ns]
            if not any(estimates):
                continue
            slope = stats.estimate(self._slopes(a).values())
            rows.append([LABELS[a], *[describe(e, 100.0, self.seeds()) for e in estimates],
                         describe(slope, 100.0, self.seeds())])
            shown = [(n, e) for n, e in zip(ns, estimates) if e]
            series[LABELS[a]] = ([n for n, _ in shown], [100 * e.mean for _, e in shown],
                                 [100 * (e.half_width or 0.0) for _, e in shown])
        if series:
            plots.line_plot(series, self.figures / "scalability.png",
                            f"number of clients N ({self.scale.samples_per_client} samples each)",
                            "final test accuracy (%), 95 % CI", "Scalability: final accuracy against N", logx=True,
                            xticks=ns)
        lo, hi = min(ns), max(ns)
        text = [f"Final test accuracy (%) after {self.scale.rounds} rounds, mean ± 95 % CI half-width over seeds; the "
                f"last column is the change from N = {lo} to N = {hi} in points (per seed, then averaged).", "",
                table(["algorithm", *[f"N = {n}" for n in ns], f"N {lo} → {hi}"], rows),
                "![scalability](figures/scalability.png)", "",
                "LocFedMix-SL minus each baseline, paired by seed (points, mean [95 % CI]: verdict; the claim is that "
                "ours is higher):", ""]
        header = ["baseline", *[f"N = {n}" for n in ns], f"change N {lo} → {hi}"]
        grid = {a: [] for a in self.scale.algorithms if a != OURS}
        for n in ns:
            claim = "Scalability: final accuracy"
            regime = f"(a) IID, Adam, N = {n}"
            for name, cell in self.comparisons(self.scaling_configs(n), "final accuracy", claim, regime):
                grid[next(a for a in grid if LABELS[a] == name)].append(cell)
        slopes = {}
        ours = self._slopes(OURS)
        for a in grid:
            d = stats.paired_difference(ours, self._slopes(a))
            slopes[a] = verdict_cell(d, stats.verdict(d, 1), 100.0)
            grid[a].append(slopes[a])
        self.verdicts.append(("Scalability: accuracy change as N grows", f"(a) N = {lo} → {hi}", slopes))
        text.append(table(header, [[LABELS[a], *cells] for a, cells in grid.items()]))
        return "\n".join(text)

    def _slopes(self, algorithm: str) -> dict[int, float]:
        final = METRICS["final accuracy"][0]
        lo, hi = (values(self.cells, study.base(self.scale, algorithm=algorithm, clients=n), final)
                  for n in (min(self.scale.clients), max(self.scale.clients)))
        return {s: hi[s] - lo[s] for s in set(lo) & set(hi)}

    def _curves(self, name: str, ns: Sequence[int], x_of: Callable[[Outcome], Sequence[float]], xlabel: str, title: str,
                algorithms: Sequence[str] | None = None, config_of: Callable[[str, int], Config] | None = None) -> None:
        """Accuracy curves into figures/`name` (study_figures.py); `config_of(algorithm, N)` names the runs
        (default: those of (a))."""
        config_of = config_of or (lambda a, n: study.base(self.scale, algorithm=a, clients=n))
        algorithms = algorithms or self.scale.algorithms
        accuracy_panels(self.cells, self.figures / name, ns, algorithms, config_of, x_of, xlabel, title)

    @property
    def quick(self) -> bool:
        return self.scale != study.Scale()

    def convergence(self) -> str:
        ns = self.scale.clients
        hi = max(ns)
        rounds = self.scale.rounds
        text = [f"Target {100 * TARGETS['iid']:g} %. Mean over seeds ± 95 % CI; 'area' is the mean test accuracy over "
                f"the {rounds} rounds (%); a run that never reaches the target counts {rounds + 1} rounds.", ""]
        for n in ns:
            metrics = ["area under the accuracy curve", "rounds to target"]
            text += [f"**N = {n}**", "", self.algorithm_table(self.scaling_configs(n), metrics)]
        for metric, claim in (("area under the accuracy curve", "Convergence: area under the accuracy curve"),
                              ("rounds to target", f"Convergence: rounds to {100 * TARGETS['iid']:g} %")):
            every_n = metric.startswith("area")  # the area at every N, the time to the target at the largest
            rows = {n: self.comparisons(self.scaling_configs(n), metric, claim if every_n or n == hi else None,
                                        f"(a) IID, Adam, N = {n}")
                    for n in ns}
            text += [f"LocFedMix-SL minus each baseline, {metric} ({METRICS[metric][2]}; the claim: "
                     f"{'higher' if METRICS[metric][3] > 0 else 'fewer'}):", "", by_client_count(rows, ns, hi)]
        self._curves("convergence.png", ns, lambda o: range(1, len(o.curve) + 1), "round", "Convergence")
        text.append("![convergence](figures/convergence.png)\n")
        return "\n".join(text)

    def latency(self) -> str:
        ns, hi = self.scale.clients, max(self.scale.clients)
        metric = "simulated seconds to target"
        claim = f"Latency: simulated seconds to {100 * TARGETS['iid']:g} %"
        rows = {n: self.comparisons(self.scaling_configs(n), metric, claim if n == hi else None,
                                    f"(a) IID, Adam, N = {n}")
                for n in ns}
        text = [f"Simulated seconds to {100 * TARGETS['iid']:g} % (profile `default`: clients 10 GFLOP/s, server "
                "1 TFLOP/s, 100 Mbit/s links; LocFedMix-SL's decoder overlaps the wait for the server), mean ± 95 % "
                "CI; a run that never reaches the target counts the time of one more round (a lower bound).", ""]
        for n in ns:
            text += [f"**N = {n}**", "", self.algorithm_table(self.scaling_configs(n), [metric])]
        text += ["LocFedMix-SL minus each baseline (s; the claim: lower):", "", by_client_count(rows, ns, hi)]
        self._curves("latency.png", ns, lambda o: o.latency, "simulated seconds", "Accuracy against simulated latency")
        text.append("![latency](figures/latency.png)\n")
        return "\n".join(text)

    # (b) -----------------------------------------------------------------------------------
    def imbalance(self) -> str:
        checks = []
        for c in study.lr_check(self.scale):
            e = self.estimate(c, "final accuracy")
            checks.append([f"{c.lr:g}", describe(e, 100.0)])
        scale = self.scale
        text = [f"SGD learning rate, chosen by centralized training on the largest pool "
                f"({max(scale.clients_imbalance)} x {scale.samples_per_client} samples, {scale.lr_check_rounds} "
                f"epochs, seed {scale.seeds[0]}):", "",
                table(["learning rate", "final accuracy (%)"], checks)]
        if self.sgd_lr is None:
            return "\n".join(text + ["(the learning-rate check has not finished: section (b) has not started)\n"])
        text += [f"Chosen: **{self.sgd_lr:g}**, for every model part of every algorithm, with `--optimizer sgd "
                 "--client-grad global` (LocSplitFed sends no gradient down, so it takes only the optimiser; target "
                 f"{100 * TARGETS['sgd']:g} %).", ""]
        hi = max(self.scale.clients_imbalance)
        for n in self.scale.clients_imbalance:
            configs = {a: study.imbalance_config(self.scale, a, n, self.sgd_lr)
                       for a in self.scale.imbalance_algorithms}
            rows = []
            for a, c in configs.items():
                ratio = stats.estimate(list(values(self.cells, c, lambda o: o.update_ratio).values()))
                drift = stats.estimate(list(values(self.cells, c, lambda o: o.client_drift).values()))
                rows.append([LABELS[a], describe(self.estimate(c, "final accuracy"), 100.0, self.seeds()),
                             describe(self.estimate(c, "area under the accuracy curve"), 100.0), describe(ratio),
                             describe(drift)])
            header = ["algorithm", "final accuracy (%)", "area (%)", "update ratio server/client", "client drift"]
            text += [f"**N = {n}**", "", table(header, rows)]
            for metric, claim in (("final accuracy", "Imbalance regime: final accuracy"),
                                  ("area under the accuracy curve", "Imbalance regime: area under the accuracy curve"),
                                  ("simulated seconds to target",
                                   f"Imbalance regime: simulated seconds to {100 * TARGETS['sgd']:g} %")):
                regime = f"(b) SGD, global gradient, N = {n}"
                rows = self.comparisons(configs, metric, claim if n == hi else None, regime)
                text += [f"LocFedMix-SL minus each baseline, {metric}:", "", table(["baseline", f"N = {n}"], rows)]
        self._curves("imbalance.png", self.scale.clients_imbalance, lambda o: range(1, len(o.curve) + 1), "round",
                     f"SGD (lr {self.sgd_lr:g}) with the combined-loss gradient", self.scale.imbalance_algorithms,
                     lambda a, n: study.imbalance_config(self.scale, a, n, self.sgd_lr))
        text.append("![imbalance](figures/imbalance.png)\n")
        return "\n".join(text)

    # (c) -----------------------------------------------------------------------------------
    def non_iid(self) -> str:
        n = self.scale.clients_fixed
        modes = {"wrap": "smaller clients wrap around their data", "epoch": "each client does its own epoch"}
        configs = {mode: {a: study.base(self.scale, algorithm=a, clients=n, partition=study.NON_IID, round_mode=mode)
                          for a in self.scale.algorithms}
                   for mode in modes}
        text = [f"`--partition {study.NON_IID}`, N = {n}, target {100 * TARGETS['non_iid']:g} %. Clients differ in "
                "size, so a round (the largest client's epoch) is run in both round modes (`--round-mode`).", ""]
        for mode, what in modes.items():
            text += [f"**`--round-mode {mode}`: {what}**", "",
                     self.algorithm_table(configs[mode], ["final accuracy", "area under the accuracy curve",
                                                          "simulated seconds to target"])]
            for metric, claim in (("final accuracy", "Non-IID: final accuracy"),
                                  ("area under the accuracy curve", "Non-IID: area under the accuracy curve"),
                                  ("simulated seconds to target",
                                   f"Non-IID: simulated seconds to {100 * TARGETS['non_iid']:g} %")):
                rows = self.comparisons(configs[mode], metric, claim, f"(c) Dirichlet 0.3, N = {n}, {mode}")
                text += [f"LocFedMix-SL minus each baseline, {metric}:", "", table(["baseline", f"N = {n}"], rows)]
        rows = []
        for a in self.scale.algorithms:
            d, _ = comparison(self.cells, configs["epoch"][a], configs["wrap"][a], "final accuracy")
            cell = verdict_cell(d, stats.verdict(d, 1), 100.0)
            rows.append([LABELS[a], cell.replace("supported", "epoch higher").replace("contradicted", "wrap higher")])
        text += ["Does the round mode matter? Final accuracy, epoch minus wrap, paired by seed (points):", "",
                 table(["algorithm", "epoch minus wrap"], rows)]
        return "\n".join(text)

    # (d) -----------------------------------------------------------------------------------
    def ablations(self) -> str:
        n = self.scale.clients_fixed
        full = study.base(self.scale, algorithm=OURS, clients=n)
        settings = [(("+".join(k for k, on in zip(("mix", "loc", "fed"), s) if on) or "none (= PSL)"),
                     dataclasses.replace(full, mix=s[0], loc=s[1], fed=s[2])) for s in self.scale.switches]
        settings += [(f"all, averaging every {t} iteration{'s' if t > 1 else ''}",
                      dataclasses.replace(full, avg_every=t)) for t in self.scale.avg_every]
        rows, labels, means, spreads = [], [], [], []
        for label, config in settings:
            e = self.estimate(config, "final accuracy")
            d, verdict = comparison(self.cells, config, full, "final accuracy")
            rows.append([label, describe(e, 100.0, self.seeds()),
                         "-" if config == full else verdict_cell(d, verdict, 100.0)])
            if e:
                labels.append(label), means.append(100 * e.mean), spreads.append(100 * (e.half_width or 0.0))
        if labels:
            plots.bar_plot(labels, means, self.figures / "ablations.png", "final test accuracy (%), 95 % CI",
                           f"LocFedMix-SL's components, N = {n}", spreads)
        return "\n".join([f"N = {n}, IID, Adam; each setting minus all components on (averaging once a round), "
                          "paired by seed (points; a positive difference means the setting beats LocFedMix-SL):", "",
                          table(["components on", "final accuracy (%)", "minus all on"], rows),
                          "![ablations](figures/ablations.png)\n"])

    # (e) -----------------------------------------------------------------------------------
    def cut_depth(self) -> str:
        from lfmsl.costs import comm
        from lfmsl.costs.latency import forward_flops, model_for

        name, ns, hi = self.scale.cut_model, self.scale.clients_cut, max(self.scale.clients_cut)
        text = [f"`--model {name}` at N = {', '.join(map(str, ns))}; IID, Adam, the algorithms of (a).", ""]
        split = []
        for cut in self.scale.cuts:
            model = model_for(study.base(self.scale, model=name, cut=cut))
            sizes, flops = comm.part_sizes(model), forward_flops(model)
            split.append([f"{cut}", "x".join(map(str, model.smashed_shape)),
                          f"{100 * sizes['client'] / (sizes['client'] + sizes['server']):.1f} %",
                          f"{100 * flops['client'] / (flops['client'] + flops['server']):.1f} %"])
        text += [table(["cut", "smashed data", "client share of parameters", "client share of forward FLOPs"], split)]
        per_cut = {}
        for cut in self.scale.cuts:
            for n in ns:
                configs = {a: study.base(self.scale, algorithm=a, clients=n, model=name, cut=cut)
                           for a in self.scale.algorithms}
                text += [f"**cut {cut}, N = {n}**", "",
                         self.algorithm_table(configs, ["final accuracy", "area under the accuracy curve"])]
                claim = f"Cut {cut}: final accuracy" if n == hi else None
                rows = self.comparisons(configs, "final accuracy", claim, f"(e) {name} cut {cut}, N = {n}")
                per_cut[(cut, n)] = dict(rows)
                text += ["LocFedMix-SL minus each baseline, final accuracy (points):", "",
                         table(["baseline", f"cut {cut}, N = {n}"], rows)]
        rows = [[LABELS[a], *[per_cut[(c, hi)].get(LABELS[a], "-") for c in self.scale.cuts]]
                for a in self.scale.algorithms if a != OURS]
        text += [f"Does the verdict depend on the cut? LocFedMix-SL minus each baseline at N = {hi}:", "",
                 table(["baseline", *[f"cut {c}" for c in self.scale.cuts]], rows)]
        return "\n".join(text)

    def verdict_table(self) -> str:
        baselines = [a for a in self.scale.algorithms if a != OURS]
        rows = [[claim, regime, *[cells.get(a, "-") for a in baselines]] for claim, regime, cells in self.verdicts]
        return table(["claim", "regime", *[LABELS[a] for a in baselines]], rows)

    def write(self) -> Path:
        sections = [("(a) Scalability", self.scalability()), ("(a) Convergence", self.convergence()),
                    ("(a) Latency", self.latency()), ("(b) The imbalance regime", self.imbalance()),
                    ("(c) Non-IID clients", self.non_iid()), ("(d) Ablations", self.ablations()),
                    ("(e) Where the model is cut", self.cut_depth())]
        finished = sum(len(group) for group in self.cells.values())
        text = ["# The reproduction study: LocFedMix-SL's claims, decided", "",
                f"Generated by `python scripts/reproduce.py{' --quick' if self.quick else ''}` from {finished} "
                f"finished runs in `runs/`. Fashion-MNIST, {self.scale.samples_per_client} samples per client, "
                f"{self.scale.rounds} rounds, seeds {', '.join(map(str, self.scale.seeds))}. Differences are "
                "LocFedMix-SL minus the baseline, paired by seed, with a 95 % Student-t interval; **supported** where "
                "it excludes zero in the claimed direction, **contradicted** where it excludes zero the other way, "
                "undecided otherwise.", "",
                "## Verdicts", "",
                "Each cell: LocFedMix-SL minus the baseline, mean [95 % CI] (accuracy in points, time in simulated "
                "seconds, rounds).", ""]
        body = []
        for heading, section in sections:
            body += [f"## {heading}", "", section]
        text += [self.verdict_table(), *body]
        path = self.results / "REPORT.md"
        write_text(path, "\n".join(text))
        return path


def write_report(scale: study.Scale, results: Path) -> Path:
    return Report(scale, results).write()
