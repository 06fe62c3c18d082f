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

`Schedule` answers, for any round, who takes part, who of them finishes and which rounds are lost,
and gives the round and the evaluation their arguments: the one place that knows a run's draws.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from lfmsl.algorithms.base import Algorithm, State
from lfmsl.core import numerics
from lfmsl.algorithms.checks import participants_per_round
from lfmsl.config import Config
from lfmsl.core.batching import ClientData

PyTree = Any
_STREAM = 0x5A3D  # separates the participant draw from every other use of the seed
_FAILURE_STREAM = 0xD809  # and the failure draw (--dropout)


def participants(seed: int, round_index: int, num_clients: int, per_round: int) -> np.ndarray:
    """The sorted ids of round `round_index`'s K distinct participants, uniform over all N."""
    rng = np.random.default_rng([seed, round_index, _STREAM])
    return np.sort(rng.choice(num_clients, size=per_round, replace=False)).astype(np.int32)


def round_size(config: Config, num_clients: int) -> int:
    """K: the clients that take part in each round among `num_clients` learners (all unless fewer are drawn)."""
    return min(participants_per_round(config), num_clients)


def round_participants(seed: int, round_index: int, num_clients: int, per_round: int) -> np.ndarray:
    """Round `round_index`'s participants: all N clients, or K of them drawn from (seed, round); round -1
    (before the first) has round 0's."""
    if per_round >= num_clients:
        return np.arange(num_clients)
    return participants(seed, max(round_index, 0), num_clients, per_round)


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
    round run and scores their average. `key` is any key of the right kind: only the shapes of the two initial
    states are read."""
    per_client = per_client_leaves(jax.eval_shape(full.init, key), jax.eval_shape(part.init, key))
    averages = bool(full.averaged) or full.averages_server

    def round_fn(state: State, data: ClientData, key: jax.Array, ids: jax.Array, previous: jax.Array,
                 *failures: jax.Array):
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


def _from_current_average(start: State, state: State, per_client: PyTree, averaged: State, weights: jax.Array,
                          previous: jax.Array) -> State:
    """The participants' averaged parts replaced by the previous participants' weighted average."""
    def one(mine, leaf, split, shared):
        if not (split and shared):
            return mine
        return jnp.broadcast_to(numerics.weighted_average(leaf[previous], weights), mine.shape)

    return jax.tree.map(one, start, state, per_client, averaged)


class Schedule:
    """Who takes part in each round and who of them finishes it (module docstring): the participants, those
    that fail (--dropout) and those that miss --round-deadline; a round that none finishes is lost: it changes
    nothing and is not run. Everything follows from (seed, round), and `on_time(r)` (the devices' verdict on
    round r's participants, costs/devices.py) where a deadline is set, so any round can be recomputed."""

    def __init__(self, seed: int, num_clients: int, per_round: int, dropout: float = 0.0,
                 on_time: Callable[[int], np.ndarray] | None = None):
        self.seed, self.num_clients, self.per_round = seed, num_clients, per_round
        self.dropout, self.on_time = dropout, on_time
        self._survivors: dict[int, np.ndarray] = {}  # asked again for the rounds before each round (last_run_before)

    @classmethod
    def of(cls, config: Config, num_clients: int, on_time: Callable[[int], np.ndarray] | None = None) -> "Schedule":
        """The schedule of a run of `num_clients` learners; `on_time` is read only where --round-deadline is set."""
        deadline = on_time if config.round_deadline is not None else None
        return cls(config.seed, num_clients, round_size(config, num_clients), config.dropout, deadline)

    @property
    def sampling(self) -> bool:
        """Whether fewer than all clients take part in a round (--clients-per-round)."""
        return self.per_round < self.num_clients

    @property
    def fails(self) -> bool:
        """Whether participants can drop out of a round: --dropout, or --round-deadline."""
        return bool(self.dropout) or self.on_time is not None

    def participants(self, round_index: int) -> np.ndarray:
        """Round `round_index`'s participants (all clients unless --clients-per-round draws fewer)."""
        return round_participants(self.seed, round_index, self.num_clients, self.per_round)

    def survivors(self, round_index: int) -> np.ndarray | None:
        """Which of round `round_index`'s participants neither fail (--dropout) nor miss the deadline
        (--round-deadline); None where none can."""
        if not self.fails:
            return None
        if round_index not in self._survivors:
            alive = survivors(self.seed, round_index, self.per_round, self.dropout)
            if self.on_time is not None:
                alive &= self.on_time(round_index)
            self._survivors[round_index] = alive
        return self._survivors[round_index].copy()

    def lost(self, round_index: int) -> bool:
        """Whether every participant of the round fails: the round then changes nothing and is not run."""
        alive = self.survivors(round_index)
        return alive is not None and not alive.any()

    def last_run_before(self, round_index: int) -> int:
        """The latest round before `round_index` that was run (-1: none, every model is still the initial one)."""
        previous = round_index - 1
        while previous >= 0 and self.lost(previous):
            previous -= 1
        return previous

    def _drawn(self, round_index: int) -> tuple[np.ndarray, ...]:
        """Round `round_index`'s participants (round 0's for -1: all hold the initial model) and, where they
        can fail, which of them survive (all for -1)."""
        ids = self.participants(round_index)
        if not self.fails:
            return (ids,)
        return ids, np.ones(self.per_round, bool) if round_index < 0 else self.survivors(round_index)

    def round_arguments(self, round_index: int) -> tuple[np.ndarray, ...]:
        """What the round takes after its key (`sampled`, `with_failures`): where K < N its participants and
        those of the last round run (whose average the averaged parts start from); where they can fail, which
        of each survive."""
        if not self.sampling:
            alive = self.survivors(round_index)
            return () if alive is None else (alive,)
        (ids, *alive) = self._drawn(round_index)
        (previous, *previous_alive) = self._drawn(self.last_run_before(round_index))
        return (ids, previous, *alive, *previous_alive)

    def scored(self, round_index: int) -> tuple[np.ndarray, ...]:
        """Whose average the evaluation after round `round_index` scores where K < N and models are averaged:
        the participants of the last round run (and its survivors)."""
        return self._drawn(round_index if not self.lost(round_index) else self.last_run_before(round_index))
