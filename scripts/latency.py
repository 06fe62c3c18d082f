"""Latency (the paper's claim 3): test accuracy against simulated latency (lfmsl.costs.latency,
profile 'default': clients 10 GFLOP/s, server 1 TFLOP/s, 100 Mbit/s up and down), and the
simulated time each split algorithm needs to reach --target-accuracy. Runs one run per
algorithm at the largest --clients, or plots finished runs (--from-runs); runs made before
the ledger existed get their latency computed from their configuration.
Writes latency_<dataset>.png and latency.md into --out.

Example: python scripts/latency.py --from-runs runs/n100-r5 --target-accuracy 0.8
"""

from __future__ import annotations

import sys

from lfmsl.experiments import script_options


def main(argv=None) -> int:
    return script_options.curves_main("latency", __doc__, "sim_latency_s", "simulated latency (s, log scale)",
                                      "Accuracy against simulated latency", argv)


if __name__ == "__main__":
    sys.exit(script_options.entry(main))
