"""`lfmsl run`: validate, load, simulate with a progress bar, write the outputs, summarise."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lfmsl import outputs
from lfmsl.config import Config, validate


def describe(record: dict) -> str:
    accuracy = f"acc {100 * record['test_accuracy']:.2f}%"
    if "test_accuracy_std" in record:
        accuracy += f" ±{100 * record['test_accuracy_std']:.2f}"
    return f"{accuracy} loss {record['train_loss']:.4f}"


def run_command(args: argparse.Namespace, config: Config) -> int:
    validate(config)  # every option is checked before any work starts
    if getattr(args, "distributed", False):  # before JAX touches a device
        from lfmsl.sharding import initialize_distributed

        initialize_distributed()
    from lfmsl.data import load_dataset
    from lfmsl.simulation import Simulation

    out = outputs.prepare_out_dir(args.out or outputs.new_run_dir("runs", config.algorithm, config.dataset))
    log = lambda message: print(message, file=sys.stderr, flush=True)
    log(f"lfmsl: {config.algorithm} on {config.dataset}, {config.clients} clients, {config.rounds} rounds -> {out}")
    dataset = load_dataset(config.dataset, manual_dir=args.manual_dir, data_dir=args.data_dir)
    simulation = Simulation(config, dataset)
    log(f"lfmsl: {simulation.context.iterations} iterations per round, executor {simulation.context.executor}; compiling...")
    simulation.compile()
    log(f"lfmsl: compiled in {simulation.compile_time_s:.1f} s")

    history = []
    progress = _progress_bar(config.rounds, args.progress)
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
        **outputs.environment(),
    }
    outputs.write_json(out / "summary.json", summary)
    outputs.plot_accuracy({config.algorithm: history}, out / "accuracy.png", f"{config.algorithm} on {config.dataset}, {config.clients} clients")
    log(
        f"lfmsl: done. final accuracy {100 * summary['final_test_accuracy']:.2f}%, best {100 * summary['best_test_accuracy']:.2f}% "
        f"(round {summary['best_round']}), {summary['total_wall_time_s']:.1f} s for {len(history)} rounds "
        f"+ {simulation.compile_time_s:.1f} s compile. Outputs in {out}"
    )
    return 0


def _progress_bar(rounds: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=rounds, unit="round", desc="lfmsl", file=sys.stderr, dynamic_ncols=True)
