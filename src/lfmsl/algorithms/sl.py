"""Sequential split learning: one client model relayed from client to client.

Clients are served one after another in a fixed random order [default], each for its local
epoch through the server (PSL with N = 1), then the lower segment is handed to the next one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lfmsl.algorithms import parts
from lfmsl.algorithms.base import Algorithm, Context, State, summarise
from lfmsl.algorithms.registry import Entry, Exchange, register
from lfmsl.algorithms.split import Recipe, init_state, make_step, optimizers
from lfmsl.core.batching import ClientData, gather, round_active, round_batches

RECIPE = Recipe(server=parts.SharedServer(), downlink=parts.own_gradient())  # PSL with one client at a time


def relay_order(seed: int, num_clients: int) -> np.ndarray:
    """The fixed random order in which clients receive the model."""
    return np.random.default_rng([seed, 0x51]).permutation(num_clients)


def build(ctx: Context) -> Algorithm:
    client_opt, server_opt = optimizers(ctx, RECIPE)
    step = make_step(ctx, RECIPE, client_opt, server_opt)
    order = jnp.asarray(relay_order(ctx.config.seed, ctx.num_clients))
    batch = ctx.config.batch_size

    def round_fn(state: State, data: ClientData, key: jax.Array):
        batch_key, step_key = jax.random.split(key)
        indices = round_batches(batch_key, data, ctx.iterations, batch)  # [I, N, B]
        sequence = indices.transpose(1, 0, 2)[order].reshape(-1, 1, batch)  # client by client
        keys = jax.random.split(step_key, sequence.shape[0])
        one = jnp.ones((1,), jnp.float32)
        inputs = (sequence, keys)
        # each client's own epoch (its remaining steps change nothing); a failed client is skipped
        active = round_active(data, ctx.iterations, batch, ctx.config.round_mode == "epoch")
        if active is not None:
            inputs += (active.T[order].reshape(-1, 1),)

        def body(state, inputs):
            idx, k, *active = inputs
            images, labels = gather(data, idx)
            return step(state, images, labels, one, k, *active)

        state, per_iteration = jax.lax.scan(body, state, inputs)
        return state, summarise(per_iteration)

    return Algorithm(
        init=lambda key: init_state(ctx, RECIPE, key, client_opt, server_opt, 1),
        round=round_fn,
        eval_pairs=lambda state, data, ids: (state.clients["lower"], jax.tree.map(lambda s: s[None], state.server)),
        personal=False,
    )


ENTRY = register(Entry("sl", "SL (sequential)", build, exchange=lambda config: Exchange(schedule="relay")))
