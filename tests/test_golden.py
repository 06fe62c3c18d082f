"""Every algorithm's per-round metrics, recorded once: a restructuring of the package must leave them
bit for bit the same on a machine that recorded them (and within float tolerance elsewhere, where XLA
compiles for other CPU features).

Bit for bit holds only for the same program on the same CPU kind (family, model and vector instructions) and the
same jaxlib: XLA orders each sum by the vector width it compiles for, so another CPU rounds differently, and Adam
(these runs' optimiser) can turn a rounding difference in a near-zero gradient into a step of up to 2 lr = 2e-3 on
that parameter (tests/tolerance.py). Against the reference, on any CPU, the metrics are therefore compared within
rtol 1e-4: a loss moves by the sum of g * d(theta), and the parameters whose steps rounding can flip are those whose
gradient g is near zero, so the losses move by rounding only (3.7e-7 at most between the two records here), while
a wrong gradient, client or average moves them by 1e-3 or more (LFMSL_MUTANT=... in tests/mutants.py; see
docs/DETERMINISM.md). The test accuracy of 20 images moves in steps of 0.05: a CPU that flips one near-tied
prediction would fail here, and then needs its own record (below). A CPU without a record of its own is checked
within tolerance only, and `test_this_machine_gives_its_own_record_bit_for_bit` is skipped there, saying so.

`golden/metrics.json` is the reference, recorded before issue 12's restructuring (on a 2-core AMD EPYC
with AVX-512); every other file in `golden/` is the same code's record on another kind of CPU (recorded
with that commit's code, 41c1231, so it too is "before the change"), compared bit for bit there.

Record again, deliberately, only when a change is meant to alter results (this replaces every record):
    LFMSL_RECORD_GOLDEN=1 python -m pytest tests/test_golden.py -n 0
Add this machine's record, for code whose results are unchanged (the same run checks it against the reference
within tolerance):
    LFMSL_RECORD_GOLDEN=machine python -m pytest tests/test_golden.py -n 0
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
from cpu import cpu_fields, processor
from synthetic import tiny_dataset

pytestmark = pytest.mark.slow  # compiles training rounds: not in the fast part (.ci/python312)

FOLDER = Path(__file__).parent / "golden"
REFERENCE = FOLDER / "metrics.json"
TIMING = ("round_time_s", "wall_time_s")
RECORD = os.environ.get("LFMSL_RECORD_GOLDEN")  # "1": a new reference; "machine": add this machine's record


def machine() -> dict:
    """What decides whether XLA's CPU code, and so every rounding, is the same as when recorded: the CPU's
    name alone is not enough (two AMD EPYC generations, with and without AVX-512, round differently)."""
    from importlib.metadata import version

    fields = cpu_fields()
    info = {"cpu": processor(), "machine": platform.machine(), "jaxlib": version("jaxlib"), "backend": jax.default_backend(),
            # XLA's flags change its code as a CPU does (--xla_cpu_max_isa=AVX rounds as an older CPU would)
            "xla_flags": sorted(os.environ.get("XLA_FLAGS", "").split())}
    if fields:
        info.update(family=fields.get("cpu family"), model=fields.get("model"),
                    vector_isa=sorted(flag for flag in fields.get("flags", "").split() if flag.startswith(("avx", "amx", "fma"))))
    return info


def two_rounds(algorithm: str) -> list[dict]:
    """Two rounds on 48 random images among 3 clients (one client for sl's relay is the same data)."""
    config = Config(algorithm=algorithm, clients=3, rounds=2, batch_size=8, eval_clients=0, seed=5)
    simulation = Simulation(config, tiny_dataset(train=48, test=20))
    simulation.compile()
    return [{k: v for k, v in record.items() if k not in TIMING} for record in simulation.rounds(0, 2)]


def machine_record_path() -> Path:
    info = machine()
    return FOLDER / f"metrics-{info['cpu']}-{info['family']}-{info['model']}.json".replace(" ", "-").lower()


def record(path: Path) -> None:
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), "algorithms": {a: two_rounds(a) for a in ALGORITHMS}}, indent=1, sort_keys=True) + "\n")


@pytest.fixture(scope="module")
def golden() -> dict:
    """The reference, and this machine's own record if there is one (None otherwise)."""
    if RECORD == "1":
        for old in FOLDER.glob("*.json"):
            old.unlink()
        record(REFERENCE)
    elif RECORD == "machine":
        record(machine_record_path())
    records = [json.loads(path.read_text()) for path in sorted(FOLDER.glob("*.json"))]
    own = [r for r in records if r["machine"] == machine()]
    return {"reference": json.loads(REFERENCE.read_text()), "own": own[0] if own else None}


@pytest.fixture(scope="module")
def runs() -> dict:
    """Each algorithm's two rounds on this machine, computed once for both tests."""
    cache = {}
    return lambda algorithm: cache.setdefault(algorithm, two_rounds(algorithm))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_gives_the_reference_metrics_within_rounding(golden, runs, algorithm):
    expected = golden["reference"]["algorithms"][algorithm]
    got = runs(algorithm)
    assert [sorted(r) for r in got] == [sorted(r) for r in expected]  # the same fields each round
    for new, old in zip(got, expected):
        for key, value in flat(old).items():
            np.testing.assert_allclose(flat(new)[key], value, rtol=1e-4, atol=1e-6, err_msg=f"{algorithm} round {old['round']} {key}")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_this_machine_gives_its_own_record_bit_for_bit(golden, runs, algorithm):
    if golden["own"] is None:
        pytest.skip(f"no golden record for this CPU ({machine_record_path().name}): bit for bit is not checked here; "
                    "add one with LFMSL_RECORD_GOLDEN=machine (see this file's docstring)")
    assert runs(algorithm) == golden["own"]["algorithms"][algorithm]  # every float as this machine recorded it


def test_records_identify_their_machine(golden):
    """Each record says which CPU it came from, and no two records claim the same machine."""
    machines = [json.loads(path.read_text())["machine"] for path in sorted(FOLDER.glob("*.json"))]
    assert all({"cpu", "machine", "jaxlib", "backend"} <= set(m) for m in machines)
    assert all(a != b for i, a in enumerate(machines) for b in machines[i + 1:])


def flat(record: dict, prefix: str = "") -> dict:
    """Nested fields (the ledger's breakdown) as 'outer.inner' keys."""
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
