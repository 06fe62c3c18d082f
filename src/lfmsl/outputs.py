"""What a run leaves behind: metrics.jsonl (one line per round), summary.json, accuracy.png."""

from __future__ import annotations

import datetime
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Sequence

import jax

from lfmsl.atomic import write_text
from lfmsl.errors import UsageError

PACKAGES = ("lfmsl", "jax", "jaxlib", "flax", "optax", "numpy", "tensorflow-datasets", "orbax-checkpoint")


def new_run_dir(base: str | Path, algorithm: str, dataset: str) -> Path:
    """A fresh folder such as runs/locfedmix-fashion_mnist-20261124-101500."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(base) / f"{algorithm}-{dataset}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(base) / f"{algorithm}-{dataset}-{stamp}-{suffix}"
    return path


RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "checkpoints")  # what makes a folder a run's


def prepare_out_dir(path: Path) -> Path:
    """Create the output folder; refuse one that holds anything of a run (a fresh run never
    restores, extends or overwrites what another run left)."""
    holds = lambda entry: any(entry.iterdir()) if entry.is_dir() else entry.exists()  # an empty folder is nothing
    found = [name for name in RUN_FILES if holds(path / name)]
    if found:
        raise UsageError(f"{path} already holds {', '.join(found)} of a run; continue that run with --resume {path} "
                         "if it is this one, or choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".lfmsl-write-test"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise UsageError(f"cannot write to the output folder {path}: {error.strerror}; choose another --out") from None
    return path


def append_metrics(path: Path, record: dict) -> None:
    """Append one round's record; flushed at once so a crash loses nothing already done."""
    with open(path / "metrics.jsonl", "a") as stream:
        stream.write(json.dumps(record) + "\n")


def write_metrics(path: Path, history: Sequence[dict]) -> None:
    """Replace metrics.jsonl by these records (on resume: the checkpoint's history)."""
    write_text(Path(path) / "metrics.jsonl", "".join(json.dumps(record) + "\n" for record in history))


class DamagedRun(UsageError):
    """A run's summary.json or metrics.jsonl does not read back whole (a truncated or edited file)."""


def read_metrics(path: Path) -> list[dict]:
    """Every round's record ([] when there is no metrics.jsonl); DamagedRun names a bad line."""
    metrics = Path(path) / "metrics.jsonl"
    if not metrics.exists():
        return []
    records = []
    for number, line in enumerate(metrics.read_text(errors="replace").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                raise DamagedRun(f"{metrics} is damaged: line {number} is not a whole JSON record") from None
    return records


def write_json(path: Path, payload: dict) -> None:
    write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def finished_run(path: Path) -> dict | None:
    """The summary of the finished run in `path`, checked against its metrics; None if it has no
    summary.json. DamagedRun says what does not read back whole, so that the run can be repaired
    (`lfmsl run --resume`) or named, never dropped in silence."""
    summary_path = Path(path) / "summary.json"
    if not summary_path.exists():
        return None
    try:
        summary = read_json(summary_path)
    except (OSError, ValueError):
        raise DamagedRun(f"{summary_path} is damaged: it is not whole JSON") from None
    done = summary.get("rounds_completed") if isinstance(summary, dict) else None
    if not isinstance(done, int) or not isinstance(summary.get("config"), dict):
        raise DamagedRun(f"{summary_path} is damaged: it lacks the configuration or the rounds completed")
    rounds = [record.get("round") for record in read_metrics(path)]
    if rounds != list(range(1, done + 1)):
        raise DamagedRun(f"{Path(path) / 'metrics.jsonl'} is damaged: it holds rounds {_span(rounds)} where summary.json says 1 to {done}")
    return summary


def _span(rounds: list) -> str:
    return "none" if not rounds else f"{rounds[0]} to {rounds[-1]} ({len(rounds)} lines)"


def environment() -> dict:
    """Package versions and the device the run used, for summary.json."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    device = jax.devices()[0]
    return {
        "versions": versions,
        "python": platform.python_version(),
        "device": {"platform": device.platform, "kind": device.device_kind, "count": jax.device_count()},
    }


def summarise_run(history: Sequence[dict]) -> dict:
    """Final and best accuracy and the time totals of a list of round records."""
    if not history:
        return {"rounds_completed": 0}
    best = max(history, key=lambda r: r["test_accuracy"])
    return {
        "rounds_completed": len(history),
        "final_test_accuracy": history[-1]["test_accuracy"],
        "best_test_accuracy": best["test_accuracy"],
        "best_round": best["round"],
        "total_wall_time_s": history[-1]["wall_time_s"],
        "mean_round_time_s": history[-1]["wall_time_s"] / len(history),
    }


def plot_accuracy(curves: dict[str, Sequence[dict]], path: Path, title: str) -> None:
    """Test accuracy over rounds, one line per named run (shaded min-max where clients differ)."""
    from matplotlib.ticker import MaxNLocator

    from lfmsl.plots import new_axes, save

    figure, axes = new_axes()
    for label, history in curves.items():
        rounds = [r["round"] for r in history]
        axes.plot(rounds, [100 * r["test_accuracy"] for r in history], marker="o", markersize=3, label=label)
        if history and "test_accuracy_min" in history[0]:
            low = [100 * r["test_accuracy_min"] for r in history]
            high = [100 * r["test_accuracy_max"] for r in history]
            axes.fill_between(rounds, low, high, alpha=0.2)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("round")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    save(figure, path)
