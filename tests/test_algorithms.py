"""The algorithms against independent computations, on a slice of real Fashion-MNIST (the original files)."""

from __future__ import annotations

import dataclasses

import jax
from fast_jit import jit
import jax.numpy as jnp
import numpy as np
import pytest

from lfmsl.core import numerics
from lfmsl.algorithms import build, context, recipe_for, rules
from lfmsl.algorithms.split import Recipe, build_split, init_state, make_step, optimizers
from lfmsl.core.batching import gather, iterations_per_round, make_client_data
from lfmsl.algorithms import names
from lfmsl.config import Config

ALGORITHMS = names()
from lfmsl.models import get_model
from tolerance import EPS32, SGD, assert_chain_close, reordered_sum, sgd

pytestmark = pytest.mark.slow  # compiles training rounds: not in the fast part (.ci/python312)

BATCH = 8
PIXELS = 28 * 28
# A round of three clients of up to 3 batches (sl: 9 steps), in the SGD regime (tolerance.py says why).
ROUND = sgd(steps=9, reduction=BATCH * PIXELS)


@pytest.fixture(scope="module")
def fashion_mnist(fashion_mnist_slice):
    return fashion_mnist_slice


@pytest.fixture(scope="module")
def model(fashion_mnist):
    return get_model("cnn", fashion_mnist.image_shape, fashion_mnist.num_classes)


def make_run(dataset, model, sizes, executor="vmap", **options):
    """ClientData for clients of the given sizes (consecutive training samples), a Context and the Config."""
    config = Config(batch_size=BATCH, clients=len(sizes), executor=executor, **options)
    bounds = np.cumsum([0] + list(sizes))
    client_indices = [np.arange(bounds[i], bounds[i + 1]) for i in range(len(sizes))]
    if config.algorithm == "centralized":
        client_indices = [np.concatenate(client_indices)]
    data = make_client_data(dataset.x_train, dataset.y_train, client_indices)
    ctx = context(config, model, len(client_indices), iterations_per_round([len(p) for p in client_indices], BATCH),
                  executor)
    return data, ctx, config


def assert_trees_close(a, b, rtol, atol):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def one_round(data, ctx, config, seed=0):
    algorithm = build(config, ctx)
    state = algorithm.init(jax.random.key(seed))
    return jit(algorithm.round)(state, data, jax.random.key(seed + 1))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_vectorised_and_loop_executors_give_the_same_state(fashion_mnist, model, algorithm):
    sizes = [24, 16, 20]  # unequal clients: wrap-around and weighted averaging are exercised
    results = {}
    for executor in ("vmap", "loop"):
        data, ctx, config = make_run(fashion_mnist, model, sizes, executor, algorithm=algorithm, **SGD)
        results[executor] = one_round(data, ctx, config)
    (state_v, metrics_v), (state_l, metrics_l) = results["vmap"], results["loop"]
    assert_trees_close(state_v, state_l, **ROUND)
    assert metrics_v.keys() == metrics_l.keys()
    assert_trees_close(metrics_v, metrics_l, **ROUND)
    assert int(state_v.step) == ctx.iterations * (len(sizes) if algorithm == "sl" else 1)


def test_averaging_equals_the_dataset_size_weighted_mean(fashion_mnist, model):
    """Averaged clients after a round = float64 weighted mean of the same round without averaging."""
    sizes = [8, 16, 40]
    data, ctx, config = make_run(fashion_mnist, model, sizes, algorithm="psl", **SGD)
    averaged = build_split(ctx, Recipe(rules.SharedServer(), rules.own_gradient(), averaging=rules.Averaging()))
    separate = build_split(ctx, Recipe(rules.SharedServer(), rules.own_gradient()))
    state = averaged.init(jax.random.key(0))
    key = jax.random.key(1)
    after_avg, _ = jit(averaged.round)(state, data, key)
    after_sep, _ = jit(separate.round)(state, data, key)
    delta = np.array(sizes, np.float64) / sum(sizes)
    for avg_leaf, sep_leaf in zip(jax.tree.leaves(after_avg.clients), jax.tree.leaves(after_sep.clients)):
        expected = np.tensordot(delta, np.asarray(sep_leaf, np.float64), axes=1)
        # Two programs' rounds (SGD: 5 steps), then a float32 mean of 3 clients against a float64 one.
        tolerance = sgd(steps=5, reduction=BATCH * PIXELS)
        magnitude = np.tensordot(delta, np.abs(np.asarray(sep_leaf, np.float64)), axes=1)
        for client in range(len(sizes)):
            np.testing.assert_allclose(np.asarray(avg_leaf[client]), expected, rtol=tolerance["rtol"],
                                       atol=tolerance["atol"] + reordered_sum(len(sizes), magnitude.max()))
    separate_leaf = np.asarray(jax.tree.leaves(after_sep.clients)[0])
    assert not np.allclose(separate_leaf[0], separate_leaf[2])


def test_weighted_average_and_drift_match_numpy():
    rng = np.random.default_rng(0)
    stacked = {"a": rng.normal(size=(4, 3, 2)).astype(np.float32), "b": rng.normal(size=(4, 5)).astype(np.float32)}
    weights = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    mean = numerics.weighted_average(jax.tree.map(jnp.asarray, stacked), jnp.asarray(weights))
    for name in stacked:  # one float32 sum of 4 terms against numpy's: reordered_sum bounds it
        magnitude = np.einsum("i,i...->...", weights, np.abs(stacked[name]))
        np.testing.assert_allclose(mean[name], np.einsum("i,i...->...", weights, stacked[name]), rtol=0,
                                   atol=reordered_sum(4, magnitude.max()))
    average = {n: np.einsum("i,i...->...", weights, stacked[n]) for n in stacked}
    distances = [np.sqrt(sum(np.sum((stacked[n][i] - average[n]) ** 2) for n in stacked)) for i in range(4)]
    # A chain of a mean of 4, a norm of 6 + 5 squares and a mean of 4.
    assert_chain_close(numerics.distance_to_average(stacked, jnp.asarray(weights)), np.mean(distances), 4, 11, 4)


def test_partners_are_other_clients_and_distinct():
    for seed in range(50):
        partners = np.asarray(numerics.draw_partners(jax.random.key(seed), 6, 3))
        assert partners.shape == (6, 3)
        for i, row in enumerate(partners):
            assert i not in row
            assert len(set(row)) == 3
    drawn = [np.asarray(numerics.draw_partners(jax.random.key(s), 5, 1))[0] for s in range(400)]
    counts = np.bincount(np.concatenate(drawn), minlength=5)
    assert counts[0] == 0 and counts[1:].min() > 60  # uniform over the other four clients


def test_mixup_mixes_two_different_clients_with_one_lambda_per_pair():
    """Client i's smashed data is the constant i and its labels are i: each mixed sample reveals its pair."""
    num_clients, batch, partners = 5, 4, 2
    smashed = jnp.broadcast_to(jnp.arange(num_clients, dtype=jnp.float32)[:, None, None], (num_clients, batch, 3))
    labels = jnp.broadcast_to(jnp.arange(num_clients)[:, None], (num_clients, batch))
    mixed, soft, pair = numerics.smashed_mixup(jax.random.key(3), smashed, labels, num_clients, partners, alpha=1.0)
    mixed, soft, pair = map(np.asarray, (mixed, soft, pair))
    assert mixed.shape == (num_clients, partners, batch, 3)
    assert soft.shape == (num_clients, partners, batch, num_clients)
    for i in range(num_clients):
        for p in range(partners):
            j = pair[i, p]
            assert j != i
            lam = soft[i, p, :, i]
            np.testing.assert_array_equal(lam, lam[0])  # one lambda per pair of batches: the same float
            # 1 - lam rounds once in float32 (here and in numpy's float32): one spacing at most.
            np.testing.assert_allclose(soft[i, p, :, j], 1 - lam, rtol=0, atol=EPS32)
            # lam * i + (1 - lam) * j: three roundings of values of at most num_clients.
            np.testing.assert_allclose(mixed[i, p, :, 0], lam * i + (1 - lam) * j, rtol=0, atol=3 * EPS32 * num_clients)


def test_mixup_trains_only_the_server(fashion_mnist, model):
    """One iteration with and without mixup from the same state: same clients, different server."""
    data, ctx, config = make_run(fashion_mnist, model, [16, 16, 16], algorithm="locfedmix", loc=False, fed=False, **SGD)
    images, labels = gather(data, jnp.arange(48).reshape(3, 16)[:, :BATCH])
    results = []
    for server in (rules.SharedServer(rules.Mixup()), rules.SharedServer()):
        recipe = Recipe(server, rules.own_gradient())
        client_opt, server_opt = optimizers(ctx, recipe)
        state = init_state(ctx, recipe, jax.random.key(0), client_opt, server_opt, 3)
        step = make_step(ctx, recipe, client_opt, server_opt)
        results.append(jit(step)(state, images, labels, data.weights, jax.random.key(5))[0])
    mixed, plain = results
    # one SGD step by two programs
    assert_trees_close(mixed.clients, plain.clients, **sgd(steps=1, reduction=BATCH * PIXELS))
    pairs = zip(jax.tree.leaves(mixed.server), jax.tree.leaves(plain.server))
    difference = max(float(jnp.max(jnp.abs(a - b))) for a, b in pairs)
    assert difference > 1e-5


def test_psl_with_one_client_equals_centralized_training(fashion_mnist, model):
    states = {}
    """12 SGD steps: under Adam, the two programs' rounding grew to a thousandth of a step on an AVX-512 CPU."""
    for algorithm in ("psl", "centralized"):
        data, ctx, config = make_run(fashion_mnist, model, [96], algorithm=algorithm, **SGD)
        states[algorithm] = one_round(data, ctx, config)
    (psl, psl_metrics), (central, central_metrics) = states["psl"], states["centralized"]
    first_client = jax.tree.map(lambda leaf: leaf[0], psl.clients["lower"])
    tolerance = sgd(steps=12, reduction=BATCH * PIXELS)
    assert_trees_close({"lower": first_client, "upper": psl.server}, central.clients, **tolerance)
    np.testing.assert_allclose(psl_metrics["train_loss"], central_metrics["train_loss"], **tolerance)


def test_sflv1_equals_fedavg(fashion_mnist, model):
    """SplitFed V1 is FedAvg computed in two halves: same models after a round."""
    out = {}
    for algorithm in ("sflv1", "fedavg"):
        data, ctx, config = make_run(fashion_mnist, model, [16, 24], algorithm=algorithm, **SGD)
        out[algorithm] = one_round(data, ctx, config)[0]
    assert_trees_close(out["sflv1"].clients["lower"], out["fedavg"].clients["lower"], **ROUND)
    assert_trees_close(out["sflv1"].server, out["fedavg"].clients["upper"], **ROUND)


def test_locsplitfed_sends_no_gradient_down(fashion_mnist, model):
    """LocSplitFed's clients learn from their auxiliary loss alone: the server cannot change them."""
    data, ctx, config = make_run(fashion_mnist, model, [16, 16], algorithm="locsplitfed")
    algorithm = build(config, ctx)
    state = algorithm.init(jax.random.key(0))
    altered = state._replace(server=jax.tree.map(lambda s: s * 3.0, state.server))
    after, _ = jit(algorithm.round)(state, data, jax.random.key(1))
    after_altered, _ = jit(algorithm.round)(altered, data, jax.random.key(1))
    # One program, other server values: the clients' arithmetic is the same, so bit for bit on any CPU.
    for a, b in zip(jax.tree.leaves(after.clients), jax.tree.leaves(after_altered.clients), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_update_ratio_grows_with_clients_for_psl(fashion_mnist, model):
    """The server-client update imbalance the paper names: the server learns from all clients."""
    ratios = []
    for count in (1, 4):
        data, ctx, config = make_run(fashion_mnist, model, [16] * count, algorithm="psl", client_grad="global",
                                     optimizer="sgd", lr=0.05)
        ratios.append(float(one_round(data, ctx, config)[1]["update_ratio"]))
    assert ratios[1] > 1.5 * ratios[0]


def _one_iteration(fashion_mnist, model, sizes, **options):
    """One iteration of `options`' algorithm from its initial state: (state before, after, metrics)."""
    data, ctx, config = make_run(fashion_mnist, model, sizes, **options)
    images, labels = gather(data, jnp.arange(sum(sizes)).reshape(len(sizes), -1)[:, :BATCH])
    recipe = recipe_for(config)
    client_opt, server_opt = optimizers(ctx, recipe)
    state = init_state(ctx, recipe, jax.random.key(0), client_opt, server_opt, len(sizes))
    step = jit(make_step(ctx, recipe, client_opt, server_opt))
    after, metrics = step(state, images, labels, data.weights, jax.random.key(5))
    return state, after, metrics


def test_decoder_steps_along_dr_dh_unscaled_and_beta_weighs_only_the_client_pull(fashion_mnist, model):
    """Under SGD an update is linear in the gradient: the decoder's is the same for every beta,
    and the client segment's is g + beta * dR/dw, so beta = 0.5 lands half-way between 0 and 1."""
    runs = {beta: _one_iteration(fashion_mnist, model, [16, 16], algorithm="locfedmix", optimizer="sgd", lr=0.1,
                                 fed=False, loc_weight=beta)
            for beta in (0.0, 0.5, 1.0)}
    decoders = {beta: after.clients["decoder"] for beta, (_, after, _) in runs.items()}
    before = runs[1.0][0].clients["decoder"]
    moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(decoders[1.0]), jax.tree.leaves(before)))
    assert moved > 1e-6  # the decoder learns, at beta = 0 as well
    step = sgd(steps=1, reduction=BATCH * PIXELS, lr=0.1)  # one SGD step, by programs compiled for each beta
    assert_trees_close(decoders[0.0], decoders[1.0], **step)
    assert_trees_close(decoders[0.5], decoders[1.0], **step)
    lowers = {beta: after.clients["lower"] for beta, (_, after, _) in runs.items()}
    halfway = jax.tree.map(lambda a, b: (a + b) / 2, lowers[0.0], lowers[1.0])
    assert_trees_close(lowers[0.5], halfway, **step)
    pairs = zip(jax.tree.leaves(lowers[0.0]), jax.tree.leaves(lowers[1.0]))
    pulled = max(float(jnp.max(jnp.abs(a - b))) for a, b in pairs)
    assert pulled > 1e-6  # beta does move the client segment


def test_sflv2_update_ratio_is_the_whole_iterations_server_update(fashion_mnist, model):
    """SFL-V2's server takes N steps an iteration; its relative update is that of all N together."""
    before, after, metrics = _one_iteration(fashion_mnist, model, [16, 16, 16], algorithm="sflv2")
    flat = lambda tree: np.concatenate([np.asarray(leaf, np.float64).ravel() for leaf in jax.tree.leaves(tree)])
    update = np.linalg.norm(flat(after.server) - flat(before.server))
    expected = update / np.linalg.norm(flat(before.server))
    # A float32 parameter holds its value to EPS32 / 2 relative, before and after: the update's norm, a difference
    # of parameters here and a sum of steps in the metric, is known to 2 EPS32 ||theta|| / ||update||.
    rtol = 2 * EPS32 * np.linalg.norm(flat(after.server)) / update
    np.testing.assert_allclose(float(metrics["server_rel"]), expected, rtol=rtol)


def _metrics_without_counts(metrics):
    return {k: v for k, v in metrics.items() if k != "active_clients"}


@pytest.mark.parametrize("algorithm", [a for a in ALGORITHMS if a != "centralized"])
def test_epoch_mode_with_equal_clients_is_the_wrap_mode(fashion_mnist, model, algorithm):
    """Every client's epoch is the round's, so both modes compute the same (up to renormalising weights)."""
    out = {}
    for mode in ("wrap", "epoch"):
        data, ctx, config = make_run(fashion_mnist, model, [16, 16, 16], algorithm=algorithm, round_mode=mode, **SGD)
        out[mode] = one_round(data, ctx, config)
    assert_trees_close(out["wrap"][0], out["epoch"][0], **ROUND)
    assert_trees_close(_metrics_without_counts(out["wrap"][1]), _metrics_without_counts(out["epoch"][1]), **ROUND)


@pytest.mark.parametrize("options", [dict(algorithm="locfedmix", mix=False, fed=False)])  # PSL plus the decoder
def test_epoch_mode_equals_a_loop_over_each_iterations_participants(fashion_mnist, model, options):
    """Client 0 has 3 batches, client 1 one: after iteration 1 the round goes on with client 0 alone,
    which is a one-client step on client 0's slice of the state, written out here iteration by iteration."""
    sizes, key = [24, 8], jax.random.key(7)
    data, ctx, config = make_run(fashion_mnist, model, sizes, round_mode="epoch", **options, **SGD)
    algorithm = build(config, ctx)
    start = algorithm.init(jax.random.key(0))
    expected_state, _ = jit(algorithm.round)(start, data, key)

    from lfmsl.core.batching import round_batches

    batch_key, step_key = jax.random.split(key)
    indices = round_batches(batch_key, data, ctx.iterations, BATCH)
    keys = jax.random.split(step_key, ctx.iterations)
    recipe = recipe_for(config)
    both = jit(make_step(dataclasses.replace(ctx, round_mode="wrap"), recipe, *optimizers(ctx, recipe)))
    ctx_one = dataclasses.replace(ctx, num_clients=1)
    alone = jit(make_step(ctx_one, recipe, *optimizers(ctx_one, recipe)))  # compiled: op by op took 30 s
    images, labels = gather(data, indices[0])
    state, _ = both(start, images, labels, data.weights, keys[0])
    client = lambda tree, i: jax.tree.map(lambda leaf: leaf[i:i + 1], tree)
    for t in (1, 2):
        images, labels = gather(data, indices[t][:1])
        sliced = state._replace(clients=client(state.clients, 0), client_opt=client(state.client_opt, 0))
        sliced, _ = alone(sliced, images, labels, jnp.ones(1), keys[t])
        merge = lambda one, full: jax.tree.map(lambda a, b: b.at[0].set(a[0]), one, full)
        state = sliced._replace(clients=merge(sliced.clients, state.clients),
                                client_opt=merge(sliced.client_opt, state.client_opt))
    assert ctx.iterations == 3
    assert_trees_close(expected_state.clients, state.clients, **ROUND)
    assert_trees_close(expected_state.server, state.server, **ROUND)


def test_partners_are_drawn_among_the_active_clients():
    active = jnp.array([True, True, True, False, False, True])
    for seed in range(20):
        partners = np.asarray(numerics.draw_partners(jax.random.key(seed), 6, 3, active))
        for i, row in enumerate(partners):
            assert i not in row and len(set(row)) == 3
            assert all(active[j] for j in row), (i, row)  # every client has at least 3 other active clients


@pytest.mark.parametrize(
    "base, inert",
    [
        (dict(algorithm="locsplitfed"), dict(client_grad="global")),  # no gradient goes down at all
        (dict(algorithm="locfedmix", fed=False, mix=False), dict(avg_every=1, mix_alpha=0.3)),
    ],
)
def test_options_refused_as_inert_change_nothing_where_they_are_refused(fashion_mnist, model, base, inert):
    """Why validate refuses them: the round is bit for bit the same with or without them."""
    from lfmsl.algorithms import inert_options

    assert set(inert) == set(inert_options(Config(**base, **inert)))
    plain = one_round(*make_run(fashion_mnist, model, [16, 16, 16], **base))
    given = one_round(*make_run(fashion_mnist, model, [16, 16, 16], **base, **inert))
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(given), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
