"""The numerical helpers that the algorithms compose: losses, mixup, averaging, update sizes.

Every function here is pure and works on pytrees whose leaves carry a leading clients axis
where the docstring says so, so the algorithms stay short and share one implementation.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

PyTree = Any


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy over the leading batch axis; `labels` are ints or soft targets."""
    if labels.ndim == logits.ndim:
        return optax.softmax_cross_entropy(logits, labels).mean()
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


RECONSTRUCTION_LOSSES = ("mse", "bce")


def reconstruction_loss(reconstruction: jax.Array, images: jax.Array, kind: str = "mse") -> jax.Array:
    """InfoPro's reconstruction term: how much of the input the smashed data still holds."""
    if kind not in RECONSTRUCTION_LOSSES:
        raise ValueError(f"unknown reconstruction loss {kind!r}; known: {', '.join(RECONSTRUCTION_LOSSES)}")
    if kind == "mse":
        return jnp.mean((reconstruction - images) ** 2)
    eps = 1e-6
    r = jnp.clip(reconstruction, eps, 1.0 - eps)
    return -jnp.mean(images * jnp.log(r) + (1.0 - images) * jnp.log(1.0 - r))


@jax.custom_vjp
def scale_gradient(x: jax.Array, factor: jax.Array | float) -> jax.Array:
    """The identity forward; the backward pass multiplies the gradient by `factor`.

    LocFedMix-SL's decoder moves along dR/dh unscaled, while beta weighs only the pull of R on
    the client segment below it: R(h, scale_gradient(s, beta)) gives both from one loss.
    """
    return x


def _scale_gradient_fwd(x, factor):
    return x, factor


def _scale_gradient_bwd(factor, g):
    return g * factor, None


scale_gradient.defvjp(_scale_gradient_fwd, _scale_gradient_bwd)


def keep_active(active: jax.Array, new: PyTree, old: PyTree) -> PyTree:
    """Per client (leading axis): the new value where `active` [N], else the old one unchanged."""
    return jax.tree.map(lambda n, o: jnp.where(active.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new, old)


def active_weights(weights: jax.Array, active: jax.Array) -> jax.Array:
    """The dataset-size weights of the active clients, renormalised to sum to one (zeros if none is)."""
    kept = jnp.where(active, weights, 0.0)
    return kept / jnp.maximum(kept.sum(), jnp.finfo(kept.dtype).tiny)


def weighted_average(stacked: PyTree, weights: jax.Array) -> PyTree:
    """sum_i weights_i * tree_i over the leading clients axis (FedAvg's dataset-size mean)."""
    return jax.tree.map(lambda leaf: jnp.tensordot(weights, leaf, axes=1), stacked)


def broadcast_clients(tree: PyTree, num_clients: int) -> PyTree:
    """Copy one model to every client: adds a leading clients axis."""
    return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (num_clients,) + leaf.shape), tree)


def average_every_client(stacked: PyTree, weights: jax.Array, do_average: jax.Array) -> PyTree:
    """w_i <- sum_j delta_j w_j for all i when `do_average`, else unchanged."""
    num_clients = weights.shape[0]
    averaged = broadcast_clients(weighted_average(stacked, weights), num_clients)
    return jax.tree.map(lambda new, old: jnp.where(do_average, new, old), averaged, stacked)


def relative_update(update: PyTree, params: PyTree) -> jax.Array:
    """||update|| / ||params||: the relative step size of one model."""
    return optax.tree.norm(update) / (optax.tree.norm(params) + 1e-12)


def per_client_relative_update(updates: PyTree, params: PyTree) -> jax.Array:
    """relative_update for each client of a stacked pytree, shape [N]."""
    return jax.vmap(relative_update)(updates, params)


def distance_to_average(stacked: PyTree, weights: jax.Array) -> jax.Array:
    """Mean over clients of ||w_i - w_bar||: how far the client models have drifted apart."""
    mean = weighted_average(stacked, weights)
    diffs = jax.tree.map(lambda leaf, m: leaf - m, stacked, mean)
    return jnp.mean(jax.vmap(optax.tree.norm)(diffs))


def draw_partners(key: jax.Array, num_clients: int, num_partners: int, active: jax.Array | None = None) -> jax.Array:
    """For each client i, `num_partners` distinct other clients j != i, uniformly: [N, n_s].

    With `active` [N], active clients are drawn first; an inactive one only where too few are active."""
    scores = jax.random.uniform(key, (num_clients, num_clients - 1))
    if active is not None:
        candidates = (jnp.arange(num_clients)[:, None] + 1 + jnp.arange(num_clients - 1)[None, :]) % num_clients
        scores = jnp.where(active[candidates], scores, 2.0 + scores)
    offsets = 1 + jnp.argsort(scores, axis=1)[:, :num_partners]
    return (jnp.arange(num_clients)[:, None] + offsets) % num_clients


def smashed_mixup(
    key: jax.Array,
    smashed: jax.Array,
    labels: jax.Array,
    num_classes: int,
    num_partners: int,
    alpha: float,
    active: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """LocFedMix-SL's mixup of smashed data from two different clients.

    smashed: [N, B, ...], labels: [N, B] ints. Returns mixed smashed data [N, n_s, B, ...],
    soft labels [N, n_s, B, C] and the partner indices [N, n_s]. Partner samples are paired
    by position after a random permutation of the partner's batch, with one
    lam ~ Beta(alpha, alpha) per pair of batches.
    """
    num_clients, batch = smashed.shape[:2]
    k_partner, k_perm, k_lam = jax.random.split(key, 3)
    partners = draw_partners(k_partner, num_clients, num_partners, active)
    perm_keys = jax.random.split(k_perm, num_clients * num_partners)
    perms = jax.vmap(lambda k: jax.random.permutation(k, batch))(perm_keys)
    perms = perms.reshape(num_clients, num_partners, batch)
    lam = jax.random.beta(k_lam, alpha, alpha, (num_clients, num_partners))
    onehot = jax.nn.one_hot(labels, num_classes)
    partner_smashed = smashed[partners[:, :, None], perms]  # [N, n_s, B, ...]
    partner_onehot = onehot[partners[:, :, None], perms]  # [N, n_s, B, C]

    def mix(own: jax.Array, other: jax.Array) -> jax.Array:
        weight = lam.reshape(lam.shape + (1,) * (other.ndim - 2))
        return weight * own[:, None] + (1.0 - weight) * other

    return mix(smashed, partner_smashed), mix(onehot, partner_onehot), partners
