"""Clients sampled per round (`--clients-per-round K`), as in cross-device federated learning.

Each round draws K distinct participants uniformly from (seed, round) alone, so every algorithm
with the same seed sees the same participants. The round itself is the algorithm's own round
built for K clients: the participants' states and data are gathered into a K-client batch, the
round runs unchanged, and their states are scattered back. Shapes stay static (K is fixed), so a
run compiles once.

What a client that sits a round out holds afterwards:
- clients that keep their own models (PSL, SGLR, `--no-fed`) keep theirs, bit for bit;
- where models are averaged, the averaged parts become the participants' weighted average, so
  a client starts its next participation from the current average (its optimiser state is its own).
The server's state is shared and steps on the participants' smashed data only.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lfmsl.algorithms.base import Algorithm, State
from lfmsl.core import blocks
from lfmsl.core.batching import ClientData

PyTree = Any
_STREAM = 0x5A3D  # separates the participant draw from every other use of the seed


def participants(seed: int, round_index: int, num_clients: int, per_round: int) -> np.ndarray:
    """The sorted ids of round `round_index`'s K distinct participants, uniform over all N."""
    rng = np.random.default_rng([seed, round_index, _STREAM])
    return np.sort(rng.choice(num_clients, size=per_round, replace=False)).astype(np.int32)


def per_client_leaves(full: State, part: State) -> PyTree:
    """Which leaves of the state carry the clients axis: those whose shape changes with the number of
    clients (N in the full state, K in the participants'), e.g. not sequential SL's one relayed model."""
    return jax.tree.map(lambda f, p: f.shape != p.shape, full, part)


def participant_data(data: ClientData, ids: jax.Array) -> ClientData:
    """The participants' index lists, sizes and weights, renormalised over the participants."""
    weights = data.weights[ids]
    return data._replace(client_index=data.client_index[ids], sizes=data.sizes[ids], weights=weights / weights.sum())


def take(state: PyTree, per_client: PyTree, ids: jax.Array) -> PyTree:
    return jax.tree.map(lambda leaf, split: leaf[ids] if split else leaf, state, per_client)


def put_back(state: PyTree, new: PyTree, per_client: PyTree, ids: jax.Array) -> PyTree:
    return jax.tree.map(lambda old, leaf, split: old.at[ids].set(leaf) if split else leaf, state, new, per_client)


def averaged_leaves(state: State, algorithm: Algorithm) -> State:
    """True on the leaves that the algorithm averages across clients (its model parts, never an
    optimiser state): what a non-participant takes from the participants' average."""
    false = lambda tree: jax.tree.map(lambda _: False, tree)
    clients = {k: jax.tree.map(lambda _: k in algorithm.averaged, v) for k, v in state.clients.items()}
    server = jax.tree.map(lambda _: algorithm.averages_server, state.server)
    return State(clients, false(state.client_opt), server, false(state.server_opt), False)


def sampled(full: Algorithm, part: Algorithm, key: jax.Array) -> Algorithm:
    """`part` (the algorithm built for K clients) run on K participants of `full`'s N clients.

    The round takes the participants' ids [K] as a fourth argument; `init` and `eval_pairs` are
    `full`'s. `key` is any key of the right kind: only the shapes of the two initial states are read."""
    per_client = per_client_leaves(jax.eval_shape(full.init, key), jax.eval_shape(part.init, key))

    def round_fn(state: State, data: ClientData, key: jax.Array, ids: jax.Array):
        sub_data = participant_data(data, ids)
        new, metrics = part.round(take(state, per_client, ids), sub_data, key)
        merged = put_back(state, new, per_client, ids)
        if full.averaged or full.averages_server:
            merged = _share_average(merged, new, per_client, averaged_leaves(merged, full), sub_data.weights, ids)
        return merged, metrics

    return full._replace(round=round_fn)


def _share_average(merged: State, new: State, per_client: PyTree, averaged: State, weights: jax.Array, ids: jax.Array) -> State:
    """Non-participants take the participants' weighted average of each averaged part."""
    def one(leaf, participant_leaves, split, shared):
        if not (split and shared):
            return leaf
        mean = blocks.weighted_average(participant_leaves, weights)
        return jnp.broadcast_to(mean, leaf.shape).at[ids].set(participant_leaves)

    return jax.tree.map(one, merged, new, per_client, averaged)
