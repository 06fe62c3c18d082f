#!/usr/bin/env python
"""Where a round's time goes: an XLA profile of one round per executor, by operation group.

    python scripts/profile_round.py                                   # LocFedMix-SL, 100 clients, cnn, batch 32
    python scripts/profile_round.py --clients 100 --batch-size 8 --executor vmap,loop --json

Builds the round as a run does, on random data of the real shapes (as scripts/bench.py does), compiles it,
runs it once to warm up and once more under `jax.profiler`, and reads from the trace the time of
every operation XLA's runtime executed. Each operation is an instruction of the compiled program
(a fusion carries the name of its root); its group comes from the name scopes lfmsl writes into the
program (`server`, `mixup`, `client_optimizer`, `server_optimizer`, `averaging`, `patches`,
`max_pool`, and flax's module names such as `Decoder`), else from what it computes:

- patch building: the slices and concatenations of the im2col convolutions, and their gradients;
- matmuls: dot products of the models (XLA's or XNNPACK's), forward and backward;
- pooling and its gradient; decoder: LocFedMix-SL's local regulariser (all of its operations);
- mixup: the mixing coefficients, the partners and the mixed batch; optimizer: client and server;
- averaging; random draws: the batches' shuffles and other draws outside mixup;
- activations and losses: the models' other operations and their gradients; other: the rest.

Shares are of the summed operation time on all threads, which can exceed the round's wall time when
XLA runs operations in parallel.

    python scripts/profile_round.py --trace DIR                      # a trace `lfmsl run --profile DIR` wrote

reads the traces a run wrote (one per process of a distributed run) and says, for each process, how long its
collectives took (all-reduce, all-gather, ...: the time the devices and processes spend exchanging, waiting for
each other included) against the traced round's span.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import sys
import tempfile
import time
from pathlib import Path

GROUPS = ("patch building", "matmuls", "pooling and its gradient", "decoder", "mixup", "optimizer", "averaging",
          "random draws", "activations and losses", "other")
SCOPES = (  # (group, a name scope in the operation's op_name), first match wins; a scope may appear as jvp(mixup)
    ("averaging", "averaging"),
    ("optimizer", "client_optimizer"),
    ("optimizer", "server_optimizer"),
    ("mixup", "mixup"),
    ("decoder", "Decoder"),
    ("pooling and its gradient", "max_pool"),
    ("patch building", "patches"),
)
RANDOM = ("threefry", "random_bits", "_uniform", "_shuffle", "_gamma", "_beta", "permutation")
MODELS = ("Segment", "Aux", "Head", "Decoder", "Conv", "Dense")  # flax module names in op_name
CONTROL = {"while", "conditional", "call"}  # their time is their operations' time: not counted twice
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+) = (?:\([^=]*?\)|\S+) ([\w\-]+)\(")
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+) \(")


def parse_hlo(text: str) -> dict[str, dict]:
    """Every instruction of an HLO module: its opcode, op_name, and whether a dot or a convolution
    runs inside it (a fusion's called computation is searched)."""
    text = re.sub(r"/\*.*?\*/", "", text)
    computations: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        header = _COMPUTATION.match(line)
        if header and line.rstrip().endswith("{"):
            current = computations.setdefault(header.group(1), [])
        elif line.startswith("}"):
            current = None
        elif current is not None:
            current.append(line)
    dot_inside = {name: any(re.search(r" (dot|convolution)\(", line) for line in lines)
                  for name, lines in computations.items()}
    names_inside = {name: [m.group(1) for line in lines
                           if " parameter(" not in line and (m := re.search(r'op_name="([^"]*)"', line))]
                    for name, lines in computations.items()}
    table = {}
    for lines in computations.values():
        for line in lines:
            found = _INSTRUCTION.match(line)
            if not found:
                continue
            name, opcode = found.groups()
            op_name = re.search(r'op_name="([^"]*)"', line)
            called = re.search(r"calls=%?([\w.\-]+)", line)
            table[name] = {"opcode": opcode, "op_name": op_name.group(1) if op_name else "",
                           "dot": opcode in ("dot", "convolution") or bool(called and dot_inside.get(called.group(1))),
                           "fused": names_inside.get(called.group(1), []) if called else []}
    return table


def _scoped(op_name: str) -> str | None:
    for group, scope in SCOPES:
        if re.search(rf"(?:^|[/(]){scope}(?:[/)]|$)", op_name):
            return group
    return "random draws" if any(marker in op_name for marker in RANDOM) else None


def group_of(instruction: dict) -> str:
    """The operation group of one compiled instruction (module docstring): by its own op_name, else,
    for a fusion whose root is unscoped (a loss's sum, say), by the scope at least half of its fused
    instructions carry, else by what it computes."""
    own = _scoped(instruction["op_name"])
    if own is not None:
        return own
    inside = collections.Counter(g for g in map(_scoped, instruction.get("fused", [])) if g is not None)
    if inside and sum(inside.values()) * 2 >= len(instruction["fused"]):
        return inside.most_common(1)[0][0]
    if instruction["dot"]:
        return "matmuls"
    if any(model in op_name for op_name in [instruction["op_name"], *instruction.get("fused", [])] for model in MODELS):
        return "activations and losses"
    return "other"


def operation_times(trace: dict, table: dict[str, dict]) -> dict[str, float]:
    """Microseconds per compiled instruction, summed over the trace's events on every thread."""
    times: dict[str, float] = collections.defaultdict(float)
    for event in trace.get("traceEvents", []):
        name = event.get("name")
        if event.get("ph") == "X" and name in table and table[name]["opcode"] not in CONTROL:
            times[name] += float(event.get("dur", 0.0))
    return dict(times)


def breakdown(times: dict[str, float], table: dict[str, dict], top: int = 5) -> dict:
    """Seconds and shares per group, and the `top` operations that cost most."""
    total = sum(times.values())
    groups = {group: 0.0 for group in GROUPS}
    for name, us in times.items():
        groups[group_of(table[name])] += us
    ranked = sorted(times.items(), key=lambda item: -item[1])[:top]
    return {
        "op_seconds": total / 1e6,
        "groups": {g: {"seconds": us / 1e6, "share": us / total if total else 0.0} for g, us in groups.items()},
        "top": [{"name": n, "seconds": us / 1e6, "share": us / total if total else 0.0, "group": group_of(table[n]),
                 "op_name": table[n]["op_name"]} for n, us in ranked],
    }


def profile_case(spec: dict) -> dict:
    """Compile the case's round, run it once, then profile one more round."""
    import jax

    from lfmsl.experiments.bench_cases import case_round

    built = case_round(spec, spec["iterations"])
    compiled = built.compile(jax.eval_shape(built.algorithm.init, built.init_key))
    table = parse_hlo(compiled.as_text())
    state, _ = compiled(built.init_state(), built.data, *built.round_inputs(0))
    jax.block_until_ready(state)
    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        with jax.profiler.trace(folder, create_perfetto_trace=True):
            state, metrics = compiled(state, built.data, *built.round_inputs(1))
            jax.block_until_ready((state, metrics))
        round_s = time.perf_counter() - began
        files = glob.glob(f"{folder}/**/*.trace.json.gz", recursive=True)
        if not files:
            raise SystemExit("profile_round: jax.profiler wrote no trace; is this jax built with its profiler?")
        trace = read_trace(files[0])
    return {**spec, "resolved_executor": built.context.executor, "round_s": round_s,
            **breakdown(operation_times(trace, table), table)}


def read_trace(path: str) -> dict:
    """A trace.json.gz that jax.profiler wrote, its file closed once read."""
    with gzip.open(path) as stream:
        return json.load(stream)


COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")


def collectives(trace: dict) -> dict:
    """The traced span (first event to last) and the seconds of the collectives in it, summed over threads."""
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X" and "dur" in e]
    if not events:
        return {"span_s": 0.0, "collectives_s": 0.0, "by_kind": {}}
    span = (max(e["ts"] + e["dur"] for e in events) - min(e["ts"] for e in events)) / 1e6
    kinds = collections.defaultdict(float)
    for event in events:
        kind = event["name"].split(".")[0]
        if kind in COLLECTIVES:
            kinds[kind] += event["dur"] / 1e6
    return {"span_s": span, "collectives_s": sum(kinds.values()), "by_kind": dict(kinds)}


def trace_report(folder: str) -> str:
    """The collectives of every trace under `folder`, one row per process."""
    files = sorted(glob.glob(f"{folder}/**/*.trace.json.gz", recursive=True))
    if not files:
        raise SystemExit(f"profile_round: no trace under {folder}; write one with lfmsl run --profile {folder}")
    rows = ["| trace | span (s) | collectives (s) | share | by kind |", "|---|---:|---:|---:|---|"]
    for file in files:
        found = collectives(read_trace(file))
        share = found["collectives_s"] / found["span_s"] if found["span_s"] else 0.0
        kinds = ", ".join(f"{kind} {seconds:.3f} s" for kind, seconds in sorted(found["by_kind"].items()))
        parts = Path(file).relative_to(folder).parts  # PROCESS/plugins/profile/TIME/HOST.trace.json.gz
        name = "/".join(parts[:parts.index("plugins")]) if "plugins" in parts else ""
        rows.append(f"| {name or '.'} | {found['span_s']:.3f} | "
                    f"{found['collectives_s']:.3f} | {100 * share:.1f} % | {kinds or '-'} |")
    return "\n".join(rows)


def report(result: dict) -> str:
    head = (f"## {result['algorithm']}, {result['clients']} clients, batch {result['batch_size']}, "
            f"{result['iterations']} iterations, executor {result['executor']}"
            + (f" ({result['resolved_executor']})" if result["resolved_executor"] != result["executor"] else "")
            + f": round {result['round_s']:.2f} s (profiled), operations {result['op_seconds']:.2f} s on all threads")
    rows = [head, "", "| group | seconds | share |", "|---|---:|---:|"]
    for group, cost in sorted(result["groups"].items(), key=lambda item: -item[1]["seconds"]):
        rows.append(f"| {group} | {cost['seconds']:.3f} | {100 * cost['share']:.1f} % |")
    rows += ["", "| top operations | group | seconds | share | op_name |", "|---|---|---:|---:|---|"]
    for op in result["top"]:
        rows.append(f"| {op['name']} | {op['group']} | {op['seconds']:.3f} | {100 * op['share']:.1f} % "
                    f"| `{op['op_name'][-90:]}` |")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Run it on an otherwise idle machine: the shares are of measured time.")
    p.add_argument("--algorithm", default="locfedmix", help="a parallel algorithm (default: locfedmix)")
    p.add_argument("--clients", type=int, default=100, help="clients in the round (default: 100)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--iterations", type=int, default=2, help="iterations per round (default: 2)")
    p.add_argument("--executor", default="vmap,loop",
                   help="comma list of executors, one profile each (default: vmap,loop)")
    p.add_argument("--model", default="cnn", help="MODEL or MODEL:CUT (default: cnn at its cut)")
    p.add_argument("--conv", default="patches", choices=("patches", "xla"))
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--trace", metavar="DIR", help="report the collectives of the traces lfmsl run --profile DIR wrote, "
                                                 "instead of profiling a round")
    args = p.parse_args(argv)
    if args.trace:
        print(trace_report(args.trace))
        return 0
    from lfmsl.core.executors import parse_executor
    from lfmsl.errors import UsageError
    from lfmsl.experiments.bench_cases import model_cut, parallel_algorithms

    try:
        if args.clients < 1 or args.batch_size < 1 or args.iterations < 1:
            raise UsageError("--clients, --batch-size and --iterations must be positive")
        name, cut = model_cut(args.model, "--model")
        executors = [e for e in args.executor.split(",") if e]
        for executor in executors:
            parse_executor(executor)
        parallel = parallel_algorithms()
        if args.algorithm not in parallel:
            raise UsageError(f"--algorithm {args.algorithm!r}: profile a parallel algorithm ({', '.join(parallel)})")
    except UsageError as error:
        print(f"profile_round: error: {error}", file=sys.stderr)
        return 2
    results = []
    for executor in executors:
        spec = {"algorithm": args.algorithm, "clients": args.clients, "batch_size": args.batch_size,
                "iterations": args.iterations, "executor": executor, "model": name, "cut": cut, "conv": args.conv,
                "repeats": 1}
        results.append(profile_case(spec))
        if not args.json:
            print(report(results[-1]) + "\n", flush=True)
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
