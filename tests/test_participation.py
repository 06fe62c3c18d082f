"""Clients sampled per round (--clients-per-round K): the draw, the gather and scatter around an
unchanged round, what clients sitting a round out hold, the ledger, and the refusals."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fast_jit
from lfmsl.algorithms import participation, validate
from lfmsl.algorithms.base import Algorithm, State
from lfmsl.config import Config
from lfmsl.core.batching import make_client_data
from lfmsl.errors import UsageError
from synthetic import tiny_dataset
from tolerance import SGD, reordered_sum, sgd


def test_participants_are_distinct_sorted_and_depend_on_seed_and_round_alone():
    draws = [participation.participants(seed=3, round_index=r, num_clients=50, per_round=7) for r in range(20)]
    for ids in draws:
        assert len(set(ids.tolist())) == 7 and ids.min() >= 0 and ids.max() < 50
        assert np.all(np.diff(ids) > 0)
    assert np.array_equal(draws[4], participation.participants(3, 4, 50, 7))  # recomputed: the same
    assert len({tuple(ids) for ids in draws}) == 20  # rounds differ
    assert not np.array_equal(draws[0], participation.participants(4, 0, 50, 7))  # seeds differ
    assert np.array_equal(participation.participants(0, 0, 5, 5), np.arange(5))


def test_participants_are_uniform_over_the_clients():
    rounds, clients, per_round = 3000, 10, 3
    counts = np.bincount(np.concatenate([participation.participants(0, r, clients, per_round) for r in range(rounds)]), minlength=clients)
    expected = rounds * per_round / clients
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < 27.88  # chi-square with 9 degrees of freedom, p = 0.001


# A toy algorithm whose round is known in closed form, to check the gather and scatter by hand.

N, K = 6, 3
SIZES = np.array([4, 8, 12, 16, 20, 24])


def toy(num_clients: int, averaged: tuple[str, ...]) -> Algorithm:
    """Each client's 'lower' moves by its data size, its optimiser count by one; the server by the
    clients' weighted sizes; an averaging toy then sets every client to the weighted average."""

    def init(key):
        clients = {"lower": jnp.arange(num_clients, dtype=jnp.float32)[:, None] * jnp.ones((num_clients, 2))}
        return State(clients, {"count": jnp.zeros(num_clients)}, {"w": jnp.zeros(3)}, {}, jnp.zeros((), jnp.int32))

    def round_fn(state, data, key):
        lower = state.clients["lower"] + data.sizes[:, None].astype(jnp.float32)
        if averaged:
            lower = jnp.broadcast_to(data.weights @ lower, lower.shape)
        server = {"w": state.server["w"] + data.weights @ data.sizes.astype(jnp.float32)}
        return State({"lower": lower}, {"count": state.client_opt["count"] + 1}, server, {}, state.step + 1), {"loss": data.weights.sum()}

    return Algorithm(init, round_fn, None, personal=not averaged, averaged=averaged)


def toy_round(averaged: tuple[str, ...], ids: np.ndarray, previous: np.ndarray | None = None, before: State | None = None):
    data = make_client_data(np.zeros((SIZES.sum(), 1, 1, 1), np.uint8), np.zeros(SIZES.sum(), np.int32),
                            np.split(np.arange(SIZES.sum()), np.cumsum(SIZES)[:-1]))
    key = jax.random.key(0)
    sampled = participation.sampled(toy(N, averaged), toy(len(ids), averaged), key)
    before = sampled.init(key) if before is None else before
    after, metrics = jax.jit(sampled.round)(before, data, key, jnp.asarray(ids), jnp.asarray(ids if previous is None else previous))
    return before, after, metrics


@pytest.mark.parametrize("ids", [np.array([1, 2, 4]), np.array([0, 5])])
def test_clients_that_keep_their_models_keep_them_bitwise_when_sitting_out(ids):
    before, after, metrics = toy_round((), ids)
    out = np.setdiff1d(np.arange(N), ids)
    for name, leaf in (("lower", lambda s: s.clients["lower"]), ("count", lambda s: s.client_opt["count"])):
        assert np.array_equal(np.asarray(leaf(after))[out], np.asarray(leaf(before))[out]), name
    np.testing.assert_array_equal(np.asarray(after.clients["lower"])[ids], np.repeat(np.arange(N)[ids, None] + SIZES[ids, None], 2, axis=1))
    np.testing.assert_array_equal(np.asarray(after.client_opt["count"]), np.isin(np.arange(N), ids).astype(float))
    weights = SIZES[ids] / SIZES[ids].sum()  # renormalised over the participants
    # A float32 weighted sum of at most 3 terms of size <= 24 against numpy's float64: reordered_sum bounds it.
    np.testing.assert_allclose(np.asarray(after.server["w"]), np.full(3, weights @ SIZES[ids]), rtol=0, atol=reordered_sum(3, 24))
    assert float(metrics["loss"]) == pytest.approx(1.0)


def test_averaged_parts_start_from_the_previous_participants_weighted_mean_and_the_others_are_not_written():
    first_ids, ids = np.array([0, 3, 4]), np.array([1, 3])
    _, first, _ = toy_round(("lower",), first_ids, first_ids, before=State({"lower": jnp.zeros((N, 2))}, {"count": jnp.zeros(N)},
                                                                         {"w": jnp.zeros(3)}, {}, jnp.zeros((), jnp.int32)))
    w = SIZES[first_ids] / SIZES[first_ids].sum()
    average = w @ SIZES[first_ids]  # each started from 0 and moved by its size; then the toy averages over them
    toy_sum = reordered_sum(3, 2 * SIZES.max())  # each value: a float32 weighted sum of 3 terms of at most twice 24
    np.testing.assert_allclose(np.asarray(first.clients["lower"])[first_ids], np.full((3, 2), average), rtol=0, atol=toy_sum)
    assert np.array_equal(np.asarray(first.clients["lower"])[[1, 2, 5]], np.zeros((3, 2)))  # sitting out: not written
    _, second, _ = toy_round(("lower",), ids, first_ids, before=first)
    v = SIZES[ids] / SIZES[ids].sum()
    by_hand = average + v @ SIZES[ids]  # both start from the current average (client 1 never took part), move, are averaged
    np.testing.assert_allclose(np.asarray(second.clients["lower"])[ids], np.full((2, 2), by_hand), rtol=0, atol=2 * toy_sum)
    assert np.array_equal(np.asarray(second.client_opt["count"]), np.array([1, 1, 0, 2, 1, 0], float))  # optimiser states: their own


# The real algorithms.

def simulation(algorithm: str, clients: int, per_round: int | None, executor: str = "vmap", **options):
    from lfmsl.experiments.simulation import Simulation

    config = Config(algorithm=algorithm, clients=clients, clients_per_round=per_round, rounds=2, batch_size=4, eval_clients=0,
                    executor=executor, **{**SGD, **options})
    return Simulation(config, tiny_dataset(train=60))


# Two rounds of 3 SGD steps of batch 4 on 28 x 28 images, by two programs (tolerance.py).
ROUNDS = sgd(steps=6, reduction=4 * 28 * 28)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["psl", "locfedmix"])
def test_a_round_of_k_of_n_clients_is_the_k_client_round_on_their_data(algorithm):
    """Independent of the gather: a K-client system built on the participants' own data, from the same seed."""
    sampled = simulation(algorithm, 6, 3)
    ids = participation.participants(0, 0, 6, 3)
    alone = simulation(algorithm, 3, None, train_size=30)  # clients of 10 samples, as the participants
    dataset = tiny_dataset(train=60)
    alone.data = make_client_data(dataset.x_train, dataset.y_train, [sampled.client_indices[i] for i in ids])
    first, single = next(sampled.rounds(0, 1)), next(alone.rounds(0, 1))
    for name in ("train_loss", "client_drift", "server_rel_update", "client_rel_update"):
        np.testing.assert_allclose(first[name], single[name], **ROUNDS, err_msg=name)
    assert first["participants"] == 3 and "participants" not in single
    if algorithm == "locfedmix":  # averaged: scored on the participants' average, as the K-client system is
        for name in ("test_accuracy", "test_loss"):
            np.testing.assert_allclose(first[name], single[name], **ROUNDS, err_msg=name)
    lower, lower_alone = (jax.tree.leaves(s.state.clients["lower"]) for s in (sampled, alone))
    out = np.setdiff1d(np.arange(6), ids)
    initial = jax.tree.leaves(simulation(algorithm, 6, 3).state.clients["lower"])
    for leaf, leaf_alone, start in zip(lower, lower_alone, initial, strict=True):
        # Two programs of different shapes round differently; under SGD a wrong gather or scatter moves weights by
        # lr |g| a step, far past rounding.
        np.testing.assert_allclose(np.asarray(leaf)[ids], np.asarray(leaf_alone), **ROUNDS)
        assert np.array_equal(np.asarray(leaf)[out], np.asarray(start)[out])  # sitting out: untouched
    # The ledger and the latency model count the participants only.
    for field in ("comm_bytes", "sim_latency_s"):
        assert first[field] == single[field], field


@pytest.mark.slow
def test_k_equal_to_n_is_todays_run_and_the_wrapper_with_all_clients_changes_nothing():
    import lfmsl.algorithms as algorithms

    records = lambda s: [{k: v for k, v in r.items() if k not in ("round_time_s", "wall_time_s")} for r in s.rounds(0, 2)]
    every = simulation("locfedmix", 4, 4)
    assert not every.schedule.sampling
    assert records(simulation("locfedmix", 4, None)) == records(every)
    # The gather and scatter themselves, with every client drawn, against the plain round, bit for bit.
    sim = simulation("locfedmix", 4, None)
    wrapped = participation.sampled(sim.algorithm, algorithms.build(sim.config, sim.context), sim.run_key)
    key = sim.round_key(0)
    plain = fast_jit.jit(sim.algorithm.round)(sim.state, sim.data, key)
    everyone = jnp.arange(4, dtype=jnp.int32)
    gathered = fast_jit.jit(wrapped.round)(sim.state, sim.data, key, everyone, everyone)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), plain, gathered))


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["sl", "sflv1"])  # a relay of K; server copies gathered and averaged
def test_every_executor_gives_the_same_sampled_rounds(algorithm):
    vmap, loop = (simulation(algorithm, 6, 2, executor) for executor in ("vmap", "loop"))
    for a, b in zip(vmap.rounds(0, 2), loop.rounds(0, 2), strict=True):
        for name in ("train_loss", "test_accuracy", "test_loss"):
            np.testing.assert_allclose(a[name], b[name], **ROUNDS, err_msg=name)


@pytest.mark.parametrize("values, message", [
    (dict(clients=4, clients_per_round=5), "--clients-per-round 5 is more than --clients 4"),
    (dict(clients=4, clients_per_round=0), "--clients-per-round must be a positive integer"),
    (dict(algorithm="centralized", clients=4, clients_per_round=2), "trains one learner on all the data"),
    (dict(clients=4, clients_per_round=2, round_mode="epoch"), "--round-mode wrap"),
    (dict(algorithm="locfedmix", clients=10, clients_per_round=1), "needs --clients-per-round 2 or more"),
    (dict(algorithm="mix2sfl", clients=10, clients_per_round=3, mix_partners=3), "--mix-partners must be smaller than --clients-per-round"),
])
def test_impossible_participation_is_refused(values, message):
    with pytest.raises(UsageError, match=message):
        validate(Config(**values))


@pytest.mark.slow
def test_a_sampled_run_stopped_after_a_round_resumes_to_the_uninterrupted_metrics(tmp_path):
    """The participants depend on (seed, round) alone, so a resumed run draws the same ones."""
    import lfmsl

    config = Config(algorithm="locfedmix", clients=6, clients_per_round=3, rounds=3, batch_size=4, eval_clients=0, executor="vmap")
    whole = lfmsl.run(config, tmp_path / "whole", dataset=tiny_dataset(train=60), progress=False, checkpoint_every=1)
    lfmsl.run(dataclasses.replace(config, rounds=1), tmp_path / "part", dataset=tiny_dataset(train=60), progress=False, checkpoint_every=1)
    resumed = lfmsl.run(config, tmp_path / "part", resume=True, dataset=tiny_dataset(train=60), progress=False, checkpoint_every=1)
    timing = ("round_time_s", "wall_time_s")
    strip = lambda records: [{k: v for k, v in r.items() if k not in timing} for r in records]
    assert strip(resumed.history) == strip(whole.history) and all(r["participants"] == 3 for r in whole.history)
    # A sweep's tables recompute the cost fields from the configuration: for the K participants, as the run did.
    from lfmsl.costs.run_costs import annotate

    iterations = whole.summary["resolved"]["iterations_per_round"]
    assert strip(annotate([{"round": r["round"]} for r in whole.history], config, iterations)) == \
        [{k: r[k] for k in r if k.startswith(("comm_", "sim_")) or k == "round"} for r in whole.history]
