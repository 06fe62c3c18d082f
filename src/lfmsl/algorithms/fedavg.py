"""FedAvg of full models: the no-split reference, one local epoch per round, then averaging."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lfmsl.core import numerics
from lfmsl.algorithms.base import Algorithm, Context, State, scan_round, stacked_init, stacked_update
from lfmsl.algorithms.exchanges import Exchange
from lfmsl.algorithms.registry import Entry, register
from lfmsl.config import Config
from lfmsl.core.executors import map_clients
from lfmsl.models import init_params


def build(config: Config, ctx: Context) -> Algorithm:
    optimizer = ctx.optimisers.full_model()
    model = ctx.model
    avg_every = config.avg_every or ctx.iterations

    def local_grad(params, images, labels):
        loss_fn = lambda p: numerics.cross_entropy(model.logits(p["lower"], p["upper"], images), labels)
        return jax.value_and_grad(loss_fn)(params)

    grads_of_clients = map_clients(local_grad, ctx.executor)

    def init(key):
        params = init_params(model, key)
        clients = numerics.broadcast_clients({"lower": params["client"], "upper": params["server"]}, ctx.num_clients)
        return State(clients, stacked_init(optimizer, clients), {}, {}, jnp.zeros((), jnp.int32))

    def step(state, images, labels, weights, key, active=None):
        losses, grads = grads_of_clients(state.clients, images, labels)
        updates, opt_state = stacked_update(optimizer, grads, state.client_opt, state.clients)
        clients = optax.apply_updates(state.clients, updates)
        taking_part = weights
        if active is not None:  # --round-mode epoch: clients past their own epoch keep their model
            clients, opt_state = numerics.keep_active(active, (clients, opt_state), (state.clients, state.client_opt))
            taking_part = numerics.active_weights(weights, active)
        step_count = state.step + 1
        drift = numerics.distance_to_average(clients["lower"], weights)
        clients = numerics.average_every_client(clients, weights, step_count % avg_every == 0)
        metrics = {"train_loss": taking_part @ losses, "client_drift": drift}
        if active is not None:
            metrics["active_clients"] = active.sum()
        return State(clients, opt_state, state.server, state.server_opt, step_count), metrics

    def eval_pairs(state, data, ids):
        averaged = numerics.broadcast_clients(numerics.weighted_average(state.clients, data.weights), 1)
        return averaged["lower"], averaged["upper"]

    return Algorithm(init, lambda s, d, k: scan_round(step, ctx, s, d, k), eval_pairs, personal=False,
                     averaged=("lower", "upper"))


def exchange(config: Config) -> Exchange:
    """Whole models train on the clients; only their averaging crosses the links."""
    return Exchange(schedule="local", grads_down=False, averaged=("client", "server"), avg_every=config.avg_every)


ENTRY = register(Entry("fedavg", "FedAvg", build, exchange, reads=frozenset({"avg_every"}), order=100,
                       role="reference"))
