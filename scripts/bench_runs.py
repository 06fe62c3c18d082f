#!/usr/bin/env python
"""Ways to run a sweep, measured: its seeds grouped into one program against one run at a time (loading the
programs an earlier run compiled, or each compiling its own), and over two processes, every process taking part
in each run against each process taking runs of its own.

    python scripts/bench_runs.py                           # LocFedMix-SL, 3 seeds, N = 10 and 100
    python scripts/bench_runs.py --clients 10 --seeds 0,1,2,3,4,5 --rounds 3
    python scripts/bench_runs.py --clients 8 --seeds 0,1,2,3 --rounds 3 --modes alone,each-run,own-runs

Each sweep runs in its own process (or `lfmsl launch`'s processes) on Fashion-MNIST into a fresh folder, one after
the other, and is measured from the outside: wall time including every compile and the data loading, the number
of programs compiled (its "compiled in" lines; of process 0 alone for the modes of several processes) and the
peak memory of its largest process (max RSS). The final accuracies are printed side by side: they agree within
float rounding (docs/DETERMINISM.md). Time it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# mode -> (what it is, the lfmsl command before `sweep`'s flags, whether its seeds share a program, environment)
MODES = {
    # a sweep as before it kept its programs: its cache stores none, since none compiles that long
    "alone-compiling": ("one at a time, each compiling", [], False,
                        {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "1e9"}),
    "alone": ("one at a time", [], False, {}),
    "grouped": ("grouped", [], True, {}),
    "each-run": ("2 processes x 2 devices, every one in each run",
                 ["launch", "--processes", "2", "--devices-per-process", "2", "--"], False, {}),
    "own-runs": ("2 processes, runs of their own", ["launch", "--processes", "2", "--own-runs", "--"], False, {}),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algorithm", default="locfedmix")
    p.add_argument("--clients", default="10,100", help="comma list of client counts (default: 10,100)")
    p.add_argument("--seeds", default="0,1,2", help="the sweep's seeds (default: 0,1,2)")
    p.add_argument("--samples-per-client", type=int, default=300)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--modes", default="alone,grouped",
                   help=f"comma list of {', '.join(MODES)} (default: alone,grouped; the speed-up is against the first)")
    p.add_argument("--json", action="store_true", help="print the results as a JSON list")
    args = p.parse_args(argv)
    unknown = set(args.modes.split(",")) - set(MODES)
    if unknown:
        p.error(f"--modes: no mode {', '.join(sorted(unknown))}; choose from {', '.join(MODES)}")
    return args


def sweep(args: argparse.Namespace, clients: int, mode: str, out: Path) -> dict:
    """One sweep in its own process: its wall time, compile count, peak memory and final accuracies."""
    name, before, grouped, environment = MODES[mode]
    command = [sys.executable, "-m", "lfmsl", *before, "sweep", "--algorithm", args.algorithm, "--clients",
               str(clients), "--seed", args.seeds, "--samples-per-client", str(args.samples_per_client), "--rounds",
               str(args.rounds), "--out", str(out), "--runs-per-program",
               str(len(args.seeds.split(","))) if grouped else "1"]
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **environment})
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - began
    if status:
        sys.exit(f"bench_runs: the sweep failed:\n{output[-3000:]}")
    accuracies = [json.loads((run / "summary.json").read_text())["final_test_accuracy"]
                  for run in sorted(out.iterdir()) if (run / "summary.json").is_file()]
    return {"clients": clients, "mode": name, "runs": len(accuracies), "wall_s": round(wall, 1),
            "compiles": output.count("compiled in"), "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2),
            "final_accuracies": accuracies}


def main(argv=None) -> int:
    args = parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for clients in [int(c) for c in args.clients.split(",")]:
            for mode in args.modes.split(","):
                results.append(sweep(args, clients, mode, Path(folder) / f"n{clients}-{mode}"))
                print(f"bench_runs: {results[-1]}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print("| N | runs | mode | wall (s) | programs compiled | peak memory (GB) | speed-up | final accuracies (%) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        alone = next(a for a in results if a["clients"] == r["clients"])  # the first mode
        print(f"| {r['clients']} | {r['runs']} | {r['mode']} | {r['wall_s']} | {r['compiles']} | {r['peak_rss_gb']} | "
              f"{alone['wall_s'] / r['wall_s']:.2f}x | {', '.join(f'{100 * a:.2f}' for a in r['final_accuracies'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
