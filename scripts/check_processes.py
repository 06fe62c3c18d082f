#!/usr/bin/env python
"""Every algorithm as two processes of 2 CPU devices against one process of 4: the metrics side by side.

    python scripts/check_processes.py                      # every registered algorithm, and sampling and dropouts
    python scripts/check_processes.py --algorithms psl,sl --rounds 3

Each case runs `lfmsl run` in one process with 4 forced CPU devices, then the same command through
`lfmsl launch --processes 2 --devices-per-process 2`, on Fashion-MNIST with SGD (whose steps keep a rounding
difference a rounding difference: tests/tolerance.py), and prints for each the largest relative difference of
any number in any round's record (losses, accuracies, drift, ...) and whether the records are equal bit for bit.
The suite checks PSL, LocFedMix-SL and SplitFed V2 (tests/test_processes.py); this covers the rest, with
`--clients-per-round` and `--dropout`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TIMING = ("round_time_s", "wall_time_s")
EXTRA = {"psl, 4 of 8 per round": ("psl", ["--clients-per-round", "4"]),
         "locfedmix, 4 of 8 per round, dropout 0.25": ("locfedmix", ["--clients-per-round", "4", "--dropout", "0.25"]),
         "sflv2, dropout 0.25": ("sflv2", ["--dropout", "0.25"])}


def records(folder: Path) -> list[dict]:
    """The run's records without its timing fields."""
    from lfmsl.io.rundir import RunDir

    return [{k: v for k, v in record.items() if k not in TIMING} for record in RunDir(folder).metrics()]


def largest_difference(a: list[dict], b: list[dict]) -> tuple[float, str]:
    """The largest relative difference between numbers of the same field of the same round, and that field."""
    worst, where = 0.0, "-"
    for x, y in zip(a, b, strict=True):
        for key in sorted(x.keys() | y.keys()):
            u, v = x.get(key), y.get(key)
            if isinstance(u, (int, float)) and isinstance(v, (int, float)):
                if u != v and abs(u - v) / max(abs(u), abs(v)) > worst:
                    worst, where = abs(u - v) / max(abs(u), abs(v)), f"{key}, round {x.get('round')}"
            elif u != v:
                return float("inf"), key  # a field present in one only, or other text
    return worst, where


def lfmsl(arguments: list[str], env: dict) -> None:
    done = subprocess.run([sys.executable, "-m", "lfmsl", *arguments], env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"check_processes: lfmsl {' '.join(arguments[:6])} ... failed:\n{done.stderr[-2000:]}")


def main(argv=None) -> int:
    from lfmsl.algorithms.registry import names

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algorithms", default=",".join(names()), help="comma list (default: every registered one)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--no-extra", action="store_true", help="leave out the sampling and dropout cases")
    args = p.parse_args(argv)
    cases = {name: (name, []) for name in args.algorithms.split(",")}
    if not args.no_extra:
        cases.update(EXTRA)
    common = ["--clients", "8", "--samples-per-client", "64", "--batch-size", "16", "--rounds", str(args.rounds),
              "--test-size", "200", "--eval-clients", "1", "--optimizer", "sgd", "--lr", "0.05", "--no-progress"]
    four = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
                                       "--xla_force_host_platform_device_count=4".strip()}
    print("| case | largest relative difference | in | bit for bit |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for label, (algorithm, extra) in cases.items():
            one, two = Path(folder) / f"{label}-one", Path(folder) / f"{label}-two"
            run = ["run", "--algorithm", algorithm, *common, *extra]
            lfmsl([*run, "--out", str(one)], four)
            lfmsl(["launch", "--processes", "2", "--devices-per-process", "2", "--", *run, "--out", str(two)],
                  dict(os.environ))
            a, b = records(one), records(two)
            worst, where = largest_difference(a, b)
            print(f"| {label} | {worst:.2g} | {where} | {'yes' if a == b else 'no'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
