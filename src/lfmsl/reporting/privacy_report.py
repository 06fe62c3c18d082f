"""The privacy study's report: leakage per algorithm with 95 % intervals over seeds, LocFedMix-SL against each
baseline paired by seed, LocFedMix-SL's own variants, the defences' trade-off and the cut, and the pictures.

Whatever has finished is reported; a cell without runs says so. Higher SSIM and PSNR, lower MSE and higher
distance correlation mean more leakage.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from lfmsl.algorithms import label, without_inert
from lfmsl.config import Config
from lfmsl.experiments import privacy_study as ps
from lfmsl.experiments import sweep
from lfmsl.experiments.leakage import measured_rounds
from lfmsl.io.rundir import RunDir
from lfmsl.privacy.threats import ATTACKS
from lfmsl.reporting import stats
from lfmsl.io.plots import image_grid, new_axes, save
from lfmsl.reporting.tables import describe, table

ATTACK_NAMES = tuple(ATTACKS)
Cells = dict[Config, dict[int, sweep.Run]]


def load(runs_dir: Path) -> Cells:
    """Every finished run, grouped by configuration over seeds."""
    if not Path(runs_dir).is_dir():
        return {}
    groups = sweep.by_config(sweep.finished_runs(runs_dir))
    return {key: {run.config.seed: run for run in group} for key, group in groups.items()}


def at_round(run: sweep.Run, metric: str, round_number: int | None = None) -> float | None:
    """A run's `metric` after `round_number` (None: the last measured round)."""
    measured = [r for r in sweep.history(run) if metric in r]
    if round_number is not None:
        measured = [r for r in measured if r["round"] == round_number]
    return measured[-1][metric] if measured else None


def per_seed(cells: Cells, config: Config, metric: str, round_number: int | None = None) -> dict[int, float]:
    runs = cells.get(sweep.without_seed(without_inert(config)), {})
    found = {seed: at_round(run, metric, round_number) for seed, run in runs.items()}
    return {seed: value for seed, value in found.items() if value is not None}


def cell(cells: Cells, config: Config, metric: str, round_number: int | None = None, scale: float = 1.0,
         seeds: int = 3) -> str:
    return describe(stats.estimate(list(per_seed(cells, config, metric, round_number).values())), scale, seeds)


def leakage_table(cells: Cells, configs: Sequence[Config], rows: Sequence[str], scale_: ps.Scale) -> str:
    """Accuracy and distance correlation, then each attack's SSIM after rounds 1, 5 and 10 (the measured ones)."""
    rounds = sorted(measured_rounds(ps.base(scale_)))
    header = (["", "accuracy (%)", "dCor", "bias-corrected dCor²"]
              + [f"{a} SSIM r{r}" for a in ATTACK_NAMES for r in rounds] + ["shadow MSE"])
    seeds = len(scale_.seeds)
    body = []
    for name, config in zip(rows, configs):
        body.append([name, cell(cells, config, "test_accuracy", scale=100.0, seeds=seeds),
                     cell(cells, config, "privacy_dcor", seeds=seeds),
                     cell(cells, config, "privacy_dcor_unbiased", seeds=seeds)]
                    + [cell(cells, config, f"privacy_{a}_ssim", r, seeds=seeds) for a in ATTACK_NAMES for r in rounds]
                    + [cell(cells, config, "privacy_shadow_mse", seeds=seeds)])
    return table(header, body)


LEAKAGE = ["privacy_dcor", "privacy_dcor_unbiased"] + [f"privacy_{a}_ssim" for a in ATTACK_NAMES]
MORE_LESS = {"test_accuracy": ("more accurate", "less accurate")}  # any other measure: leakage


def paired_table(cells: Cells, pairs: Sequence[tuple[str, Config, Config]], measures: Sequence[str] = LEAKAGE) -> str:
    """Each pair's first run minus its second, paired by seed, for every measure both have (last round); the
    first column names the pair (e.g. 'LocFedMix-SL minus PSL')."""
    rows = []
    for name, first, second in pairs:
        for metric in measures:
            d = stats.paired_difference(per_seed(cells, first, metric), per_seed(cells, second, metric))
            if d is None:
                continue
            more, less = MORE_LESS.get(metric, ("leaks more", "leaks less"))
            verdict = {stats.SUPPORTED: more, stats.CONTRADICTED: less,
                       stats.UNDECIDED: "undecided"}[stats.verdict(d, 1)]
            scale = 100.0 if metric == "test_accuracy" else 1.0  # accuracy in points
            rows.append([name, metric.removeprefix("privacy_"), describe(d, scale), verdict])
    if not rows:
        return "(no paired runs yet)"
    return table(["comparison", "measure", "difference (95 % CI)", "verdict"], rows)


def tradeoff_figure(cells: Cells, scale_: ps.Scale, path: Path) -> Path:
    """Accuracy against the shadow attack's SSIM for each defence and strength, PSL and LocFedMix-SL."""
    figure, axes = new_axes()
    for algorithm in ps.DEFENDED:
        plain = ps.base(scale_, algorithm=algorithm, clients=scale_.clients)
        for option, strengths, marker in (("nopeek_weight", scale_.nopeek_weights, "o"),
                                          ("smash_noise", scale_.noise, "s")):
            points = []
            for strength in (0.0, *strengths):
                config = dataclasses.replace(plain, **{option: strength})
                acc, ssim = (stats.estimate(list(per_seed(cells, config, m).values()))
                             for m in ("test_accuracy", "privacy_shadow_ssim"))
                if acc and ssim:
                    points.append((ssim.mean, 100 * acc.mean, strength))
            if points:
                axes.plot([p[0] for p in points], [p[1] for p in points], marker=marker,
                          label=f"{label(algorithm)}, {option.replace('_', ' ')}")
                for x, y, strength in points:
                    axes.annotate(f"{strength:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes.set_xlabel("shadow attack SSIM (higher: more leaked)")
    axes.set_ylabel("final test accuracy (%)")
    axes.set_title("What each defence costs (N = %d, mean over seeds)" % scale_.clients)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    return save(figure, path)


def reconstructions_figure(cells: Cells, configs: Sequence[Config], names: Sequence[str], path: Path) -> Path | None:
    """For each algorithm (seed 0), the probes and every attack's reconstruction after the last round."""
    rows = {}
    for name, config in zip(names, configs):
        run = cells.get(sweep.without_seed(without_inert(config)), {}).get(0)
        images = None if run is None else RunDir(run.path).privacy_images()
        if not images:
            continue
        if "inputs" not in rows:
            rows["inputs"] = images["inputs"]
        for attack in ATTACK_NAMES:
            if attack in images:
                rows[f"{name}: {attack}"] = images[attack]
    if not rows:
        return None
    return image_grid(rows, path, "Fashion-MNIST probes and what the server rebuilt (seed 0, last round)")


def write_report(scale_: ps.Scale, results: Path) -> Path:
    results = Path(results)
    cells = load(results / "runs")
    figures = results / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    sections = ["# The privacy study\n", __doc__.split("\n\n")[1], ""]
    for clients, part in ((scale_.clients, "a"), (scale_.clients_large, "a100")):
        configs = ps.algorithms(scale_, clients)[:: len(scale_.seeds)]
        names = [label(c.algorithm) for c in configs]
        sections += [f"## ({part}) Every split algorithm at N = {clients}\n",
                     leakage_table(cells, configs, names, scale_), ""]
        ours = [c for c in configs if c.algorithm == ps.OURS]
        if ours:
            pairs = [(f"{label(ps.OURS)} minus {label(c.algorithm)}", ours[0], c) for c in configs
                     if c.algorithm != ps.OURS]
            sections += [f"{label(ps.OURS)} minus each baseline at N = {clients}, paired by seed (last round):\n",
                         paired_table(cells, pairs), ""]
        picture = reconstructions_figure(cells, configs, names, figures / f"reconstructions-n{clients}.png")
        if picture is not None:
            sections += [f"![reconstructions at N = {clients}](figures/{picture.name})", ""]
    variants = ps.locfedmix_variants(scale_)[:: len(scale_.seeds)]
    names = [f"--loc-weight {c.loc_weight:g}" + ("" if c.average_decoders else ", decoders local") for c in variants]
    default = ps.base(scale_, algorithm=ps.OURS, clients=scale_.clients)
    pairs = [(f"default minus {name}", default, c) for name, c in zip(names, variants) if c != default]
    sections += ["## (b) LocFedMix-SL's regulariser and its decoders\n", leakage_table(cells, variants, names, scale_),
                 "", "The default (--loc-weight 1, decoders averaged) minus each variant, paired by seed "
                 "(last round):\n",
                 paired_table(cells, pairs, ["test_accuracy"] + LEAKAGE), ""]
    defended = ps.defences(scale_)[:: len(scale_.seeds)]
    plain = [ps.base(scale_, algorithm=a, clients=scale_.clients) for a in ps.DEFENDED]
    rows = plain + defended
    names = [f"{label(c.algorithm)}" + (f", NoPeek {c.nopeek_weight:g}" if c.nopeek_weight else "")
             + (f", noise {c.smash_noise:g}" if c.smash_noise else "") for c in rows]
    undefended = {c.algorithm: c for c in plain}
    pairs = [(f"{name} minus none", c, undefended[c.algorithm]) for name, c in zip(names[len(plain):], defended)]
    sections += ["## (c) The defences\n", leakage_table(cells, rows, names, scale_), "",
                 "Each defence minus the same algorithm undefended, paired by seed (last round):\n",
                 paired_table(cells, pairs, ["test_accuracy"] + LEAKAGE), "",
                 f"![defence trade-off](figures/{tradeoff_figure(cells, scale_, figures / 'defences.png').name})", ""]
    cuts = ps.cut_depth(scale_)[:: len(scale_.seeds)]
    names = [f"{label(c.algorithm)}, allconv cut {c.cut}" for c in cuts]
    sections += ["## (d) The cut\n", leakage_table(cells, cuts, names, scale_), ""]
    report = results / "REPORT.md"
    report.write_text("\n".join(sections) + "\n")
    return report
