"""Client data kept on the device, and mini-batches drawn inside the jitted round.

Clients of unequal size get one static shape: each client's sample indices are padded to the
largest client, and batches wrap around a client's own data, so every client does the same
number of iterations per round. Batches depend only on (seed, round): any round can be
recomputed, and every algorithm sees the same batches for the same seed.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np


class ClientData(NamedTuple):
    """Everything a round reads, as device arrays (passed to the jitted round, never baked in)."""

    images: jax.Array  # uint8 [n, H, W, C]: the whole training set
    labels: jax.Array  # int32 [n]
    client_index: jax.Array  # int32 [N, L]: client i's samples in its first sizes[i] slots
    sizes: jax.Array  # int32 [N]
    weights: jax.Array  # float32 [N]: delta_i = |D_i| / sum_j |D_j|
    present: jax.Array | None = None  # bool [N]: the clients that do not fail this round (--dropout); None: all


def round_active(data: ClientData, iterations: int, batch_size: int, epoch: bool) -> jax.Array | None:
    """[iterations, N]: which clients take part in each iteration of a round, or None where all do:
    with `epoch` (--round-mode epoch) those still in their own epoch, and only those `present`."""
    active = active_mask(data, iterations, batch_size) if epoch else None
    if data.present is None:
        return active
    present = jnp.broadcast_to(data.present[None, :], (iterations, data.present.shape[0]))
    return present if active is None else active & present


def make_client_data(images: np.ndarray, labels: np.ndarray, client_indices: Sequence[np.ndarray]) -> ClientData:
    """Pad the clients' index lists to one shape and put everything on the device."""
    sizes = np.array([len(p) for p in client_indices], np.int32)
    index = np.zeros((len(client_indices), int(sizes.max())), np.int32)
    for i, indices in enumerate(client_indices):
        index[i, : len(indices)] = indices
    return ClientData(
        images=jnp.asarray(images),
        labels=jnp.asarray(labels, jnp.int32),
        client_index=jnp.asarray(index),
        sizes=jnp.asarray(sizes),
        weights=jnp.asarray(sizes / sizes.sum(), jnp.float32),
    )


def iterations_per_round(sizes: Sequence[int], batch_size: int) -> int:
    """One local epoch of the largest client; smaller clients wrap around."""
    return math.ceil(max(sizes) / batch_size)


def client_iterations(sizes: Sequence[int], batch_size: int) -> list[int]:
    """Iterations of each client's own epoch (`--round-mode epoch`)."""
    return [math.ceil(size / batch_size) for size in sizes]


def active_per_iteration(sizes: Sequence[int], batch_size: int) -> tuple[int, ...]:
    """How many clients take part in each iteration of an epoch-mode round (all N in the first)."""
    own = client_iterations(sizes, batch_size)
    return tuple(sum(n > t for n in own) for t in range(max(own)))


def active_mask(data: ClientData, iterations: int, batch_size: int) -> jax.Array:
    """[iterations, N]: whether client i is still in its own epoch at iteration t."""
    own = -(-data.sizes // batch_size)
    return jnp.arange(iterations)[:, None] < own[None, :]


def round_batches(key: jax.Array, data: ClientData, iterations: int, batch_size: int) -> jax.Array:
    """Sample indices [iterations, N, B]: each client walks a fresh permutation of its data."""
    num_clients, width = data.client_index.shape
    slot = jnp.arange(width)
    scores = jax.random.uniform(key, (num_clients, width))
    scores = jnp.where(slot[None, :] < data.sizes[:, None], scores, 2.0)  # padding sorts last
    order = jnp.argsort(scores, axis=1)
    position = jnp.arange(iterations * batch_size)[None, :] % data.sizes[:, None]
    picked = jnp.take_along_axis(order, position, axis=1)
    samples = jnp.take_along_axis(data.client_index, picked, axis=1)
    return samples.reshape(num_clients, iterations, batch_size).transpose(1, 0, 2)


def gather(data: ClientData, indices: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Images as float32 in [0, 1] and int labels for an index array of any shape."""
    images = data.images[indices].astype(jnp.float32) / 255.0
    return images, data.labels[indices]
