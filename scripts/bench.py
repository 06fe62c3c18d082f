#!/usr/bin/env python
"""Time one round of the parallel split algorithms for growing client counts and each executor.

    python scripts/bench.py                                  # LocFedMix-SL, 1/10/100/1000 clients, every executor
    python scripts/bench.py --clients 100 --executor vmap,loop --json
    python scripts/bench.py --algorithms locfedmix,psl,sflv1 --clients 10,100
    python scripts/bench.py --models cnn,allconv:1,allconv:4 --clients 100 --executor auto   # the cut's cost
    python scripts/bench.py --algorithms psl,locfedmix --clients 100,10000 --clients-per-round 100 \
        --executor auto --batch-size 6 --iterations 1          # cross-device: 100 of 10,000 clients per round
    python scripts/bench.py --clients 10,100 --runs 1,4,16 --executor auto     # runs x clients in one program
    python scripts/bench.py --algorithms psl --clients 10 --evaluate         # the evaluation's share of a round
    python scripts/bench.py --clients 100 --executor auto --batch-size 8 --iterations 3 \
        --compare-torch ../shared/bench/torch_locfedmix_loop.py --torch-python /path/to/env/with/torch/bin/python

Each case runs in its own process (so its peak memory is its own, and a case that runs out of
memory fails alone): it builds the round as a run does (lfmsl.experiments.round_builder) on random
data of the real shapes (Fashion-MNIST, 28x28x1 uint8, 10 classes; no TensorFlow is needed),
compiles the round once (timed), runs it once to warm up and then `--repeats` more times.

`--runs R` trains R runs of the case (seeds 0 to R-1) as one program with a leading runs axis, as a sweep groups
them (lfmsl.experiments.grouped): a case's round is then all R runs' rounds, and its client-steps are
R x clients x iterations. `--evaluate` also times the evaluation that follows each round of a run (the models a
run scores, on 10,000 test images as by default) and reports its share of the round plus evaluation.

Reported per case: client-steps per second (runs x clients x iterations per round / round time),
samples per second (x batch), compile time, peak memory (max RSS on a CPU, the device's
`peak_bytes_in_use` on a GPU or TPU), FLOPs and bytes per round from XLA's cost analysis of the
vectorised iteration (XLA counts a loop body once, so the loop executors' own analyses
undercount), and the fraction of the hardware's limit: (the time the FLOPs and bytes need at
peak, whichever is longer) / the measured time. The peak is stated per device (H100/H200
datasheet numbers) or measured (a large matmul and a large copy) where unknown, e.g. a CPU.

`--compare-torch PROGRAM` runs a PyTorch LocFedMix-SL program (one model and optimiser per client,
a Python loop over them: the way public split-learning code is written) right before lfmsl's cases
at each client count, with the same batch and iterations (then one averaging), and prints the ratio
of client-steps per second. torch is not an lfmsl dependency: `--torch-python` names an interpreter
that has it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Datasheet peaks (dense): FLOP/s fp32, FLOP/s bf16, memory bytes/s.
DATASHEET = {"H100": (67e12, 989e12, 3.35e12), "H200": (67e12, 989e12, 4.8e12)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algorithms", default="locfedmix",
                   help="comma-separated algorithms, or 'all' for every parallel one (default: locfedmix)")
    p.add_argument("--clients", default="1,10,100,1000", help="comma-separated client counts (default: 1,10,100,1000)")
    p.add_argument("--executor", default="vmap,chunked:10,loop,auto",
                   help="comma-separated executors (default: vmap,chunked:10,loop,auto)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--iterations", type=int, default=2,
                   help="iterations per round, i.e. samples per client / batch (default: 2)")
    p.add_argument("--runs", default="1",
                   help="comma-separated runs per program: R seeds trained side by side in one program (default: 1)")
    p.add_argument("--evaluate", action="store_true",
                   help="also time each round's evaluation on 10,000 test images and report its share")
    p.add_argument("--clients-per-round", type=int, default=None, metavar="K",
                   help="K participants drawn per round among each case's clients, as lfmsl run's flag (default: all)")
    p.add_argument("--repeats", type=int, default=2, help="timed rounds after one warm-up round (default: 2)")
    p.add_argument("--conv", default="patches", choices=("patches", "xla"))
    p.add_argument("--matmul-precision", default="float32", choices=("float32", "bfloat16"),
                   help="the models' products, as lfmsl run's flag (default: float32)")
    p.add_argument("--models", default="cnn",
                   help="comma-separated MODEL or MODEL:CUT, e.g. cnn,allconv:1,allconv:4 (default: cnn at its cut)")
    p.add_argument("--max-memory-gb", type=float, default=None,
                   help="address-space limit of each case's process on a CPU, so that a case that would exhaust the "
                        "machine fails alone")
    p.add_argument("--case-timeout", type=int, default=3600, help="seconds before a case is abandoned (default: 3600)")
    p.add_argument("--json", action="store_true", help="print the results as a JSON list of cases")
    p.add_argument("--plot", metavar="PNG", type=Path,
                   help="also draw the round time and the peak memory against the client count (one line per "
                        "algorithm, model and executor) into this PNG")
    p.add_argument("--compare-torch", metavar="PROGRAM", type=Path,
                   help="a PyTorch LocFedMix-SL program taking --clients, --batch and --iters and printing a JSON "
                        "line with client_steps_per_s (e.g. ../shared/bench/torch_locfedmix_loop.py): run it before "
                        "lfmsl at each client count and print the ratio (locfedmix on cnn only)")
    p.add_argument("--torch-python", default=sys.executable, metavar="PYTHON",
                   help="the interpreter that runs --compare-torch's program, one with torch installed "
                        "(default: this one)")
    p.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    return p.parse_args(argv)


# ------------------------------------------------------------------------------ one case


def peak_memory_bytes() -> int:
    import jax

    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return int(stats["peak_bytes_in_use"])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def timed(step, repeats: int) -> tuple[list[float], object]:
    """Wall times of `step(r)` for r = 0..repeats, each until its outputs are ready (the first compiles nothing
    but warms up), and the last step's outputs."""
    import jax

    times, outputs = [], None
    for r in range(repeats + 1):
        began = time.perf_counter()
        outputs = jax.block_until_ready(step(r))
        times.append(time.perf_counter() - began)
    return times, outputs


def run_single(spec: dict) -> tuple:
    """One run's round, built as a run builds it: (executor, mix, compile seconds, round times, last metrics)."""
    from lfmsl.experiments.bench_cases import case_round

    # where K < N: the round built for K, on K of the N clients (as lfmsl run does)
    built = case_round(spec, spec["iterations"])
    state = built.init_state()
    start = time.perf_counter()
    compiled = built.compile(state)
    compile_s = time.perf_counter() - start

    def step(r):
        nonlocal state
        state, metrics = compiled(state, built.data, *built.round_inputs(r))
        return state, metrics  # timed until both are ready

    times, (_, metrics) = timed(step, spec["repeats"])
    return built.context.executor, built.config.mix, compile_s, times, metrics


def run_group(spec: dict) -> tuple:
    """R runs (seeds 0..R-1) of the case as one program, as a sweep groups them; its round includes the runs'
    evaluations on the case's small synthetic test set (a few batches: next to nothing)."""
    import dataclasses

    from lfmsl.experiments.bench_cases import case_config, synthetic_dataset
    from lfmsl.experiments.grouped import GroupSimulation

    config = case_config(spec)
    dataset = synthetic_dataset(spec["clients"], spec["iterations"] * spec["batch_size"])
    group = GroupSimulation([dataclasses.replace(config, seed=seed) for seed in range(spec["runs"])], dataset)
    group.start()
    group.compile()
    times, (metrics, _) = timed(group.step, spec["repeats"])
    return group.executor, config.mix, group.compile_time_s, times, metrics


def evaluation_s(spec: dict, round_s: float) -> float:
    """The median time of a run's evaluation after its round: the models it scores (10 evaluated clients' own
    where clients keep their own) on 10,000 test images; a run's round and evaluation timed together, minus the
    round's time `round_s`."""
    from lfmsl.experiments.bench_cases import case_config, synthetic_dataset
    from lfmsl.experiments.simulation import Simulation
    from lfmsl.io.data import Dataset

    train = synthetic_dataset(spec["clients"], spec["iterations"] * spec["batch_size"])
    test = synthetic_dataset(1, 10_000, seed=1)
    simulation = Simulation(case_config(spec), Dataset(train.name, train.x_train, train.y_train, test.x_train,
                                                       test.y_train, train.num_classes))
    simulation.compile()
    steps, _ = timed(simulation.step, spec["repeats"])
    return max(statistics.median(steps[1:]) - round_s, 0.0)


def run_case(spec: dict) -> dict:
    """Compile and time one (algorithm, clients, runs, executor) round; returns the measurements."""
    import jax

    from lfmsl.experiments.bench_cases import parallel_algorithms, participating

    if spec["algorithm"] not in parallel_algorithms():
        raise SystemExit(f"bench times the parallel algorithms and fedavg; {spec['algorithm']} has no parallel clients")
    runs = spec.get("runs", 1)
    executor, mix, compile_s, times, metrics = (run_group if runs > 1 else run_single)(spec)
    round_s = statistics.median(times[1:])
    steps = runs * participating(spec) * spec["iterations"]
    extra = {}
    if spec.get("evaluate"):
        extra["evaluation_s"] = evaluation_s(spec, round_s)
        extra["evaluation_share"] = extra["evaluation_s"] / (extra["evaluation_s"] + round_s)
    return {
        **spec,
        **extra,
        "resolved_executor": executor,
        "mix": mix,
        "round_s": round_s,
        "round_s_min": min(times[1:]),
        "first_round_s": times[0],
        "client_steps_per_s": steps / round_s,
        "samples_per_s": steps * spec["batch_size"] / round_s,
        "compile_s": compile_s,
        "peak_memory_bytes": peak_memory_bytes(),
        "train_loss": float(jax.numpy.mean(metrics["train_loss"])),
    }


def round_cost(spec: dict) -> dict:
    """FLOPs and bytes of a round from XLA's cost analysis of one vectorised iteration, times the
    iterations: XLA counts a loop body once, so the loop executors' own analyses undercount.
    The same for every executor (the same computation), so computed once per case group."""
    import jax

    from lfmsl.experiments.bench_cases import case_round, participating

    # the work of the round's participants, one iteration
    built = case_round({**spec, "executor": "vmap", "clients": participating(spec), "clients_per_round": None}, 1)
    cost = built.compile(jax.eval_shape(built.algorithm.init, built.init_key)).cost_analysis()
    cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
    return {"flops_per_round": float(cost.get("flops", 0.0)) * spec["iterations"],
            "bytes_per_round": float(cost.get("bytes accessed", 0.0)) * spec["iterations"]}


# ------------------------------------------------------------------------------ hardware


def _best_time(fn, *args, repeats: int = 5) -> float:
    import jax

    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - began)
    return best


def hardware() -> dict:
    """The device and its limits: datasheet numbers where known, else measured."""
    import jax
    import jax.numpy as jnp

    device = jax.devices()[0]
    info = {"platform": device.platform, "device_kind": device.device_kind, "device_count": jax.device_count(),
            "cpu_count": os.cpu_count(), "jax": jax.__version__}
    known = next((v for k, v in DATASHEET.items() if k in device.device_kind), None)
    if known:
        info.update(peak_flops=known[0], peak_flops_bf16=known[1], peak_bytes_per_s=known[2],
                    peak_source="datasheet (fp32 dense)")
        return info
    size = 2048 if device.platform == "cpu" else 8192
    a = jnp.ones((size, size), jnp.float32)
    flops = 2 * size**3 / _best_time(lambda a: a @ a, a)
    big = jnp.ones((64 * 2**20,), jnp.float32)  # 256 MiB, read once
    bandwidth = big.nbytes / _best_time(jnp.sum, big)
    info.update(peak_flops=flops, peak_bytes_per_s=bandwidth,
                peak_source=f"measured: {size}^3 fp32 matmul, sum of 256 MiB")
    return info


def add_fractions(result: dict, hw: dict) -> dict:
    """Fraction of the hardware's limit: (roofline time of the FLOPs and bytes) / measured time."""
    flop_s = result["flops_per_round"] / hw["peak_flops"]
    byte_s = result["bytes_per_round"] / hw["peak_bytes_per_s"]
    result["achieved_flops_per_s"] = result["flops_per_round"] / result["round_s"]
    result["flops_fraction"] = flop_s / result["round_s"]
    result["bandwidth_fraction"] = byte_s / result["round_s"]
    result["hardware_fraction"] = max(flop_s, byte_s) / result["round_s"]
    return result


# ------------------------------------------------------------------------------ the PyTorch peer


def torch_missing(python: str) -> str | None:
    """Why `python` cannot run the PyTorch program (one line), or None."""
    try:
        done = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True, timeout=120)
    except OSError as error:
        return f"--torch-python {python} cannot be run ({error.strerror}); name an interpreter that has torch"
    if done.returncode != 0:
        return (f"--compare-torch needs torch, which {python} cannot import; install it there (pip install torch) "
                "or pass --torch-python")
    return None


def run_peer(program: Path, python: str, clients: int, batch: int, iterations: int, repeats: int, timeout: int) -> dict:
    """The PyTorch program's client-steps per second: the median over `repeats` fresh processes, each
    timing `iterations` iterations and one averaging after a warm-up iteration, as lfmsl's round."""
    command = [python, str(program), "--clients", str(clients), "--batch", str(batch), "--iters", str(iterations)]
    speeds = []
    for _ in range(repeats):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout} s"}
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            return {"error": f"exit {done.returncode}: {(done.stderr.strip().splitlines() or ['no output'])[-1][:300]}"}
        speeds.append(float(json.loads(lines[-1])["client_steps_per_s"]))
    return {"client_steps_per_s": statistics.median(speeds)}


def add_ratio(result: dict, peer: dict) -> dict:
    """lfmsl's client-steps per second over the PyTorch program's, where both ran."""
    result = {**result, "torch_client_steps_per_s": peer.get("client_steps_per_s"), "torch_error": peer.get("error")}
    if "error" not in result and "error" not in peer:
        result["ratio_to_torch"] = result["client_steps_per_s"] / peer["client_steps_per_s"]
    return result


def comparison_table(results: list[dict]) -> str:
    """The ratio table, in Markdown (docs/PERFORMANCE.md holds one)."""
    rows = ["| clients | batch | PyTorch loop (client-steps/s) | lfmsl executor | lfmsl (client-steps/s) | ratio |",
            "|---:|---:|---:|---|---:|---:|"]
    for r in results:
        executor = r["executor"] + (f" ({r['resolved_executor']})"
                                    if r.get("resolved_executor", r["executor"]) != r["executor"] else "")
        peer = (f"{r['torch_client_steps_per_s']:.1f}" if r.get("torch_client_steps_per_s") is not None
                else r.get("torch_error") or "-")
        mine = f"{r['client_steps_per_s']:.1f}" if "error" not in r else r["error"]
        ratio = f"{r['ratio_to_torch']:.2f}" if "ratio_to_torch" in r else "-"
        rows.append(f"| {r['clients']} | {r['batch_size']} | {peer} | {executor} | {mine} | {ratio} |")
    return "\n".join(rows)


# ------------------------------------------------------------------------------ driver


def spawn(spec: dict, args: argparse.Namespace) -> dict:
    """Run one case in a child process; a failure (out of memory, timeout) is reported, not raised."""
    command = [sys.executable, __file__, "--case", json.dumps(spec)]
    if args.max_memory_gb:
        command += ["--max-memory-gb", str(args.max_memory_gb)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.case_timeout)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {args.case_timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {**spec, "error": f"exit {done.returncode}: {tail[:300]}"}
    return json.loads(lines[-1])


def cost_plot(results: list[dict], path: Path) -> Path:
    """Round time and peak memory against the enrolled clients, one line per (algorithm, model, executor):
    how a round's cost grows with N (with --clients-per-round, at a fixed number of participants)."""
    from lfmsl.io.plots import new_panels, save

    lines: dict[str, list[dict]] = {}
    for r in results:
        if "error" not in r:
            model = r["model"] if r.get("cut") is None else f"{r['model']}:{r['cut']}"
            lines.setdefault(f"{r['algorithm']}, {model}, {r['executor']}", []).append(r)
    if not lines:
        raise ValueError("no case finished: nothing to plot")
    figure, (time_axes, memory_axes) = new_panels(2, sharey=False)
    for label, cases in lines.items():
        cases = sorted(cases, key=lambda r: r["clients"])
        clients = [r["clients"] for r in cases]
        time_axes.plot(clients, [r["round_s"] for r in cases], marker="o", label=label)
        memory_axes.plot(clients, [r["peak_memory_bytes"] / 2**30 for r in cases], marker="o", label=label)
    k = {r.get("clients_per_round") for r in results}
    per_round = f", {k.pop()} per round" if len(k) == 1 and None not in k else ""
    for axes, ylabel, title in ((time_axes, "round time (s)", "round time"),
                                (memory_axes, "peak memory (GiB)", "peak memory")):
        axes.set_xscale("log")
        axes.set_ylim(bottom=0)  # growth read against zero, not against the smallest case
        axes.set_xlabel(f"enrolled clients N{per_round}")
        axes.set_ylabel(ylabel)
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    return save(figure, path)


def table(results: list[dict], hw: dict) -> str:
    from lfmsl.experiments.bench_cases import participating

    rows = [f"# {hw['device_kind']} ({hw['platform']}, {hw['cpu_count']} CPUs), "
            f"peak {hw['peak_flops'] / 1e9:.0f} GFLOP/s, "
            f"{hw['peak_bytes_per_s'] / 1e9:.0f} GB/s ({hw['peak_source']})",
            f"{'algorithm':<11} {'model':<10} {'clients':>9} {'runs':>4} {'executor':<11} {'round s':>8} "
            f"{'client-steps/s':>14} {'samples/s':>10} {'compile s':>9} {'peak MiB':>9} {'GFLOP/s':>8} {'% limit':>7}"
            + (f" {'eval s':>7} {'eval %':>6}" if any("evaluation_s" in r for r in results) else "")]
    for r in results:
        clients = f"{r['clients_per_round']}/{r['clients']}" if participating(r) < r["clients"] else str(r["clients"])
        executor = r["executor"] + (f"->{r['resolved_executor']}"
                                    if r.get("resolved_executor", r["executor"]) != r["executor"] else "")
        model = r.get("model", "cnn") + (f":{r['cut']}" if r.get("cut") else "")
        if "achieved_flops_per_s" not in r:
            rows.append(f"{r['algorithm']:<11} {model:<10} {clients:>9} {r.get('runs', 1):>4} {executor:<11} "
                        f"{r.get('error', 'no cost analysis')}")
            continue
        evaluation = (f" {r['evaluation_s']:>7.2f} {100 * r['evaluation_share']:>6.1f}" if "evaluation_s" in r
                      else "")
        rows.append(f"{r['algorithm']:<11} {model:<10} {clients:>9} {r.get('runs', 1):>4} {executor:<11} "
                    f"{r['round_s']:>8.2f} {r['client_steps_per_s']:>14.1f} {r['samples_per_s']:>10.0f} "
                    f"{r['compile_s']:>9.1f} {r['peak_memory_bytes'] / 2**20:>9.0f} "
                    f"{r['achieved_flops_per_s'] / 1e9:>8.1f} {100 * r['hardware_fraction']:>7.1f}{evaluation}")
    return "\n".join(rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.case:
        if args.max_memory_gb:  # before JAX starts, so that XLA's allocations are limited too
            cap = int(args.max_memory_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        spec = json.loads(args.case)
        print(json.dumps(round_cost(spec) if spec.get("cost_only") else run_case(spec)), flush=True)
        return 0
    from lfmsl.core.executors import parse_executor
    from lfmsl.errors import UsageError
    from lfmsl.experiments.bench_cases import model_cut, parallel_algorithms

    parallel = parallel_algorithms()
    names = parallel if args.algorithms == "all" else args.algorithms.split(",")
    try:
        bad = [a for a in names if a not in parallel]
        if bad:
            raise UsageError(f"--algorithms: {', '.join(bad)} not benchmarkable; "
                             f"choose from {', '.join(parallel)} or 'all'")
        clients = [int(c) for c in args.clients.split(",")]
        runs = [int(r) for r in args.runs.split(",") if r.isdigit() and int(r) > 0]
        if len(runs) != len(args.runs.split(",")):
            raise UsageError(f"--runs must be a comma list of positive integers, got {args.runs!r}")
        if args.evaluate and runs != [1]:
            raise UsageError("--evaluate times one run's evaluation: leave --runs at 1")
        if args.clients_per_round is not None and args.clients_per_round < 1:
            raise UsageError(f"--clients-per-round must be a positive integer, got {args.clients_per_round}")
        executors = args.executor.split(",")
        for e in executors:
            parse_executor(e)
        model_cuts = [model_cut(item) for item in args.models.split(",")]
        if args.compare_torch is not None:
            if not args.compare_torch.is_file():
                raise UsageError(f"--compare-torch: no program at {args.compare_torch}")
            if (names != ["locfedmix"] or any(m != ("cnn", None) for m in model_cuts)
                    or args.clients_per_round is not None):
                raise UsageError("--compare-torch compares LocFedMix-SL on the cnn at its cut with every client in "
                                 "every round: leave --algorithms, --models and --clients-per-round at their defaults")
            missing = torch_missing(args.torch_python)
            if missing:
                raise UsageError(missing)
    except (UsageError, ValueError) as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 2
    hw = hardware()
    results = []
    for (model, cut), algorithm, n in [(m, a, n) for m in model_cuts for a in names for n in clients]:
        base = {"algorithm": algorithm, "clients": n, "batch_size": args.batch_size, "model": model, "cut": cut,
                "iterations": args.iterations, "repeats": args.repeats, "conv": args.conv,
                "clients_per_round": args.clients_per_round, "evaluate": args.evaluate,
                "matmul_precision": args.matmul_precision}
        cost = spawn({**base, "executor": "vmap", "cost_only": True}, args)
        peer = (run_peer(args.compare_torch, args.torch_python, n, args.batch_size, args.iterations, args.repeats,
                         args.case_timeout)
                if args.compare_torch is not None else None)
        for count, executor in [(r, e) for r in runs for e in executors]:
            result = spawn({**base, "runs": count, "executor": executor}, args)
            if peer is not None:
                result = add_ratio(result, peer)
            result.update({f"hw_{k}": v for k, v in hw.items()})
            if "error" not in result and "error" not in cost:  # R runs do R times one run's work
                result = add_fractions({**result, **{k: count * cost[k] for k in ("flops_per_round",
                                                                                  "bytes_per_round")}}, hw)
            results.append(result)
            print(table(results[-1:], hw).splitlines()[-1], file=sys.stderr, flush=True)  # progress
    print(json.dumps(results, indent=1) if args.json else table(results, hw))
    if args.plot is not None:
        try:
            print(f"bench: figure in {cost_plot(results, args.plot)}", file=sys.stderr)
        except ValueError as error:
            print(f"bench: no figure: {error}", file=sys.stderr)
    if args.compare_torch is not None and not args.json:
        print("\n" + comparison_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
