"""A round that cannot fit in memory is refused before it runs; `auto` falls back to the loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lfmsl.core import memory
from lfmsl.config import Config
from lfmsl.errors import UsageError
from lfmsl.experiments.simulation import Simulation
from synthetic import tiny_dataset

pytestmark = pytest.mark.slow  # compiles training rounds: not in the fast part (.ci/python312)


def test_working_bytes_counts_an_intermediate():
    x = jnp.ones((256, 256))
    # sin(x @ x) must exist whole before the second product reads it: at least 256 KiB.
    compiled = jax.jit(lambda x: jnp.sin(x @ x) @ x).lower(x).compile()
    assert memory.working_bytes(compiled) >= 256 * 256 * 4
    assert memory.available_bytes() > 0  # this CPU reports MemAvailable


def test_require_fit_says_what_to_change(monkeypatch):
    compiled = jax.jit(lambda x: jnp.sin(x @ x) @ x).lower(jnp.ones((256, 256))).compile()
    memory.require_fit(compiled, "vmap", 4)  # fits: no error
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 1024)
    with pytest.raises(UsageError, match=r"--executor loop or chunked:K"):
        memory.require_fit(compiled, "vmap", 4)


def round_bytes(executor: str) -> int:
    simulation = Simulation(Config(algorithm="locfedmix", clients=4, batch_size=16, executor=executor), tiny_dataset(train=64))
    simulation.compile()
    return memory.working_bytes(simulation._round)


def test_auto_falls_back_to_the_loop_and_a_named_executor_is_refused(monkeypatch):
    """Each executor's round compiles once; the later Simulations of the same round load it."""
    vmap_bytes, loop_bytes = round_bytes("vmap"), round_bytes("loop")
    assert loop_bytes < vmap_bytes  # the loop keeps one client's activations at a time
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: (loop_bytes + vmap_bytes) // 2)

    simulation = Simulation(Config(algorithm="locfedmix", clients=4, batch_size=16, executor="auto"), tiny_dataset(train=64))
    assert simulation.context.executor == "vmap"  # the speed table's choice for 4 clients on a CPU
    simulation.compile()
    assert simulation.context.executor == "loop"
    record = next(simulation.rounds(0, 1))
    assert np.isfinite(record["train_loss"])

    with pytest.raises(UsageError, match="needs .* GiB of working memory"):
        Simulation(Config(algorithm="locfedmix", clients=4, batch_size=16, executor="vmap"), tiny_dataset(train=64)).compile()
