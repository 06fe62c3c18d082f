"""Executors: parsing, the measured `auto` choice, and equal results from every executor."""

import functools

import jax
from fast_jit import jit
import numpy as np
import pytest

from lfmsl import algorithms, models

from lfmsl.core import executors, numerics
from lfmsl.core.batching import make_client_data
from lfmsl.config import Config
from lfmsl.errors import UsageError
from lfmsl.models import get_model
from test_models import CNN_CLIENT, CNN_DECODER
from tolerance import EPS32, SGD, assert_chain_close, chain, sgd

pytestmark = pytest.mark.slow  # compiles training rounds: not in the fast part (.ci/python312)


def test_parse_executor():
    assert executors.parse_executor("vmap") == ("vmap", None)
    assert executors.parse_executor("chunked") == ("chunked", executors.DEFAULT_CHUNK)
    assert executors.parse_executor("chunked:3") == ("chunked", 3)
    for bad in ("pmap", "vmap:2", "chunked:x", "chunked:0"):
        with pytest.raises(UsageError):
            executors.parse_executor(bad)


def test_auto_follows_the_table_per_backend_and_client_count():
    for backend, rows in executors.AUTO_TABLE.items():
        for largest, choice in rows:
            executors.parse_executor(choice)  # every entry is a concrete executor
            assert choice != "auto"
            assert executors.resolve("auto", backend, min(largest, 10**6)) == choice
        assert executors.resolve("auto", backend) == rows[-1][1]
    assert executors.resolve("chunked:4", "gpu", 10) == "chunked:4"


def test_map_clients_equals_a_python_loop():
    fn = lambda a, b: (a * b.sum(), jax.numpy.tanh(a))
    a, b = np.random.default_rng(0).normal(size=(2, 7, 3)).astype(np.float32)
    want = [np.stack(x) for x in zip(*(fn(a[i], b[i]) for i in range(7)))]
    for spec in ("vmap", "chunked:3", "loop"):
        got = jit(executors.map_clients(fn, spec))(a, b)
        for g, w in zip(got, want):  # a sum of 3 and a product, or XLA's float32 tanh (within a few spacings)
            np.testing.assert_allclose(g, w, rtol=chain(3) + 8 * EPS32, atol=chain(3) * np.abs(w).max())


def one_round(algorithm: str, executor: str, conv: str, clients: int = 5, batch: int = 4, iterations: int = 2):
    config = Config(algorithm=algorithm, clients=clients, batch_size=batch, executor=executor, model="cnn", conv=conv, **SGD)
    model = get_model("cnn", (28, 28, 1), 10, conv)
    rng = np.random.default_rng(0)
    n = clients * batch * iterations
    client_indices = list(np.arange(n).reshape(clients, -1))
    data = make_client_data(rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, n),
                            client_indices)
    algorithm = algorithms.build(config, algorithms.context(config, model, clients, iterations, executor))
    key = jax.random.key(0)
    return jit(algorithm.round)(jit(algorithm.init)(key), data, key)


@pytest.mark.parametrize("conv", ["patches", "xla"])
def test_executors_give_the_same_client_gradients(conv):
    """The LocFedMix-SL client step (segment, decoder, reconstruction loss) through each executor:
    smashed data, local losses and the parameter gradients of a random downlink gradient."""
    model = get_model("cnn", (28, 28, 1), 10, conv)
    params = [models.init_params(model, jax.random.key(i)) for i in range(5)]
    stacked = jax.tree.map(lambda *xs: jax.numpy.stack(xs), *[{"lower": p["client"], "decoder": p["decoder"]} for p in params])
    images = jax.random.uniform(jax.random.key(9), (5, 3, 28, 28, 1))
    cotangent = jax.random.normal(jax.random.key(8), (5, 3, *model.smashed_shape))

    def one(p, x):
        s = model.client.apply({"params": p["lower"]}, x)
        return s, numerics.reconstruction_loss(model.decoder.apply({"params": p["decoder"]}, s), x)

    @functools.partial(jit, static_argnums=0)
    def run(spec, stacked, images, cotangent):
        out, vjp = jax.vjp(lambda p: executors.map_clients(one, spec)(p, images), stacked)
        return out, vjp((cotangent, jax.numpy.ones(5)))

    want = run("vmap", stacked, images, cotangent)
    for spec in ("chunked:3", "loop"):
        got = run(spec, stacked, images, cotangent)
        # One evaluation: forward through segment and decoder, the loss over 3 images' pixels, and back, where a
        # kernel's gradient sums over 3 images' pixels.
        sums = (*CNN_CLIENT, *CNN_DECODER, 3 * 28 * 28, *CNN_DECODER, *CNN_CLIENT, 3 * 28 * 28)
        jax.tree.map(lambda g, w: assert_chain_close(g, w, *sums, err_msg=spec), got, want)


def test_executors_give_the_same_round():
    """LocFedMix-SL (client segment, decoder, mixup, averaging): vmap vs lax.map, with a chunk
    size that does not divide the 5 clients; states and metrics after two SGD iterations (tolerance.py: under
    Adam a rounding difference in a near-zero gradient becomes a step, here rounding stays rounding)."""
    tolerance = sgd(steps=2, reduction=4 * 28 * 28)  # a kernel's gradient sums batch x pixels products
    want_state, want_metrics = one_round("locfedmix", "vmap", "patches")
    for spec in ("chunked:3", "loop"):
        state, metrics = one_round("locfedmix", spec, "patches")
        for name in ("clients", "client_opt", "server", "server_opt"):
            jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, **tolerance, err_msg=f"{spec} {name}"),
                         getattr(state, name), getattr(want_state, name))
        for key, value in want_metrics.items():
            np.testing.assert_allclose(metrics[key], value, **tolerance, err_msg=f"{spec} {key}")
