"""The privacy study: what the server can rebuild of the clients' inputs, in one resumable command.

Fashion-MNIST, 300 samples per client, 10 rounds, seeds 0, 1 and 2, the full test set; leakage measured after
rounds 1, 5 and 10 (distance correlation, and the MSE, PSNR and SSIM of every attack the server can run, each
with 300 Adam steps on a 1,000-image auxiliary set no client holds):
  (a) every split algorithm at N = 10;
  (b) LocFedMix-SL with --loc-weight 0, 0.1 and 1, and with its decoders kept local, N = 10;
  (c) the defences for PSL and LocFedMix-SL at N = 10: NoPeek (0.1, 1, 5) and smashed-data noise (0.1, 0.5, 2);
  (d) allconv with a shallow (--cut 1) and a deep (--cut 4) client segment, PSL and LocFedMix-SL, N = 10;
  (a100) every split algorithm at N = 100 (the longest section, last).
Every run goes to <results>/runs/<run name>; a re-run skips finished runs and resumes interrupted ones. At the
end (or with --report-only, from whatever has finished) it writes <results>/REPORT.md and its figures.

Example: python scripts/privacy.py            (hours on a 2-core CPU)
         python scripts/privacy.py --quick --results /tmp/quick   (seconds per run)
"""

from __future__ import annotations

import sys

from lfmsl.experiments import privacy_study, script_options


def main(argv=None) -> int:
    from lfmsl.reporting.privacy_report import write_report

    scales = lambda quick: privacy_study.Scale.quick() if quick else privacy_study.Scale()
    return script_options.study_main(argv, "privacy", __doc__, privacy_study.SECTIONS, scales, privacy_study.run_study,
                                     write_report)


if __name__ == "__main__":
    sys.exit(script_options.entry(main))
