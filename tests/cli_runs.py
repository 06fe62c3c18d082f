"""Helpers for tests that run `python -m lfmsl run` in a subprocess on the tiny data folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from fast_jit import FLAG as FAST_COMPILE_FLAG

SRC = Path(__file__).resolve().parents[1] / "src"
TIMING = ("round_time_s", "wall_time_s")  # the only fields allowed to differ between runs
TINY = ["--train-size", "64", "--batch-size", "8", "--clients", "4", "--no-progress"]


def environment(compile_cache: Path | None, fast_compile: bool = False) -> dict:
    """This checkout's code, compiled as the suite compiles (conftest.py); with `compile_cache`, XLA programs
    are compiled once per session. Runs that share a cache mostly load their programs and spend their time
    executing them, which the suite's level does four times faster than level 0 on the tiny data: only
    `fast_compile` (many programs, each run once; the numbers are compared with each other, see
    fast_jit.py) compiles at level 0."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE_FLAG if fast_compile else ''}"
    env = dict(os.environ, PYTHONPATH=str(SRC), XLA_FLAGS=flags.strip())
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    if compile_cache is not None:
        env.update(compile_cache_environment(compile_cache))
    return env


def compile_cache_environment(compile_cache: Path) -> dict[str, str]:
    """The variables that make a JAX process store and load every program in `compile_cache`."""
    return {"JAX_COMPILATION_CACHE_DIR": str(compile_cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lfmsl", "run", *map(str, args)]


def run(args: list, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), env=env, capture_output=True, text=True, timeout=timeout)


def start(args: list, env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(command(*args), env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"), text=True)


def wait_for_rounds(process: subprocess.Popen, run_dir: Path, rounds: int, timeout: float = 300) -> int:
    """Poll metrics.jsonl until it holds `rounds` lines; returns how many it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = count_rounds(run_dir)
        if lines >= rounds or process.poll() is not None:
            return lines
        time.sleep(0.005)
    raise TimeoutError(f"{run_dir} did not reach {rounds} rounds")


def count_rounds(run_dir: Path) -> int:
    try:
        return len((Path(run_dir) / "metrics.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


def metrics(run_dir: Path, timing: bool = False) -> list[dict]:
    """Every round's record; without the timing fields unless asked."""
    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return records if timing else [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def tensorboard_scalars(run_dir: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{stream: {tag: [(step, value), ...]}} as TensorFlow's own event reader reads the run's event files
    (an independent parser: lfmsl writes them with tensorboardX)."""
    import tensorflow as tf

    streams = {}
    for folder in sorted((Path(run_dir) / "tensorboard").iterdir()):
        series = streams.setdefault(folder.name, {})
        for path in sorted(folder.glob("events.out.tfevents.*")):
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                for value in event.summary.value:
                    series.setdefault(value.tag, []).append((event.step, value.simple_value))
    return streams


def expected_tensorboard_scalars(run_dir: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """The same, computed from metrics.jsonl by hand: every number per round, nested ones as 'a/b', and the
    accuracy and losses again against the simulated latency in milliseconds."""
    import numpy as np

    rounds, latency = {}, {}
    for record in metrics(run_dir, timing=True):
        flat = {}
        for name, value in record.items():
            if isinstance(value, dict):
                flat.update({f"{name}/{key}": inner for key, inner in value.items()})
            elif name != "round":
                flat[name] = value
        for tag, value in flat.items():
            rounds.setdefault(tag, []).append((record["round"], float(np.float32(value))))
        for tag in ("test_accuracy", "test_loss", "train_loss"):
            latency.setdefault(f"vs_latency_ms/{tag}", []).append((round(record["sim_latency_s"] * 1000), float(np.float32(record[tag]))))
    return {"rounds": rounds, "simulated_latency": latency}
