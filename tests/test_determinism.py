"""The same seed gives the same partitions, batches, mixup pairs and results, run after run.

The end-to-end check compiles the run again in a fresh process (no compilation cache) and
compares every non-timing field of every round with the reference run: they must be equal
bit for bit. What may differ across machines and backends is in docs/DETERMINISM.md.
"""

import jax
import jax.numpy as jnp
import numpy as np

from cli_runs import TINY, environment, metrics, run
from lfmsl.core.batching import make_client_data, round_batches
from lfmsl.core.numerics import smashed_mixup
from lfmsl.core.partition import partition
import pytest


@pytest.mark.slow
def test_same_seed_same_metrics_in_a_fresh_process(reference_run, tiny_data_dir, tmp_path):
    out = tmp_path / "again"
    again = run(["--data-dir", tiny_data_dir, *TINY, "--rounds", "5", "--out", out], environment(compile_cache=None))
    assert again.returncode == 0, again.stderr
    assert metrics(out) == metrics(reference_run)


@pytest.mark.slow
def test_another_seed_gives_other_metrics(reference_run, tiny_data_dir, compile_cache, tmp_path):
    out = tmp_path / "seed1"
    other = run(["--data-dir", tiny_data_dir, *TINY, "--rounds", "2", "--seed", "1", "--out", out], environment(compile_cache))
    assert other.returncode == 0, other.stderr
    for mine, theirs in zip(metrics(out), metrics(reference_run)):
        assert mine["round"] == theirs["round"]
        assert mine["train_loss"] != theirs["train_loss"] and mine["client_drift"] != theirs["client_drift"]


def _client_data(seed):
    labels = np.arange(120) % 10
    client_indices = partition(labels, 6, "dirichlet:0.5", seed)
    return client_indices, make_client_data(np.zeros((120, 2, 2, 1), np.uint8), labels, client_indices)


def test_partitions_and_batches_depend_on_the_seed_alone():
    indices_a, data_a = _client_data(seed=3)
    indices_b, data_b = _client_data(seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(indices_a, indices_b))
    key = jax.random.fold_in(jax.random.key(3), 7)  # round 7 of seed 3
    batches = np.asarray(round_batches(key, data_a, 4, 5))
    assert np.array_equal(batches, np.asarray(round_batches(key, data_b, 4, 5)))
    assert not np.array_equal(batches, np.asarray(round_batches(jax.random.fold_in(jax.random.key(3), 8), data_a, 4, 5)))
    for client, own in enumerate(indices_a):  # and each client only ever sees its own samples
        assert set(batches[:, client].ravel()) <= set(own)


def test_mixup_pairs_depend_on_the_key_alone():
    smashed = jax.random.normal(jax.random.key(0), (5, 4, 3))
    labels = jnp.arange(20).reshape(5, 4) % 3
    mixup = jax.jit(smashed_mixup, static_argnums=(3, 4, 5))
    first = mixup(jax.random.key(11), smashed, labels, 3, 2, 1.0)
    second = mixup(jax.random.key(11), smashed, labels, 3, 2, 1.0)
    other = mixup(jax.random.key(12), smashed, labels, 3, 2, 1.0)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not np.array_equal(first[0], other[0])
