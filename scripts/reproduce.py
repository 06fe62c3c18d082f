"""The reproduction study of LocFedMix-SL's claims, in one resumable command.

Fashion-MNIST, K samples per client (the data grows with the clients, as in the authors' setup),
the full test set, seeds 0, 1 and 2:
  (a) scalability and convergence: sl, psl, sflv1, sflv2, locsplitfed, locfedmix at N = 10, 20, 50, 100;
  (b) the imbalance regime: SGD with the combined-loss gradient at N = 10 and 100, its learning rate
      picked first by centralized training (0.01, 0.03, 0.1);
  (c) non-IID clients (Dirichlet 0.3) at N = 50, in both round modes: smaller clients wrapping
      around their data to keep up with the largest (wrap), and each client doing its own epoch (epoch);
  (d) ablations at N = 50: mix / loc / fed on and off, and averaging every 1 or 5 iterations;
  (e) where the model is cut: the algorithms of (a) at N = 10 and 100 on allconv, with one conv block
      on the client (shallow, --cut 1) or four (deep, --cut 4);
  (later) sglr and mix2sfl on the axis of (a).
K = 300 and 10 rounds. Every run goes to <results>/runs/<run name>; a re-run skips finished runs
and resumes interrupted ones, so the study can be stopped at any time and continued. At the end
(or with --report-only, from whatever has finished) it writes <results>/REPORT.md and its figures:
per-claim tables with 95 % confidence intervals over seeds and paired verdicts.

Example: python scripts/reproduce.py            (hours on a 2-core CPU)
         python scripts/reproduce.py --quick --results /tmp/quick   (seconds per run)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lfmsl.experiments import figures, study


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="scripts/reproduce.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=Path("results") / "reproduce",
                   help="folder of the study: runs/ and the report (default: results/reproduce)")
    p.add_argument("--parts", type=lambda t: [x.strip() for x in t.split(",") if x.strip()], default=list(study.PARTS),
                   help=f"comma list of parts to run, of {', '.join(study.PARTS)} (default: all, in that order)")
    p.add_argument("--quick", action="store_true", help="the same study shrunk to a few seconds per run (2 or 3 clients, 16 samples each, 2 rounds, 2 seeds)")
    p.add_argument("--report-only", action="store_true", help="run nothing: write the report from the runs that have finished")
    p.add_argument("--manual-dir", default=None, help="original dataset files for tfds without internet (default: $LFMSL_MANUAL_DIR)")
    p.add_argument("--data-dir", default=None, help="tfds data folder (default: $LFMSL_DATA_DIR)")
    args = p.parse_args(argv)
    unknown = [part for part in args.parts if part not in study.PARTS]
    if unknown:
        p.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(study.PARTS)}")
    from lfmsl.experiments.runner import log

    scale = study.Scale.quick() if args.quick else study.Scale()
    if not args.report_only:
        study.run_study(scale, args.results, figures.loader(args), args.parts, log=log)
    from lfmsl.reporting.study_report import write_report

    log(f"reproduce: report in {write_report(scale, args.results)}")
    return 0


if __name__ == "__main__":
    sys.exit(figures.entry(main))
