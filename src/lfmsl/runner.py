"""`lfmsl run`: validate, load, simulate with a progress bar, write the outputs, summarise."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lfmsl import outputs
from lfmsl.config import Config, validate
from lfmsl.latency import summary_fields


def describe(record: dict) -> str:
    accuracy = f"acc {100 * record['test_accuracy']:.2f}%"
    if "test_accuracy_std" in record:
        accuracy += f" ±{100 * record['test_accuracy_std']:.2f}"
    return f"{accuracy} loss {record['train_loss']:.4f}"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_command(args: argparse.Namespace, config: Config) -> int:
    validate(config)  # every option is checked before any work starts
    from lfmsl.data import load_dataset

    out = outputs.prepare_out_dir(args.out or outputs.new_run_dir("runs", config.algorithm, config.dataset))
    log(f"lfmsl: {config.algorithm} on {config.dataset}, {config.clients} clients, {config.rounds} rounds -> {out}")
    dataset = load_dataset(config.dataset, manual_dir=args.manual_dir, data_dir=args.data_dir)
    simulate(config, out, dataset, args.progress)
    return 0


def simulate(config: Config, out: Path, dataset, progress_bar: bool = True) -> dict:
    """One run into the prepared folder `out` on a loaded dataset; returns its summary."""
    from lfmsl.simulation import Simulation

    simulation = Simulation(config, dataset)
    log(f"lfmsl: {simulation.context.iterations} iterations per round, executor {simulation.context.executor}; compiling...")
    simulation.compile()
    log(f"lfmsl: compiled in {simulation.compile_time_s:.1f} s")

    history = []
    progress = _progress_bar(config.rounds, progress_bar)
    started = time.perf_counter()
    for record in simulation.rounds(0, config.rounds):
        outputs.append_metrics(out, record)
        history.append(record)
        if progress is not None:
            progress.set_postfix_str(describe(record))
            progress.update(1)
        else:
            log(f"round {record['round']}/{config.rounds}: {describe(record)} ({record['round_time_s']:.1f} s)")
    if progress is not None:
        progress.close()

    summary = {
        "config": config.to_dict(),
        "resolved": {
            "model": simulation.model.name,
            "executor": simulation.context.executor,
            "iterations_per_round": simulation.context.iterations,
            "client_sizes": {"min": int(min(map(len, simulation.parts))), "max": int(max(map(len, simulation.parts)))},
        },
        "compile_time_s": simulation.compile_time_s,
        "run_time_s": time.perf_counter() - started,
        **outputs.summarise_run(history),
        **summary_fields(history, config.target_accuracy),
        **outputs.environment(),
    }
    outputs.write_json(out / "summary.json", summary)
    outputs.plot_accuracy({config.algorithm: history}, out / "accuracy.png", f"{config.algorithm} on {config.dataset}, {config.clients} clients")
    log(
        f"lfmsl: done. final accuracy {100 * summary['final_test_accuracy']:.2f}%, best {100 * summary['best_test_accuracy']:.2f}% "
        f"(round {summary['best_round']}), {summary['total_wall_time_s']:.1f} s for {len(history)} rounds "
        f"+ {simulation.compile_time_s:.1f} s compile; simulated latency {summary['sim_latency_s']:.3g} s, "
        f"{summary['comm_bytes'] / 1e6:.4g} MB sent. Outputs in {out}"
    )
    return summary


def _progress_bar(rounds: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=rounds, unit="round", desc="lfmsl", file=sys.stderr, dynamic_ncols=True)
