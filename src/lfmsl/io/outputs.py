"""What a run's summary and plot say: the totals of its rounds, its environment, its accuracy curve.

The files themselves are read and written by `lfmsl.io.rundir.RunDir`.
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path
from typing import Sequence

import jax

PACKAGES = ("lfmsl", "jax", "jaxlib", "flax", "optax", "numpy", "tensorflow-datasets", "orbax-checkpoint")


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
        "numerics": numerics(),
    }


def numerics() -> dict:
    """What of the environment changes a run's numbers beside the CPU and the packages: 64-bit mode, the matrix
    product precision and the user's XLA flags (docs/DETERMINISM.md)."""
    import os

    return {"jax_enable_x64": bool(jax.config.jax_enable_x64),
            "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


def numerics_note() -> str:
    """The settings that make this run's numbers differ from a default run's, for the run's first line ('' if none)."""
    settings = numerics()
    named = ["JAX_ENABLE_X64 on"] if settings["jax_enable_x64"] else []
    if settings["jax_default_matmul_precision"] is not None:
        named.append(f"JAX_DEFAULT_MATMUL_PRECISION={settings['jax_default_matmul_precision']}")
    if settings["xla_flags"]:
        named.append(f"XLA_FLAGS='{settings['xla_flags']}'")
    return f" (numbers differ from a default run's: {', '.join(named)})" if named else ""


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


def summarise_privacy(history: Sequence[dict]) -> dict:
    """The last leakage measurement (`final_privacy_*`, and the round it was taken after); nothing where none was
    taken."""
    measured = [record for record in history if "privacy_dcor" in record]
    if not measured:
        return {}
    last = measured[-1]
    return {"privacy_round": last["round"], **{f"final_{k}": v for k, v in last.items() if k.startswith("privacy_")}}


def plot_accuracy(curves: dict[str, Sequence[dict]], path: Path, title: str) -> None:
    """Test accuracy over rounds, one line per named run (shaded min-max where clients differ)."""
    from matplotlib.ticker import MaxNLocator

    from lfmsl.io.plots import new_axes, save

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
