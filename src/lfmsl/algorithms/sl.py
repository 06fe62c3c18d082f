"""Sequential split learning: one client model relayed from client to client.

Clients are served one after another in a fixed random order [default], each for its local
epoch through the server (PSL with N = 1), then the lower segment is handed to the next one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lfmsl.algorithms import rules
from lfmsl.algorithms.base import Algorithm, Context, scan_round
from lfmsl.algorithms.exchanges import Exchange
from lfmsl.algorithms.registry import Entry, register
from lfmsl.algorithms.split import Recipe, defences, init_state, make_step, optimizers
from lfmsl.config import Config

RECIPE = Recipe(server=rules.SharedServer(), downlink=rules.own_gradient())  # PSL with one client at a time


def relay_order(seed: int, num_clients: int) -> np.ndarray:
    """The fixed random order in which clients receive the model."""
    return np.random.default_rng([seed, 0x51]).permutation(num_clients)


def build(config: Config, ctx: Context) -> Algorithm:
    client_opt, server_opt = optimizers(ctx, RECIPE)
    step = make_step(ctx, RECIPE, client_opt, server_opt, defences(config))
    order = jnp.asarray(relay_order(config.seed, ctx.num_clients))
    one = lambda: jnp.ones((1,), jnp.float32)  # the one client served at a time carries the whole step
    return Algorithm(
        init=lambda key: init_state(ctx, RECIPE, key, client_opt, server_opt, 1),
        round=lambda state, data, key: scan_round(step, ctx, state, data, key, weights=one(), relay=order),
        eval_pairs=lambda state, data, ids: (state.clients["lower"], jax.tree.map(lambda s: s[None], state.server)),
        personal=False,
    )


ENTRY = register(Entry("sl", "SL (sequential)", build, exchange=lambda config: Exchange(schedule="relay"), order=10,
                       role="paper"))
