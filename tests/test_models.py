"""Tests of the split models: shapes, parameter counts, the cut, per-client vectorisation."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fast_jit

from lfmsl import models
from lfmsl.errors import UsageError
from tolerance import assert_chain_close

MNIST = (28, 28, 1)
CIFAR = (32, 32, 3)

# The float32 sums each comparison below chains (tolerance.chain): one evaluation, where rounding is not amplified.
# cnn: conv 3x3 on 1 and on 32 channels, Dense over 7 x 7 x 64 and 128; its decoder's transposed convolutions sum
# at most 3 x 3 x 64 and 3 x 3 x 32 taps.
CNN_CLIENT, CNN_SERVER, CNN_DECODER = (9, 288), (3136, 128), (576, 288)
# resnet18's client: the stem's conv 3x3x3 and 4 convs 3x3x64, each followed by a GroupNorm whose mean and variance
# sum 8 channels x 32 x 32 pixels.
RESNET_CLIENT = (27, 8192, 8192) + (576, 8192, 8192) * 4


@pytest.fixture(scope="module")
def cnn():
    return models.get_model("cnn", MNIST, 10)


@pytest.fixture(scope="module")
def cnn_params(cnn):
    return models.init_params(cnn, jax.random.key(0))


@pytest.fixture(scope="module")
def resnet():
    return models.get_model("resnet18", CIFAR, 10)


@pytest.fixture(scope="module")
def resnet_params(resnet):
    return fast_jit.jit(lambda key: models.init_params(resnet, key))(jax.random.key(0))  # level 0: about 1 s, not 7 (fast_jit.py)


def images(shape, batch, seed=0):
    return jax.random.uniform(jax.random.key(seed), (batch, *shape), jnp.float32)


def apply(part, params, x):
    return part.apply({"params": params}, x)


def stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


# ---------------------------------------------------------------------------------- shapes


@pytest.mark.slow
@pytest.mark.parametrize("name,shape,smashed", [("cnn", MNIST, (7, 7, 64)),
                                                 ("resnet18", CIFAR, (32, 32, 64))])
def test_output_shapes(name, shape, smashed, request):
    model = request.getfixturevalue("cnn" if name == "cnn" else "resnet")
    params = request.getfixturevalue("cnn_params" if name == "cnn" else "resnet_params")
    assert model.smashed_shape == smashed and model.input_shape == shape
    x = images(shape, 2)

    @fast_jit.jit  # one program, not op by op
    def parts(params, x):
        s = apply(model.client, params["client"], x)
        return s, apply(model.server, params["server"], s), apply(model.aux, params["aux"], s), apply(model.decoder, params["decoder"], s)

    s, logits, aux_logits, rec = parts(params, x)
    assert s.shape == (2, *smashed) and s.dtype == jnp.float32
    assert logits.shape == (2, 10)
    assert aux_logits.shape == (2, 10)
    assert rec.shape == x.shape
    assert float(rec.min()) > 0.0 and float(rec.max()) < 1.0
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))


def test_cnn_other_input_shape():
    model = models.get_model("cnn", (32, 32, 3), 5)
    params = models.init_params(model, jax.random.key(0))
    assert model.smashed_shape == (8, 8, 64)
    s = apply(model.client, params["client"], images((32, 32, 3), 1))
    assert apply(model.decoder, params["decoder"], s).shape == (1, 32, 32, 3)
    assert apply(model.server, params["server"], s).shape == (1, 5)


# ------------------------------------------------------------------------- parameter counts


def test_cnn_param_counts(cnn_params):
    conv1 = 3 * 3 * 1 * 32 + 32
    conv2 = 3 * 3 * 32 * 64 + 64
    flat = 7 * 7 * 64
    expected = {
        "client": conv1 + conv2,
        "server": flat * 128 + 128 + 128 * 10 + 10,
        "decoder": 3 * 3 * 64 * 32 + 32 + 3 * 3 * 32 * 1 + 1,
        "aux": flat * 10 + 10,
    }
    got = {k: models.count_params(v) for k, v in cnn_params.items()}
    assert got == expected
    assert got["client"] == 18816


@pytest.mark.slow
def test_resnet_param_counts(resnet_params):
    block = 2 * (3 * 3 * 64 * 64 + 2 * 64)  # two convs without bias, two GroupNorms
    assert models.count_params(resnet_params["client"]) == 3 * 3 * 3 * 64 + 2 * 64 + 2 * block
    assert models.count_params(resnet_params["aux"]) == 64 * 10 + 10


def test_init_is_deterministic(cnn):
    a, b = (models.init_params(cnn, jax.random.key(3)) for _ in range(2))
    c = models.init_params(cnn, jax.random.key(4))
    assert jax.tree.all(jax.tree.map(lambda u, v: bool(jnp.array_equal(u, v)), a, b))
    assert not jnp.array_equal(a["client"]["conv1"]["kernel"], c["client"]["conv1"]["kernel"])
    assert set(a) == {"client", "server", "decoder", "aux"}


# ------------------------------------------------------------------------------- the cut


def test_cnn_split_equals_full_forward_in_pure_jax(cnn, cnn_params):
    """server(client(x)) must be the whole network, written out here without Flax."""
    p = cnn_params
    x = images(MNIST, 3)

    def conv(x, layer):
        y = jax.lax.conv_general_dilated(x, layer["kernel"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + layer["bias"]

    def pool(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    h = pool(jax.nn.relu(conv(x, p["client"]["conv1"])))
    h = pool(jax.nn.relu(conv(h, p["client"]["conv2"])))
    h = h.reshape(3, -1)
    h = jax.nn.relu(h @ p["server"]["fc1"]["kernel"] + p["server"]["fc1"]["bias"])
    want = h @ p["server"]["fc2"]["kernel"] + p["server"]["fc2"]["bias"]

    got = apply(cnn.server, p["server"], apply(cnn.client, p["client"], x))
    assert_chain_close(got, want, *CNN_CLIENT, *CNN_SERVER)


# -------------------------------------------------------------------- per-client execution


def test_vmap_and_lax_map_over_clients_equal_loop(cnn):
    n = 3
    per_client = [models.init_params(cnn, jax.random.key(i)) for i in range(n)]
    stacked = stack(per_client)
    x = jnp.stack([images(MNIST, 2, seed=i) for i in range(n)])

    def forward(p, x):
        s = apply(cnn.client, p["client"], x)
        return apply(cnn.server, p["server"], s), apply(cnn.decoder, p["decoder"], s)

    loop = stack([forward(per_client[i], x[i]) for i in range(n)])
    vmapped = jax.jit(jax.vmap(forward))(stacked, x)
    mapped = jax.jit(lambda p, x: jax.lax.map(lambda a: forward(*a), (p, x)))(stacked, x)
    for got in (vmapped, mapped):
        jax.tree.map(lambda g, w: assert_chain_close(g, w, *CNN_CLIENT, *CNN_SERVER, *CNN_DECODER), got, loop)


@pytest.mark.slow
def test_vmap_over_resnet_clients_equals_loop(resnet):
    init = fast_jit.jit(lambda key: models.init_params(resnet, key)["client"])  # both sides compiled alike and fast
    per_client = [init(jax.random.key(i)) for i in range(2)]
    x = jnp.stack([images(CIFAR, 1, seed=i) for i in range(2)])
    one = lambda p, x: apply(resnet.client, p, x)
    want = jnp.stack([fast_jit.jit(one)(per_client[i], x[i]) for i in range(2)])
    got = fast_jit.jit(jax.vmap(one))(stack(per_client), x)
    assert_chain_close(got, want, *RESNET_CLIENT)


# ------------------------------------------------------------------------------- PatchConv


@pytest.mark.parametrize("kernel,strides,padding", [((3, 3), (1, 1), "SAME"),
                                                    ((2, 3), (2, 1), "VALID")])
def test_patch_conv_equals_nn_conv(kernel, strides, padding):
    ref = nn.Conv(16, kernel, strides, padding=padding)
    patch = models.PatchConv(16, kernel, strides, padding=padding)
    x = images((9, 10, 3), 2)
    params = ref.init(jax.random.key(0), x)["params"]
    assert jax.tree.map(jnp.shape, patch.init(jax.random.key(0), x)["params"]) == \
        jax.tree.map(jnp.shape, params)
    taps = kernel[0] * kernel[1] * 3  # one convolution: each output sums kh x kw x 3 products
    assert_chain_close(apply(patch, params, x), apply(ref, params, x), taps)

    # Stacked per-client kernels under vmap: grouped conv vs. batched matmul.
    stacked = stack([ref.init(jax.random.key(i), x)["params"] for i in range(3)])
    xs = jnp.stack([images((9, 10, 3), 2, seed=i) for i in range(3)])
    want = jax.vmap(lambda p, x: apply(ref, p, x))(stacked, xs)
    got = jax.vmap(lambda p, x: apply(patch, p, x))(stacked, xs)
    assert_chain_close(got, want, taps)


def test_cnn_conv_impls_are_interchangeable(cnn, cnn_params):
    # The model's default is the patch convolutions: compare them with XLA's own.
    patches, xla = cnn.client.clone(conv_impl="patches"), cnn.client.clone(conv_impl="xla")
    x = images(MNIST, 2)
    assert jax.tree.map(jnp.shape, patches.init(jax.random.key(0), x)["params"]) == \
        jax.tree.map(jnp.shape, cnn_params["client"])
    stacked = stack([cnn_params["client"], models.init_params(cnn, jax.random.key(1))["client"]])
    xs = jnp.stack([x, images(MNIST, 2, seed=1)])
    want = jax.vmap(lambda p, x: apply(xla, p, x))(stacked, xs)
    got = jax.vmap(lambda p, x: apply(patches, p, x))(stacked, xs)
    assert_chain_close(got, want, *CNN_CLIENT)
    with pytest.raises(UsageError):
        cnn.client.clone(conv_impl="nope").init(jax.random.key(0), x)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["subpixel", "overlap_add"])
@pytest.mark.parametrize("kernel,strides,shape,features", [((3, 3), (2, 2), (7, 7, 4), 6),
                                                           ((3, 3), (2, 2), (6, 5, 3), 1),
                                                           ((4, 4), (2, 2), (5, 5, 2), 6),
                                                           ((2, 3), (2, 1), (4, 6, 3), 2),
                                                           ((5, 5), (3, 3), (3, 4, 2), 6),
                                                           ((3, 3), (1, 1), (5, 5, 2), 6)])
def test_patch_conv_transpose_equals_nn_conv_transpose(kernel, strides, shape, features, method):
    ref = nn.ConvTranspose(features, kernel, strides, padding="SAME")
    patch = models.PatchConvTranspose(features, kernel, strides, method=method)
    x = images(shape, 2)
    params = ref.init(jax.random.key(0), x)["params"]
    assert jax.tree.map(jnp.shape, patch.init(jax.random.key(0), x)["params"]) == \
        jax.tree.map(jnp.shape, params)
    taps = kernel[0] * kernel[1] * shape[2]  # each output sums at most kh x kw x channels products
    assert_chain_close(apply(patch, params, x), apply(ref, params, x), taps)

    # Stacked per-client kernels under vmap, values and gradients (parameters and input).
    stacked = stack([ref.init(jax.random.key(i), x)["params"] for i in range(3)])
    xs = jnp.stack([images(shape, 2, seed=i) for i in range(3)])
    cotangent = jax.random.normal(jax.random.key(5), jax.vmap(lambda p, x: apply(ref, p, x))(stacked, xs).shape)

    def value_and_grads(module):  # one program, compiled fast (fast_jit.py), not op by op
        loss = lambda p, x: jnp.sum(jax.vmap(lambda p, x: apply(module, p, x))(p, x) * cotangent)
        return fast_jit.jit(jax.value_and_grad(loss, argnums=(0, 1)))(stacked, xs)

    (want, want_grads), (got, got_grads) = value_and_grads(ref), value_and_grads(patch)
    # The loss sums every output of the 3 clients; a kernel's gradient sums over 2 images' pixels, the input's over
    # kh x kw x features taps.
    outputs = int(np.prod(cotangent.shape))
    assert_chain_close(got, want, taps, outputs)
    pixels = 2 * int(np.prod(cotangent.shape[2:4])) * strides[0] * strides[1]
    jax.tree.map(lambda g, w: assert_chain_close(g, w, taps, pixels, kernel[0] * kernel[1] * features), got_grads, want_grads)


def test_patch_conv_transpose_auto_takes_the_narrower_intermediate():
    """The cnn decoder: its 64 -> 32 layer is sub-pixel (256 < 288 wide), its 32 -> 1 output
    layer overlap-add (9 < 128): seen in which product the jaxpr contains."""
    def contraction_widths(features, cin):
        module = models.PatchConvTranspose(features)
        x = jnp.zeros((1, 7, 7, cin))
        params = module.init(jax.random.key(0), x)
        jaxpr = jax.make_jaxpr(lambda p: module.apply(p, x))(params).jaxpr
        return {e.outvars[0].aval.shape[-1] for e in jaxpr.eqns  # products over the image's pixels
                if e.primitive.name == "dot_general" and e.outvars[0].aval.shape[:3] == (1, 7, 7)}
    assert contraction_widths(32, 64) == {4 * 32}  # sub-pixel: 4 phases x 32 out
    assert contraction_widths(1, 32) == {9}  # overlap-add: 9 taps x 1 out
    with pytest.raises(UsageError, match="method"):
        models.PatchConvTranspose(2, method="nope").init(jax.random.key(0), images((4, 4, 1), 1))


def test_patch_conv_transpose_rejects_other_padding():
    with pytest.raises(UsageError, match="SAME"):
        models.PatchConvTranspose(2, padding="VALID").init(jax.random.key(0), images((4, 4, 1), 1))


def test_reshape_max_pool_equals_nn_max_pool_with_gradient():
    x = jax.random.normal(jax.random.key(3), (2, 8, 6, 5))
    weights = jax.random.normal(jax.random.key(4), (2, 4, 3, 5))
    grad = lambda f, x: jax.grad(lambda x: jnp.sum(f(x) * weights))(x)
    for before in (jax.nn.relu, lambda x: x):  # with ReLU zeros (ties) and without
        ref = lambda x: nn.max_pool(before(x), (2, 2), strides=(2, 2))
        new = lambda x: models.reshape_max_pool(before(x))
        np.testing.assert_array_equal(new(x), ref(x))
        np.testing.assert_array_equal(grad(new, x), grad(ref, x))
    # The hand-written gradient under vmap, against the loop over clients.
    xs = jax.random.normal(jax.random.key(5), (3, 2, 8, 6, 5))
    per_client = jnp.stack([grad(models.reshape_max_pool, x) for x in xs])
    np.testing.assert_array_equal(jax.vmap(lambda x: grad(models.reshape_max_pool, x))(xs), per_client)


@pytest.mark.slow
def test_cnn_patches_equals_xla_with_gradients_under_vmap():
    """The whole cnn (client and decoder) in both conv impls: outputs and parameter gradients."""
    xla, patches = (models.get_model("cnn", MNIST, 10, impl) for impl in ("xla", "patches"))
    stacked = stack([models.init_params(xla, jax.random.key(i)) for i in range(2)])
    xs = jnp.stack([images(MNIST, 3, seed=i) for i in range(2)])

    def loss(model):
        def one(p, x):
            s = apply(model.client, p["client"], x)
            r = apply(model.decoder, p["decoder"], s)
            return jnp.sum(s ** 2) * 1e-3 + jnp.mean((r - x) ** 2)
        return lambda p: jnp.sum(jax.vmap(one)(p, xs))

    want_loss, want = fast_jit.jit(jax.value_and_grad(loss(xla)))(stacked)  # one program each, not op by op (fast_jit.py)
    got_loss, got = fast_jit.jit(jax.value_and_grad(loss(patches)))(stacked)
    # Forward through client and decoder, the loss's sums over 2 clients' 3 images, then the same way back, where a
    # kernel's gradient sums over 3 images' 28 x 28 pixels.
    forward = (*CNN_CLIENT, *CNN_DECODER, 3 * 28 * 28 * 2)
    assert_chain_close(got_loss, want_loss, *forward)
    for part in ("client", "decoder"):
        jax.tree.map(lambda g, w: assert_chain_close(g, w, *forward, *CNN_DECODER, *CNN_CLIENT, 3 * 28 * 28), got[part], want[part])
    assert float(optax_norm(want["decoder"])) > 0 and float(optax_norm(want["client"])) > 0


def optax_norm(tree):
    return jnp.sqrt(sum(jnp.sum(leaf ** 2) for leaf in jax.tree.leaves(tree)))


# -------------------------------------------------------------------------- normalisation


@pytest.mark.slow
def test_resnet_uses_groupnorm_not_batchnorm(resnet, resnet_params):
    seen = set()

    def record(next_fun, args, kwargs, context):
        seen.add(type(context.module))
        return next_fun(*args, **kwargs)

    def forward(x):
        return apply(resnet.server, resnet_params["server"], apply(resnet.client, resnet_params["client"], x))

    x = images(CIFAR, 1)
    with nn.intercept_methods(record):  # traced, not computed: which modules run is known from the trace
        jax.eval_shape(forward, x)
    assert nn.GroupNorm in seen and nn.BatchNorm not in seen
    variables = jax.eval_shape(resnet.client.init, jax.random.key(0), x)
    assert set(variables) == {"params"}  # no batch_stats anywhere


# ------------------------------------------------------------------------------ FLOPs


def test_cnn_client_flops_match_hand_count(cnn):
    flops = models.flops_per_sample(cnn)
    hand = 2 * (28 * 28 * 9 * 1 * 32 + 14 * 14 * 9 * 32 * 64)
    assert abs(flops["client"] - hand) / hand < 0.10
    assert set(flops) == {"client", "server", "decoder", "aux"}
    hand_server = 2 * (7 * 7 * 64 * 128 + 128 * 10)
    assert abs(flops["server"] - hand_server) / hand_server < 0.10
    assert all(v > 0 for v in flops.values())


def test_jaxpr_fallback_counts_macs(cnn, cnn_params):
    x = images(MNIST, 4)
    jaxpr = jax.make_jaxpr(lambda p, x: apply(cnn.client, p, x))(cnn_params["client"], x).jaxpr
    assert models.count_jaxpr_flops(jaxpr) / 4 == 2 * (28 * 28 * 9 * 32 + 14 * 14 * 9 * 32 * 64)


# ------------------------------------------------------------------------------ errors


def test_unknown_model_and_mismatch_raise_usage_error():
    with pytest.raises(UsageError, match="unknown model"):
        models.get_model("vgg", MNIST, 10)
    with pytest.raises(UsageError, match="divisible"):
        models.get_model("cnn", (30, 30, 1), 10)
    with pytest.raises(UsageError, match="divisible"):
        models.get_model("resnet18", (28, 28, 1), 10)
    with pytest.raises(UsageError):
        models.get_model("cnn", (28, 28), 10)
    with pytest.raises(UsageError):
        models.default_model_for("imagenet")


def test_default_models():
    assert models.default_model_for("mnist") == "cnn"
    assert models.default_model_for("fashion_mnist") == "cnn"
    assert models.default_model_for("cifar10") == "resnet18"
    assert set(models.MODELS) == {"cnn", "allconv", "resnet18"}


@pytest.mark.parametrize("name,conv_impl", [("cnn", "patches"), ("cnn", "xla"), ("allconv", "patches")])
def test_bfloat16_products_round_the_operands_and_sum_in_float32(name, conv_impl):
    """--matmul-precision bfloat16: the same parameters, logits and gradients within bfloat16's rounding of the
    float32 model's (8 bits of mantissa: about 1e-2 relative), and not the float32 model's exactly."""
    exact = models.get_model(name, MNIST, 10, conv_impl)
    rounded = models.get_model(name, MNIST, 10, conv_impl, precision="bfloat16")
    params = models.init_params(exact, jax.random.key(0))
    assert jax.tree.structure(params) == jax.tree.structure(models.init_params(rounded, jax.random.key(0)))
    x = jax.random.uniform(jax.random.key(1), (8, *MNIST))
    labels = jnp.arange(8) % 10

    def loss(model, p):
        logits = model.logits(p["client"], p["server"], x)
        reconstruction = model.decoder.apply({"params": p["decoder"]}, model.client.apply({"params": p["client"]}, x))
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean() + jnp.mean(reconstruction)

    (value, grads), (value16, grads16) = (jax.value_and_grad(functools.partial(loss, m))(params)
                                          for m in (exact, rounded))
    assert value16.dtype == jnp.float32 and value16 != value
    assert abs(float(value16) - float(value)) < 2e-2 * abs(float(value))
    flat, flat16 = (jnp.concatenate([g.ravel() for g in jax.tree.leaves(t)]) for t in (grads, grads16))
    assert flat16.dtype == jnp.float32
    assert float(jnp.linalg.norm(flat16 - flat)) < 5e-2 * float(jnp.linalg.norm(flat))


def test_an_unknown_precision_is_refused():
    with pytest.raises(UsageError, match="unknown precision 'float16'"):
        models.get_model("cnn", MNIST, 10, precision="float16")
