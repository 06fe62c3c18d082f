"""Where the model is cut: every cut composes into the same network, its decoder and auxiliary
head fit the smashed shape, split training equals stacked training, and the costs follow."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fast_jit

from lfmsl import models

from lfmsl.costs import comm
from lfmsl.algorithms import build, context
from lfmsl.core.batching import iterations_per_round, make_client_data
from lfmsl.algorithms import validate
from lfmsl.config import Config
from lfmsl.errors import UsageError
from tolerance import SGD, assert_chain_close, fan_ins, sgd

SHAPES = {"cnn": (8, 8, 1), "allconv": (8, 8, 1), "resnet18": (8, 8, 3)}  # small images: cheap to compile
CUTS = [(name, cut) for name in models.MODELS
        for cut in range(models.cut_range(name)[0], models.cut_range(name)[1] + 1)]


def images(shape, count=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, *shape), dtype=np.uint8)


@pytest.mark.parametrize("name, cut", CUTS)
def test_every_cut_composes_into_the_same_network(name, cut):
    """The server segment on the client segment is the whole network, with the same parameters."""
    model = models.get_model(name, SHAPES[name], 10, cut=cut)
    arch = models.ARCHITECTURES[name]
    whole = models.Segment(name, 0, arch.blocks, 10, model.client.conv_impl)
    x = jnp.asarray(images(SHAPES[name]), jnp.float32) / 255.0
    params = fast_jit.jit(whole.init)(jax.random.key(1), x)["params"]  # level 0: both sides see the same params
    client_keys = set(jax.eval_shape(model.client.init, jax.random.key(0), x)["params"])
    lower = {k: v for k, v in params.items() if k in client_keys}
    upper = {k: v for k, v in params.items() if k not in client_keys}
    assert lower and upper and len(lower) + len(upper) == len(params)

    @fast_jit.jit
    def split_and_whole(lower, upper, params):
        smashed = model.client.apply({"params": lower}, x)
        return smashed, model.server.apply({"params": upper}, smashed), whole.apply({"params": params}, x)

    smashed, split, stacked = split_and_whole(lower, upper, params)
    assert smashed.shape[1:] == model.smashed_shape
    # One evaluation: every layer's products, then the normalisation, pooling or activation after it.
    assert_chain_close(split, stacked, *fan_ins(params), *fan_ins(params))


@pytest.mark.parametrize("name, cut", CUTS)
def test_decoder_and_auxiliary_head_fit_every_smashed_shape(name, cut):
    model = models.get_model(name, SHAPES[name], 10, cut=cut)
    smashed = jnp.asarray(np.random.default_rng(0).normal(size=(3, *model.smashed_shape)), jnp.float32)

    @fast_jit.jit
    def heads(smashed):
        decoder = model.decoder.init(jax.random.key(0), smashed)
        aux = model.aux.init(jax.random.key(1), smashed)
        return model.decoder.apply(decoder, smashed), model.aux.apply(aux, smashed)

    reconstruction, logits = heads(smashed)
    assert reconstruction.shape == (3, *SHAPES[name]) and bool(jnp.all((reconstruction > 0) & (reconstruction < 1)))
    assert logits.shape == (3, 10)


def test_the_default_cuts_are_todays_models():
    """cnn after its second pool (smashed 7x7x64), resnet18 after stage 1: today's segments."""
    assert models.get_model("cnn", (28, 28, 1), 10).smashed_shape == (7, 7, 64)
    assert models.get_model("resnet18", (32, 32, 3), 10).smashed_shape == (32, 32, 64)
    assert models.get_model("allconv", (28, 28, 1), 10).smashed_shape == (14, 14, 16)
    assert models.get_model("allconv", (28, 28, 1), 10, cut=5).smashed_shape == (7, 7, 64)


# Every model trains with SGD (tolerance.py): Adam turns rounding on near-zero gradients into whole steps
# (sign(g) * lr), and resnet18 has many such weights: compiled at level 0, with the patch convolutions' summation
# order or from other initial bits, 1 weight in 150,000 to 600,000 moved past the tolerance under Adam. SGD's
# steps are proportional to the gradient, rounding stays rounding, and a rate of 0.05 moves the weights by 6 to 8 %
# in a round. So every model compiles fast (fast_jit.py) with the patch convolutions (level 0 runs XLA's own
# convolutions as slow loops): about 18 s a resnet18 case against 30 s at the default level.
# A round is 3 steps of batch 4 on 8 x 8 images: a kernel's gradient sums 4 x 64 products.
ROUND = sgd(steps=3, reduction=4 * 64)


def run_one_round(name, cut, algorithm, executor="vmap", sizes=(12,)):
    config = Config(algorithm=algorithm, model=name, cut=cut, batch_size=4, clients=len(sizes), executor=executor,
                    conv="patches", **SGD)
    model = models.get_model(name, SHAPES[name], 10, conv_impl="patches", cut=cut)
    bounds = np.cumsum([0, *sizes])
    client_indices = [np.arange(bounds[i], bounds[i + 1]) for i in range(len(sizes))]
    learners = [np.concatenate(client_indices)] if algorithm == "centralized" else client_indices
    labels = np.random.default_rng(1).integers(0, 10, bounds[-1]).astype(np.int32)
    data = make_client_data(images(SHAPES[name], bounds[-1]), labels, learners)
    ctx = context(config, model, len(learners), iterations_per_round([len(p) for p in learners], 4), executor)
    algorithm = build(config, ctx)
    state = fast_jit.jit(algorithm.init)(jax.random.key(0))  # see fast_jit.py
    return fast_jit.jit(algorithm.round)(state, data, jax.random.key(1))


@pytest.mark.slow
@pytest.mark.parametrize("name, cut", CUTS)
def test_psl_with_one_client_equals_centralized_training_at_every_cut(name, cut):
    psl, psl_metrics = run_one_round(name, cut, "psl")
    central, central_metrics = run_one_round(name, cut, "centralized")
    lower = jax.tree.map(lambda leaf: leaf[0], psl.clients["lower"])
    for a, b in zip(jax.tree.leaves({"lower": lower, "upper": psl.server}), jax.tree.leaves(central.clients)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **ROUND)
    np.testing.assert_allclose(psl_metrics["train_loss"], central_metrics["train_loss"], **ROUND)


@pytest.mark.slow
@pytest.mark.parametrize("cut, algorithm", [(1, "locfedmix"), (4, "locsplitfed")])
def test_allconv_executors_agree(cut, algorithm):
    results = [run_one_round("allconv", cut, algorithm, executor, sizes=(8, 12, 4)) for executor in ("vmap", "loop")]
    for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **ROUND)


# Costs against hand counts for two cuts of allconv on 28x28x1 (weights + biases, 4 bytes each).
CONV = lambda cin, cout: 3 * 3 * cin * cout + cout
HAND = {
    1: dict(client=CONV(1, 16), smashed=14 * 14 * 16, macs=28 * 28 * 9 * 16),
    4: dict(client=CONV(1, 16) + CONV(16, 16) + CONV(16, 32) + CONV(32, 32), smashed=7 * 7 * 32,
            macs=28 * 28 * 9 * 16 + 14 * 14 * 9 * (16 * 16 + 16 * 32) + 7 * 7 * 9 * 32 * 32),
}
TOTAL = CONV(1, 16) + CONV(16, 16) + CONV(16, 32) + CONV(32, 32) + CONV(32, 64) + 64 * 10 + 10


@pytest.mark.parametrize("cut", sorted(HAND))
def test_ledger_and_flops_follow_the_cut(cut):
    from lfmsl.costs.latency import forward_flops, model_for

    config = Config(algorithm="sflv2", model="allconv", cut=cut, clients=5, batch_size=8)
    model = model_for(config)
    sizes = comm.part_sizes(model)
    assert sizes["client"] == HAND[cut]["client"] and sizes["client"] + sizes["server"] == TOTAL
    sent = comm.round_bytes(comm.traffic(config, model, 3), config, 0)
    assert sent["smashed_up"] == 3 * 5 * 8 * HAND[cut]["smashed"] * 4
    assert sent["client_weights_up"] == 5 * HAND[cut]["client"] * 4
    flops = forward_flops(model)["client"]
    # XLA skips padding taps, adds bias, ReLU, pool
    assert 0.9 * 2 * HAND[cut]["macs"] <= flops <= 1.15 * 2 * HAND[cut]["macs"]


@pytest.mark.parametrize("values, message", [
    (dict(cut=4), "--cut .* is out of range"), (dict(cut=0), "--cut must be a positive integer, got 0"),
    (dict(model="resnet18", cut=4), "--cut .* is out of range"), (dict(model="allconv", cut=6), "--cut .* is out of range")])
def test_a_cut_out_of_range_is_one_clear_error(values, message):
    with pytest.raises(UsageError, match=message):
        validate(Config(**values))
