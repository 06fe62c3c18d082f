"""Centralised training of the stacked model on all the data: the accuracy ceiling.

The runner gives it a single 'client' holding the whole training set, so its batches are the
ones a one-client split run sees. It differentiates the full model in one go, independently
of the split machinery, which makes it a check on that machinery.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lfmsl.core import numerics
from lfmsl.algorithms.base import Algorithm, Context, State, scan_round
from lfmsl.algorithms.exchanges import Exchange
from lfmsl.algorithms.registry import Entry, register
from lfmsl.config import Config
from lfmsl.models import init_params


def build(config: Config, ctx: Context) -> Algorithm:
    optimizer = ctx.optimisers.full_model()
    model = ctx.model

    def init(key):
        params = init_params(model, key)
        full = {"lower": params["client"], "upper": params["server"]}
        return State(full, optimizer.init(full), {}, {}, jnp.zeros((), jnp.int32))

    def step(state, images, labels, weights, key):
        images, labels = images.reshape((-1,) + images.shape[2:]), labels.reshape(-1)
        loss_fn = lambda p: numerics.cross_entropy(model.logits(p["lower"], p["upper"], images), labels)
        loss, grads = jax.value_and_grad(loss_fn)(state.clients)
        updates, opt_state = optimizer.update(grads, state.client_opt, state.clients)
        params = optax.apply_updates(state.clients, updates)
        return State(params, opt_state, {}, {}, state.step + 1), {"train_loss": loss}

    def eval_pairs(state, data, ids):
        single = numerics.broadcast_clients(state.clients, 1)
        return single["lower"], single["upper"]

    return Algorithm(init, lambda s, d, k: scan_round(step, ctx, s, d, k), eval_pairs, personal=False)


ENTRY = register(Entry("centralized", "centralized", build, order=90, role="reference",
                       exchange=lambda config: Exchange(schedule="central", grads_down=False)))
