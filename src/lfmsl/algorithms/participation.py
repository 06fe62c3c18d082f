"""Clients sampled per round (`--clients-per-round K`), as in cross-device federated learning.

Each round draws K distinct participants uniformly from (seed, round) alone, so every algorithm
with the same seed sees the same participants. The round itself is the algorithm's own round
built for K clients: the participants' states and data are gathered into a K-client batch, the
round runs unchanged, and their states are scattered back. Shapes stay static (K is fixed), so a
run compiles once.

What a client that sits a round out holds:
- clients that keep their own models (PSL, SGLR, `--no-fed`) keep theirs, bit for bit;
- where models are averaged, nothing is written to it: a participant starts from the current
  average, the weighted average of the previous round's participants (their ids follow from the
  seed), and the evaluation scores that average. A round reads 2K rows and writes K, whatever N.
  Its optimiser state stays its own.
The server's state is shared and steps on the participants' smashed data only.

Participants that fail during a round (`--dropout P`, drawn from (seed, round) too) are left out of
it by `surviving`: their weights drop to zero and a `present` mask keeps them from training and
from sending, so the server's loss and the averaging renormalise over the survivors.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lfmsl.algorithms.base import Algorithm, State
from lfmsl.core import numerics
from lfmsl.core.batching import ClientData

PyTree = Any
_STREAM = 0x5A3D  # separates the participant draw from every other use of the seed
_FAILURE_STREAM = 0xD809  # and the failure draw (--dropout)


def participants(seed: int, round_index: int, num_clients: int, per_round: int) -> np.ndarray:
    """The sorted ids of round `round_index`'s K distinct participants, uniform over all N."""
    rng = np.random.default_rng([seed, round_index, _STREAM])
    return np.sort(rng.choice(num_clients, size=per_round, replace=False)).astype(np.int32)


def survivors(seed: int, round_index: int, count: int, dropout: float) -> np.ndarray:
    """Which of a round's `count` participants (in the order of their ids) do not fail [bool, K]:
    each fails with probability `dropout`, drawn from (seed, round) alone at the round's start."""
    rng = np.random.default_rng([seed, round_index, _FAILURE_STREAM])
    return rng.random(count) >= dropout


def surviving(data: ClientData, alive: jax.Array) -> ClientData:
    """The round's data with the failed clients out: weights renormalised over the survivors (for the
    server's loss and the averaging), and `present` so that the failed ones neither train nor send."""
    kept = jnp.where(alive, data.weights, 0.0)
    return data._replace(weights=kept / kept.sum(), present=alive)


def with_failures(algorithm: Algorithm) -> Algorithm:
    """`algorithm` whose round takes the survivors [N] after its key (--dropout without sampling)."""
    def round_fn(state: State, data: ClientData, key: jax.Array, alive: jax.Array):
        return algorithm.round(state, surviving(data, alive), key)

    return algorithm._replace(round=round_fn)


def per_client_leaves(full: State, part: State) -> PyTree:
    """Which leaves of the state carry the clients axis: those whose shape changes with the number of
    clients (N in the full state, K in the participants'), e.g. not sequential SL's one relayed model."""
    return jax.tree.map(lambda f, p: f.shape != p.shape, full, part)


def participant_data(data: ClientData, ids: jax.Array, alive: jax.Array | None = None) -> ClientData:
    """The participants' index lists, sizes and weights, renormalised over the participants (over
    the survivors among them where `alive` says which)."""
    weights = data.weights[ids]
    mine = data._replace(client_index=data.client_index[ids], sizes=data.sizes[ids], weights=weights / weights.sum())
    return mine if alive is None else surviving(mine, alive)


def take(state: PyTree, per_client: PyTree, ids: jax.Array) -> PyTree:
    return jax.tree.map(lambda leaf, split: leaf[ids] if split else leaf, state, per_client)


def put_back(state: PyTree, new: PyTree, per_client: PyTree, ids: jax.Array) -> PyTree:
    return jax.tree.map(lambda old, leaf, split: old.at[ids].set(leaf) if split else leaf, state, new, per_client)


def averaged_leaves(state: State, algorithm: Algorithm) -> State:
    """True on the leaves that the algorithm averages across clients (its model parts, never an
    optimiser state): what a participant takes from the current average."""
    false = lambda tree: jax.tree.map(lambda _: False, tree)
    clients = {k: jax.tree.map(lambda _: k in algorithm.averaged, v) for k, v in state.clients.items()}
    server = jax.tree.map(lambda _: algorithm.averages_server, state.server)
    return State(clients, false(state.client_opt), server, false(state.server_opt), False)


def sampled(full: Algorithm, part: Algorithm, key: jax.Array) -> Algorithm:
    """`part` (the algorithm built for K clients) run on K participants of `full`'s N clients.

    The round takes the participants' ids [K] and the previous round's [K] (the same at round 0) after
    its key, and with --dropout which of each survive [K]; the previous round is the last one with a
    survivor. Where the algorithm averages, `eval_pairs` takes the ids (and survivors) of the last
    round run and scores their average. `key` is any key of the right kind: only the shapes of the two initial states are read."""
    per_client = per_client_leaves(jax.eval_shape(full.init, key), jax.eval_shape(part.init, key))
    averages = bool(full.averaged) or full.averages_server

    def round_fn(state: State, data: ClientData, key: jax.Array, ids: jax.Array, previous: jax.Array, *failures: jax.Array):
        alive, previous_alive = failures or (None, None)
        start = take(state, per_client, ids)
        if averages:
            weights = participant_data(data, previous, previous_alive).weights
            start = _from_current_average(start, state, per_client, averaged_leaves(state, full), weights, previous)
        new, metrics = part.round(start, participant_data(data, ids, alive), key)
        return put_back(state, new, per_client, ids), metrics

    def eval_pairs(state: State, data: ClientData, ids: jax.Array, *alive: jax.Array):
        if not averages:
            return full.eval_pairs(state, data, ids)
        return part.eval_pairs(take(state, per_client, ids), participant_data(data, ids, *alive), ids)

    return full._replace(round=round_fn, eval_pairs=eval_pairs)


def _from_current_average(start: State, state: State, per_client: PyTree, averaged: State, weights: jax.Array, previous: jax.Array) -> State:
    """The participants' averaged parts replaced by the previous participants' weighted average."""
    def one(mine, leaf, split, shared):
        if not (split and shared):
            return mine
        return jnp.broadcast_to(numerics.weighted_average(leaf[previous], weights), mine.shape)

    return jax.tree.map(one, start, state, per_client, averaged)
