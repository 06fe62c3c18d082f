"""A run compiles its round and its evaluation once each, whatever the number of rounds."""

import collections
import contextlib

import jax
import pytest

from lfmsl.config import Config
from lfmsl.experiments.simulation import Simulation

pytestmark = [pytest.mark.slow,  # compiles training rounds: not in the fast part (.ci/python312)
              pytest.mark.usefixtures("no_compile_cache")]  # counts compilations: none may be loaded from the cache

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"  # one event per XLA compilation
ROUND, EVALUATE = "jit(<lambda>)", "jit(evaluate)"


def unregister_duration_listener(listener) -> None:
    """jax.monitoring's public way (jax 0.8.1 on), else the private one of older jax in requirements.txt's range."""
    public = getattr(jax.monitoring, "unregister_event_duration_listener", None)
    if public is not None:
        public(listener)
    else:
        from jax._src import monitoring

        monitoring._unregister_event_duration_listener_by_callback(listener)


@contextlib.contextmanager
def counting_compilations():
    counts = collections.Counter()

    def listener(event, duration, **kwargs):
        if event == BACKEND_COMPILE:
            counts[kwargs.get("fun_name", "?")] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield counts
    finally:
        unregister_duration_listener(listener)


@pytest.mark.parametrize("algorithm,executor", [("locfedmix", "loop"), ("psl", "vmap")])
def test_round_and_evaluation_compile_once(fashion_mnist_slice, algorithm, executor):
    config = Config(algorithm=algorithm, clients=4, rounds=4, batch_size=16, train_size=128, test_size=100, executor=executor, eval_clients=1)
    simulation = Simulation(config, fashion_mnist_slice)
    with counting_compilations() as at_compile:
        simulation.compile()
    # The round is the algorithm's lambda; small helpers (the round key's fold_in) may appear too.
    assert at_compile[ROUND] == 1 and at_compile[EVALUATE] == 1, at_compile
    with counting_compilations() as first:
        records = list(simulation.rounds(0, 1))
    with counting_compilations() as later:
        records += list(simulation.rounds(1, 4))
    assert [r["round"] for r in records] == [1, 2, 3, 4]
    assert sum(later.values()) == 0, f"rounds 2-4 compiled {dict(later)}"
    assert first[ROUND] == 0 and first[EVALUATE] == 0, first
