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

import sys

from lfmsl.experiments import script_options, study


def main(argv=None) -> int:
    from lfmsl.reporting.study_report import write_report

    scales = lambda quick: study.Scale.quick() if quick else study.Scale()
    return script_options.study_main(argv, "reproduce", __doc__, study.SECTIONS, scales, study.run_study, write_report)


if __name__ == "__main__":
    sys.exit(script_options.entry(main))
