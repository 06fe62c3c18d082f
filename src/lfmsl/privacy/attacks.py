"""The server's attacks on the smashed data, and the leakage measures of one measurement, as pure jitted functions.

Every attack ends in a network that maps smashed data back to images, applied to all evaluated clients' smashed
data at once:
- `decoder`: LocFedMix-SL's averaged decoder, as the server holds it (no training).
- `inverse`: He, Zhang and Lee's inverse network (ACSAC 2019, black-box attack): the server passes its auxiliary
  set through the client segment it holds (averaged, or relayed in sequential SL) and trains an inverse network
  on the (smashed, image) pairs.
- `shadow`: He, Zhang and Lee's query-free attack: without the client's weights, the server trains a shadow client
  segment on the auxiliary set through its own (frozen) server segment, so that the shadow's smashed data feeds
  the server as the clients' does, then trains an inverse network of the shadow.
The inverse networks have the architecture of LocFedMix-SL's decoder (lfmsl.models.heads.Decoder), which fits any
cut; each network trains for the same budget (`steps` Adam steps of `lr`, batches of `ATTACK_BATCH`) in every
algorithm. With --smash-noise the server knows sigma and adds the same noise to its own training pairs.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lfmsl.core.numerics import cross_entropy
from lfmsl.models import SplitModel
from lfmsl.privacy.measures import bias_corrected_distance_correlation, distance_correlation, reconstruction_scores
from lfmsl.privacy.threats import ATTACKS

PyTree = Any
ATTACK_BATCH = 64  # the auxiliary samples of each of an attack's steps
SHOWN = 8  # probes of the first evaluated client kept as images for privacy.png


class Observed(NamedTuple):
    """What the server saw of the evaluated clients: their probe inputs (which the attacks try to rebuild; the
    server never sees them) and the smashed data of those inputs as it left each client."""

    probes: jax.Array  # [E, P, H, W, C] float32 in [0, 1]
    smashed: jax.Array  # [E, P, *smashed_shape], with the defence's noise where there is one


class Knowledge(NamedTuple):
    """What the server holds: its own segment, the client segment and decoder where it holds them (else None),
    and its auxiliary set (images in [0, 1] and labels), disjoint from every client's data."""

    server: PyTree
    lower: PyTree | None
    decoder: PyTree | None
    aux_images: jax.Array
    aux_labels: jax.Array


def add_noise(smashed: jax.Array, sigma: float, key: jax.Array) -> jax.Array:
    """The smashed data as it leaves a client under --smash-noise sigma (unchanged, with no key drawn, at 0)."""
    return smashed if sigma == 0 else smashed + sigma * jax.random.normal(key, smashed.shape, smashed.dtype)


def fit(loss: Callable[[PyTree, jax.Array, jax.Array], jax.Array], params: PyTree, count: int, steps: int, lr: float,
        key: jax.Array) -> PyTree:
    """`steps` Adam steps on `loss(params, indices, key)`, each on ATTACK_BATCH indices drawn from range(count) and a
    key of its own (for the noise of --smash-noise)."""
    optimizer = optax.adam(lr)

    def step(carry, step_key):
        params, state = carry
        draw_key, noise_key = jax.random.split(step_key)
        indices = jax.random.randint(draw_key, (min(ATTACK_BATCH, count),), 0, count)
        grads = jax.grad(loss)(params, indices, noise_key)
        updates, state = optimizer.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), jax.random.split(key, steps))
    return params


def fit_inverse(model: SplitModel, encode: Callable[[jax.Array, jax.Array], jax.Array], images: jax.Array, steps: int,
                lr: float, key: jax.Array) -> PyTree:
    """An inverse network (the decoder's architecture) trained to map `encode(images, key)` back to `images`."""
    init_key, fit_key = jax.random.split(key)
    params = model.decoder.init(init_key, encode(images[:1], init_key))["params"]

    def loss(params, indices, noise_key):
        batch = images[indices]
        rebuilt = model.decoder.apply({"params": params}, encode(batch, noise_key))
        return jnp.mean((rebuilt - batch) ** 2)

    return fit(loss, params, images.shape[0], steps, lr, fit_key)


def fit_shadow(model: SplitModel, server: PyTree, images: jax.Array, labels: jax.Array, steps: int, lr: float,
               key: jax.Array) -> PyTree:
    """A shadow client segment trained so that the frozen server segment classifies the auxiliary set through it."""
    init_key, fit_key = jax.random.split(key)
    params = model.client.init(init_key, images[:1])["params"]

    def loss(params, indices, noise_key):
        smashed = model.client.apply({"params": params}, images[indices])
        return cross_entropy(model.server.apply({"params": server}, smashed), labels[indices])

    return fit(loss, params, images.shape[0], steps, lr, fit_key)


def rebuild(model: SplitModel, inverse: PyTree, smashed: jax.Array) -> jax.Array:
    """Every client's probes rebuilt by one network: [E, P, *smashed_shape] -> [E, P, H, W, C]."""
    lead = smashed.shape[:2]
    flat = smashed.reshape((-1, *model.smashed_shape))
    return model.decoder.apply({"params": inverse}, flat).reshape(lead + tuple(model.input_shape))


def reconstructions(model: SplitModel, attacks: tuple[str, ...], observed: Observed, knowledge: Knowledge,
                    key: jax.Array, steps: int, lr: float, sigma: float) -> dict[str, jax.Array]:
    """attack -> the evaluated clients' probes as that attack rebuilds them."""
    aux = knowledge.aux_images
    out = {}
    for name in attacks:
        attack_key = jax.random.fold_in(key, list(ATTACKS).index(name))
        if name == "decoder":
            inverse = knowledge.decoder
        elif name == "inverse":
            lower = knowledge.lower
            encode = lambda x, k: add_noise(model.client.apply({"params": lower}, x), sigma, k)
            inverse = fit_inverse(model, encode, aux, steps, lr, attack_key)
        else:
            shadow_key, inverse_key = jax.random.split(attack_key)
            shadow = fit_shadow(model, knowledge.server, aux, knowledge.aux_labels, steps, lr, shadow_key)
            encode = lambda x, k: add_noise(model.client.apply({"params": shadow}, x), sigma, k)
            inverse = fit_inverse(model, encode, aux, steps, lr, inverse_key)
        out[name] = rebuild(model, inverse, observed.smashed)
    return out


def measure(model: SplitModel, attacks: tuple[str, ...], observed: Observed, knowledge: Knowledge, key: jax.Array,
            steps: int, lr: float, sigma: float) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """One leakage measurement: (scalars, images).

    scalars: `privacy_dcor`, the distance correlation between each client's probes and their smashed data (NoPeek's
    V-statistic, biased towards 1 in high dimension), `privacy_dcor_unbiased`, Szekely and Rizzo's bias-corrected
    squared distance correlation (about 0 for independent data), both means over the evaluated clients, and
    `privacy_<attack>_<mse|psnr|ssim>` of each attack (mean over the clients).
    images: the first evaluated client's first SHOWN probes (`inputs`) and each attack's reconstruction of them."""
    pairs = (observed.probes, observed.smashed)
    scalars = {"privacy_dcor": jnp.mean(jax.vmap(distance_correlation)(*pairs)),
               "privacy_dcor_unbiased": jnp.mean(jax.vmap(bias_corrected_distance_correlation)(*pairs))}
    images = {"inputs": observed.probes[0, :SHOWN]}
    for name, rebuilt in reconstructions(model, attacks, observed, knowledge, key, steps, lr, sigma).items():
        for score, per_client in reconstruction_scores(observed.probes, rebuilt).items():
            scalars[f"privacy_{name}_{score}"] = jnp.mean(per_client)
        images[name] = rebuilt[0, :SHOWN]
    return scalars, images
