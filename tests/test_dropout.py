"""Participants that fail during a round (--dropout P): the draw, what survivors and failed clients
hold after the round, the renormalised averaging, lost rounds, and the refusals."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lfmsl.algorithms import participation, validate
from lfmsl.algorithms.base import State
from lfmsl.config import Config
from lfmsl.core.batching import make_client_data
from lfmsl.errors import UsageError
from synthetic import tiny_dataset
from test_participation import N, SIZES, toy
from tolerance import SGD, reordered_sum, sgd


def test_failures_depend_on_seed_and_round_alone_and_have_probability_p():
    draws = np.array([participation.survivors(seed=1, round_index=r, count=8, dropout=0.3) for r in range(2000)])
    assert np.array_equal(draws[7], participation.survivors(1, 7, 8, 0.3))
    assert not np.array_equal(draws[:20], [participation.survivors(2, r, 8, 0.3) for r in range(20)])
    failed = 1.0 - draws.mean()
    assert abs(failed - 0.3) < 4 * np.sqrt(0.3 * 0.7 / draws.size)  # within 4 standard errors
    assert participation.survivors(0, 0, 50, 0.0).all()
    # The draw does not move the participant draw: the same participants with and without failures.
    assert np.array_equal(participation.participants(1, 3, 20, 5), participation.participants(1, 3, 20, 5))


def test_sampled_averaging_renormalises_over_the_survivors_by_hand():
    """The toy moves each client by its size and averages with the round's weights: with client 3 failed
    the average is over clients 0 and 4 alone, and the next round starts from that average."""
    data = make_client_data(np.zeros((SIZES.sum(), 1, 1, 1), np.uint8), np.zeros(SIZES.sum(), np.int32),
                            np.split(np.arange(SIZES.sum()), np.cumsum(SIZES)[:-1]))
    key = jax.random.key(0)
    first_ids, alive = np.array([0, 3, 4]), np.array([True, False, True])
    sampled = participation.sampled(toy(N, ("lower",)), toy(3, ("lower",)), key)
    zero = State({"lower": jnp.zeros((N, 2))}, {"count": jnp.zeros(N)}, {"w": jnp.zeros(3)}, {}, jnp.zeros((), jnp.int32))
    everyone = jnp.ones(3, bool)
    first, _ = jax.jit(sampled.round)(zero, data, key, jnp.asarray(first_ids), jnp.asarray(first_ids), jnp.asarray(alive), everyone)
    kept = first_ids[alive]
    average = SIZES[kept] @ (SIZES[kept] / SIZES[kept].sum())
    toy_sum = reordered_sum(3, 2 * SIZES.max())  # each value: a float32 weighted sum of 3 terms of at most twice 24
    np.testing.assert_allclose(np.asarray(first.clients["lower"])[first_ids], np.full((3, 2), average), rtol=0, atol=toy_sum)
    np.testing.assert_allclose(np.asarray(first.server["w"]), np.full(3, average), rtol=0, atol=toy_sum)  # survivors only
    # Round two (clients 1 and 3, none failing) starts from the survivors' average, not the three rows'.
    ids = np.array([1, 3])
    second, _ = jax.jit(sampled.round)(first, data, key, jnp.asarray(ids), jnp.asarray(first_ids), jnp.ones(2, bool), jnp.asarray(alive))
    by_hand = average + SIZES[ids] @ (SIZES[ids] / SIZES[ids].sum())
    np.testing.assert_allclose(np.asarray(second.clients["lower"])[ids], np.full((2, 2), by_hand), rtol=0, atol=2 * toy_sum)


def simulation(algorithm: str, clients: int, dropout: float, per_round: int | None = None, **options):
    from lfmsl.experiments.simulation import Simulation

    config = Config(algorithm=algorithm, clients=clients, clients_per_round=per_round, dropout=dropout, rounds=2, batch_size=4,
                    eval_clients=0, executor="vmap", **options)
    return Simulation(config, tiny_dataset(train=48))


def first_round_with(sim, wanted) -> int:
    return next(r for r in range(200) if wanted(sim.schedule.survivors(r)))


@pytest.mark.slow
def test_fedavg_with_failures_averages_the_survivors_models_trained_as_without_failures():
    """Independent of the dropout path: the clients' models trained with no averaging in the round and no
    failure, then their weighted mean over the survivors by hand, is the model every client holds."""
    with_failures = simulation("fedavg", 4, 0.5, seed=3, **SGD)
    # The first round with survivors and failures both: make the run start there (rounds depend on r alone).
    r = first_round_with(with_failures, lambda alive: 0 < alive.sum() < 4)
    alive = with_failures.schedule.survivors(r)
    unaveraged = simulation("fedavg", 4, 0.0, seed=3, avg_every=10 ** 6, **SGD)
    after = next(with_failures.rounds(r, r + 1))
    next(unaveraged.rounds(r, r + 1))
    weights = np.asarray(with_failures.data.weights) * alive
    weights = weights / weights.sum()
    for leaf, trained in zip(jax.tree.leaves(with_failures.state.clients), jax.tree.leaves(unaveraged.state.clients), strict=True):
        by_hand = np.tensordot(weights, np.asarray(trained), axes=1)
        for i in range(4):  # two programs' SGD rounds (tolerance.py), then a float32 mean of 4 against float64's
            round_tolerance = sgd(steps=3, reduction=4 * 28 * 28)
            magnitude = np.tensordot(weights, np.abs(np.asarray(trained)), axes=1).max()
            np.testing.assert_allclose(np.asarray(leaf)[i], by_hand, rtol=round_tolerance["rtol"],
                                       atol=round_tolerance["atol"] + reordered_sum(4, magnitude))
    assert after["participants"] == 4 and after["dropped"] == int((~alive).sum())


@pytest.mark.slow
@pytest.mark.parametrize("algorithm, per_round", [("psl", None), ("locfedmix", 4), ("sl", 3)])
def test_a_failed_client_keeps_its_state_bitwise_and_changes_nobody_else(algorithm, per_round):
    """A failed client's updates are discarded, and its data reaches no one: with client j failed, the
    survivors' models and the server do not depend on what client j holds."""
    sim = simulation(algorithm, 6, 0.5, per_round, seed=2)
    ids = np.arange(6) if per_round is None else participation.participants(2, 0, 6, per_round)
    r = 0
    alive = sim.schedule.survivors(r)
    assert alive.any() and not alive.all(), "seed 2 must give round 0 both survivors and failures"
    failed = ids[~alive]
    copy = jax.tree.map(jnp.array, sim.state)  # the round donates the state's buffers
    next(sim.rounds(0, 1))
    # Its optimiser state is its own; its model too where clients keep their own (with averaging it
    # holds the survivors' average, as every client that takes part next starts from).
    kept_parts = {"sl": (), "psl": ("clients", "client_opt"), "locfedmix": ("client_opt",)}[algorithm]
    for part in kept_parts:
        for a, b in zip(jax.tree.leaves(getattr(sim.state, part)), jax.tree.leaves(getattr(copy, part)), strict=True):
            assert np.array_equal(np.asarray(a)[failed], np.asarray(b)[failed]), part
    # Perturb what the failed clients' data hold and run the round again: the survivors see no difference.
    dataset = tiny_dataset(train=48)
    failed_samples = np.concatenate([sim.client_indices[i] for i in failed])
    dataset.x_train[failed_samples] = 255 - dataset.x_train[failed_samples]
    other = simulation(algorithm, 6, 0.5, per_round, seed=2)
    other.data = other.data._replace(images=jnp.asarray(dataset.x_train))
    next(other.rounds(0, 1))
    kept = ids[alive]
    survivors_of = lambda s: jax.tree.leaves(jax.tree.map(lambda leaf: np.asarray(leaf)[kept] if algorithm != "sl" else np.asarray(leaf), s.clients))
    for a, b in zip(survivors_of(sim.state), survivors_of(other.state), strict=True):
        assert np.array_equal(a, b)
    for a, b in zip(jax.tree.leaves(sim.state.server), jax.tree.leaves(other.state.server), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_a_round_every_participant_fails_changes_nothing_and_is_recorded(tmp_path):
    import lfmsl

    config = Config(algorithm="psl", clients=4, clients_per_round=1, dropout=0.5, rounds=4, batch_size=4, eval_clients=0, executor="vmap")
    result = lfmsl.run(config, tmp_path / "run", dataset=tiny_dataset(train=48), progress=False)
    lost = [r for r in result.history if r["dropped"] == r["participants"]]
    assert lost and len(lost) < 4  # seed 0 loses some of the four rounds, not all
    for record in lost:
        assert "train_loss" not in record and record["participants"] == 1
    trained = [r for r in result.history if r["dropped"] == 0]
    assert all("train_loss" in r for r in trained)
    # The state after a lost round is the state before it: its evaluation repeats the previous one.
    for before, after in zip(result.history, result.history[1:]):
        if after["dropped"] == 1:
            assert after["test_accuracy"] == before["test_accuracy"] and after["test_loss"] == before["test_loss"]


@pytest.mark.parametrize("values, message", [
    (dict(dropout=1.0), "--dropout is the probability"),
    (dict(dropout=-0.1), "--dropout is the probability"),
    (dict(algorithm="centralized", dropout=0.2), "trains one learner on all the data"),
])
def test_impossible_dropout_is_refused(values, message):
    with pytest.raises(UsageError, match=message):
        validate(Config(clients=4, **values))


def test_no_dropout_runs_the_plain_round():
    """P = 0 (the default) wraps nothing and adds no field: today's run, bit for bit."""
    assert Config().dropout == 0.0
    sim = simulation("psl", 4, 0.0)
    assert len(sim.round_inputs(0)) == 1 and sim.schedule.survivors(0) is None and not sim.schedule.lost(0)
