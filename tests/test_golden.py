"""Every algorithm's per-round metrics, recorded once: a restructuring of the package must leave them
bit for bit the same on the machine that recorded them (and within float tolerance elsewhere, where
XLA may compile for other CPU features).

Record again, deliberately, only when a change is meant to alter results:
    LFMSL_RECORD_GOLDEN=1 python -m pytest tests/test_golden.py -n 0
"""

import json
import os
import platform
from pathlib import Path

import jax
import numpy as np
import pytest

from lfmsl.algorithms import names
from lfmsl.config import Config

ALGORITHMS = names()
from lfmsl.experiments.simulation import Simulation
from synthetic import tiny_dataset

pytestmark = pytest.mark.slow  # compiles training rounds: not in the fast part (.ci/python312)

GOLDEN = Path(__file__).parent / "golden" / "metrics.json"
TIMING = ("round_time_s", "wall_time_s")
RECORD = os.environ.get("LFMSL_RECORD_GOLDEN") == "1"


def machine() -> dict:
    """What decides whether XLA's CPU code, and so every rounding, is the same as when recorded."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    from importlib.metadata import version

    return {"cpu": model, "machine": platform.machine(), "jaxlib": version("jaxlib"), "backend": jax.default_backend()}


def two_rounds(algorithm: str) -> list[dict]:
    """Two rounds on 48 random images among 3 clients (one client for sl's relay is the same data)."""
    config = Config(algorithm=algorithm, clients=3, rounds=2, batch_size=8, eval_clients=0, seed=5)
    simulation = Simulation(config, tiny_dataset(train=48, test=20))
    simulation.compile()
    return [{k: v for k, v in record.items() if k not in TIMING} for record in simulation.rounds(0, 2)]


@pytest.fixture(scope="module")
def golden() -> dict:
    if RECORD:
        recorded = {"machine": machine(), "algorithms": {a: two_rounds(a) for a in ALGORITHMS}}
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_gives_its_recorded_metrics(golden, algorithm):
    expected = golden["algorithms"][algorithm]
    got = two_rounds(algorithm)
    assert [sorted(r) for r in got] == [sorted(r) for r in expected]  # the same fields each round
    if golden["machine"] == machine():
        assert got == expected  # bit for bit: every float as recorded
    else:
        for new, old in zip(got, expected):
            for key, value in flat(old).items():
                np.testing.assert_allclose(flat(new)[key], value, rtol=1e-4, atol=1e-6, err_msg=f"{algorithm} round {old['round']} {key}")


def flat(record: dict, prefix: str = "") -> dict:
    """Nested fields (the ledger's breakdown) as 'outer.inner' keys."""
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
