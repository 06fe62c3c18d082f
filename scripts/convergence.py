"""Convergence (the paper's claim 2): test accuracy against rounds for every split algorithm,
and the rounds each needs to reach --target-accuracy. Runs one run per algorithm at the
largest --clients, or plots finished runs (--from-runs, e.g. runs/n100-r5).
Writes convergence_<dataset>.png and convergence.md into --out.

Example: python scripts/convergence.py --from-runs runs/n100-r5 --target-accuracy 0.8
"""

from __future__ import annotations

import sys

from lfmsl.experiments import script_options


def main(argv=None) -> int:
    return script_options.curves_main("convergence", __doc__, "round", "round (one local epoch of every client)",
                                      "Convergence: accuracy against rounds", argv)


if __name__ == "__main__":
    sys.exit(script_options.entry(main))
