"""The clients axis sharded over 4 forced CPU devices gives the single-device run's results.

Each run is a subprocess, since the device count is fixed when JAX starts
(XLA_FLAGS=--xla_force_host_platform_device_count=4).
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from jax.sharding import PartitionSpec

from lfmsl.core.sharding import Placement, check_divisible, client_mesh
from lfmsl.errors import UsageError
from tolerance import SGD, sgd

pytestmark = pytest.mark.slow  # compiles training rounds: not in the fast part (.ci/python312)

# shard_map over lax.map; per-client server copies; 4 of the 8 clients drawn per round (one per device); one client
# at a time, replicated (it stopped with shard_map's traceback before)
CASES = [("locfedmix", "loop", None), ("sflv1", "vmap", None), ("psl", "vmap", 4), ("sl", "vmap", None)]

SCRIPT = textwrap.dedent("""
    import json, os, sys
    import jax
    from lfmsl.config import Config
    from lfmsl.io.data import load_dataset
    from lfmsl.errors import UsageError
    from lfmsl.experiments.simulation import Simulation

    if os.environ.get("LFMSL_MUTANT"):  # a deliberately broken variant (tests/mutants.py)
        sys.path.insert(0, os.environ["LFMSL_TESTS"])
        import mutants
        mutants.apply(os.environ["LFMSL_MUTANT"])
    dataset = load_dataset("fashion_mnist", manual_dir=os.environ.get("LFMSL_MANUAL_DIR"), data_dir=sys.argv[1])
    out = {"devices": jax.device_count(), "runs": {}}
    for algorithm, executor, per_round in json.loads(sys.argv[2]):
        config = Config(algorithm=algorithm, clients=8, clients_per_round=per_round, rounds=2, batch_size=16, train_size=256, test_size=100,
                        executor=executor, eval_clients=0, optimizer=sys.argv[3], lr=float(sys.argv[4]))
        simulation = Simulation(config, dataset)
        out["runs"][algorithm] = list(simulation.rounds(0, 2))
        out.setdefault("sharded", {})[algorithm] = str(getattr(simulation.state.clients["lower"]["conv1"]["kernel"].sharding, "spec", None))
    try:
        Simulation(Config(algorithm="psl", clients=6, batch_size=16, train_size=256), dataset)
        out["error"] = None
    except UsageError as error:
        out["error"] = str(error)
    print(json.dumps(out))
""")


def run(devices: int, tfds_data_dir, manual_data_dir, compile_cache) -> dict:
    from cli_runs import environment

    env = environment(compile_cache, fast_compile=True)  # both sides compiled alike and fast
    env.update(XLA_FLAGS=f"{env['XLA_FLAGS']} --xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
               LFMSL_MANUAL_DIR=str(manual_data_dir), LFMSL_TESTS=os.path.dirname(__file__))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tfds_data_dir), json.dumps(CASES), SGD["optimizer"], str(SGD["lr"])], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tfds_data_dir, manual_data_dir, compile_cache):
    return run(1, tfds_data_dir, manual_data_dir, compile_cache), run(4, tfds_data_dir, manual_data_dir, compile_cache)


def test_sharded_runs_match_single_device(runs):
    single, sharded = runs
    assert single["devices"] == 1 and sharded["devices"] == 4
    for algorithm, _, _ in CASES:
        assert sharded["sharded"][algorithm] == str(PartitionSpec() if algorithm == "sl" else PartitionSpec("clients"))
        for one, four in zip(single["runs"][algorithm], sharded["runs"][algorithm], strict=True):
            for key in ("train_loss", "test_accuracy", "test_loss", "client_drift"):  # 2 rounds of 2 SGD steps of batch 16
                np.testing.assert_allclose(four[key], one[key], **sgd(steps=4, reduction=16 * 28 * 28), err_msg=f"{algorithm} {key}")


def test_uneven_client_count_is_a_usage_error(runs):
    single, sharded = runs
    assert single["error"] is None
    assert "--clients 6 cannot be split evenly over 4 devices" in sharded["error"] and "4 or 8" in sharded["error"]


def test_single_device_placement_is_a_no_op():
    placement = Placement(7)
    assert not placement.active
    tree = {"a": np.ones(3)}
    assert placement.replicate(tree) is tree
    check_divisible(7, client_mesh())  # one device: any count
    with pytest.raises(UsageError, match="multiple of 2"):
        check_divisible(3, client_mesh([object(), object()]))


@pytest.mark.parametrize("algorithm", ["locfedmix", "sflv1", "sl"])
def test_the_initial_state_run_op_by_op_is_the_jitted_one_bit_for_bit(algorithm):
    """One device runs `init` eagerly (Placement.init_state); compiled whole it gives the same state."""
    import jax

    from synthetic import tiny_dataset
    from lfmsl.config import Config
    from lfmsl.experiments.simulation import Simulation

    config = Config(algorithm=algorithm, clients=3, batch_size=8, seed=4)
    simulation = Simulation(config, tiny_dataset(train=48, test=20))
    init_key, _ = jax.random.split(jax.random.key(config.seed))
    jitted = jax.jit(simulation.algorithm.init)(init_key)
    assert jax.tree.structure(simulation.state) == jax.tree.structure(jitted)
    for eager, compiled in zip(jax.tree.leaves(simulation.state), jax.tree.leaves(jitted), strict=True):
        assert eager.dtype == compiled.dtype
        np.testing.assert_array_equal(eager, compiled)
    buffers = [leaf.unsafe_buffer_pointer() for leaf in jax.tree.leaves(simulation.state)]
    assert len(set(buffers)) == len(buffers)  # no two leaves share a buffer: the round donates the state
