"""What every algorithm shares: its state, its context, its optimisers and the round loop.

An algorithm is a pair of pure functions in the manner of optax and fedjax:
`init(key) -> State` and `round(state, data, key) -> (State, metrics)`, plus `eval_pairs`,
which says which (lower, upper) model pairs the evaluation scores.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lfmsl.core.batching import ClientData, gather, round_active, round_batches
from lfmsl.models import SplitModel

PyTree = Any
Metrics = dict[str, jax.Array]


class State(NamedTuple):
    """The whole simulated system; client pytrees carry a leading clients axis [N, ...]."""

    clients: PyTree
    client_opt: PyTree
    server: PyTree
    server_opt: PyTree
    step: jax.Array  # iterations done so far (int32)


@dataclasses.dataclass(frozen=True)
class Optimisers:
    """How every model part steps: optax's transformation for a learning rate, and the client's and the
    server's rates. Algorithms build their transformations from it, so none reads the configuration."""

    make: Callable[[float], optax.GradientTransformation]  # optax.adam, optax.sgd, ...
    client_lr: float
    server_lr: float

    def client(self) -> optax.GradientTransformation:
        return self.make(self.client_lr)

    def server(self, scale: int = 1) -> optax.GradientTransformation:
        """The server's transformation; `scale` multiplies its learning rate (SGLR: by the number of clients)."""
        return self.make(self.server_lr * scale)

    def full_model(self) -> optax.GradientTransformation:
        """The transformation on {'lower', 'upper'} with the client and server learning rates respectively."""
        return optax.multi_transform({"lower": self.client(), "upper": self.server()},
                                     lambda params: {name: name for name in params})


@dataclasses.dataclass(frozen=True)
class Context:
    """The facts of a run that shape every algorithm's computation, as explicit values (hashable, known
    before tracing). An algorithm's own settings (mixup, averaging interval, ...) its builder hands in."""

    model: SplitModel
    num_clients: int
    iterations: int  # iterations per round
    executor: str  # a resolved executor spec, never 'auto'
    batch_size: int
    round_mode: str  # "wrap": every client does the largest client's iterations; "epoch": its own epoch
    optimisers: Optimisers


class Algorithm(NamedTuple):
    init: Callable[[jax.Array], State]
    round: Callable[[State, ClientData, jax.Array], tuple[State, Metrics]]
    eval_pairs: Callable[[State, ClientData, jax.Array], tuple[PyTree, PyTree]]
    personal: bool  # True: clients keep their own models, so evaluation reports a spread
    # What is averaged across clients (the keys of `State.clients`, and the server where it has one
    # copy per client): with clients drawn per round, participants start these from the current average.
    averaged: tuple[str, ...] = ()
    averages_server: bool = False


StepFn = Callable[[State, jax.Array, jax.Array, jax.Array, jax.Array], tuple[State, Metrics]]


OPTIMIZERS = {"adam": optax.adam, "sgd": optax.sgd}  # --optimizer


def stacked_init(optimizer: optax.GradientTransformation, stacked_params: PyTree) -> PyTree:
    """One optimiser state per client."""
    return jax.vmap(optimizer.init)(stacked_params)


def stacked_update(optimizer: optax.GradientTransformation, grads: PyTree, opt_state: PyTree, params: PyTree):
    """Each client's optimiser step, so per-client state (Adam moments, counts) stays separate."""
    return jax.vmap(optimizer.update)(grads, opt_state, params)


def scan_round(step: StepFn, ctx: Context, state: State, data: ClientData, key: jax.Array,
               weights: jax.Array | None = None, relay: jax.Array | None = None) -> tuple[State, Metrics]:
    """One round: draw the batches from `key`, then `lax.scan` the step over the iterations.

    `step(state, images [N,B,...], labels [N,B], weights [N], key)` returns per-iteration
    metrics; losses and update sizes are averaged over the round, `client_drift` is taken
    at the last iteration (before that iteration's averaging). With `--round-mode epoch` and
    several clients, or clients failing (`data.present`), the step also gets `active` [N]: which
    clients take part in that iteration. With `relay` (the order in which sequential SL hands the
    model on), the clients take turns instead, one per step, each for its own epoch.
    """
    batch_key, step_key = jax.random.split(key)
    indices = round_batches(batch_key, data, ctx.iterations, ctx.batch_size)  # [I, N, B]
    if relay is not None:  # client by client: [N * I, 1, B]
        indices = indices.transpose(1, 0, 2)[relay].reshape(-1, 1, ctx.batch_size)
    keys = jax.random.split(step_key, indices.shape[0])
    weights = data.weights if weights is None else weights
    # None: every client takes part in every iteration (one learner's epoch is the round)
    own_epochs = ctx.round_mode == "epoch" and (ctx.num_clients > 1 or relay is not None)
    active = round_active(data, ctx.iterations, ctx.batch_size, own_epochs)
    if active is not None and relay is not None:
        active = active.T[relay].reshape(-1, 1)
    inputs = (indices, keys) if active is None else (indices, keys, active)

    def body(state: State, inputs):
        idx, k, *active = inputs
        images, labels = gather(data, idx)
        return step(state, images, labels, weights, k, *active)

    state, per_iteration = jax.lax.scan(body, state, inputs)
    return state, summarise(per_iteration)


def summarise(per_iteration: Metrics) -> Metrics:
    """Reduce per-iteration metrics to one value per round.

    Where iterations report `active_clients` (--round-mode epoch), the losses are averaged over
    client-steps, so an iteration with fewer clients in it counts less."""
    per_iteration = dict(per_iteration)
    active = per_iteration.pop("active_clients", None)
    share = None if active is None else active / jnp.maximum(active.sum(), 1)
    mean = lambda k, v: jnp.mean(v) if share is None or not k.endswith("loss") else share @ v
    out = {k: mean(k, v) for k, v in per_iteration.items() if k not in ("client_drift", "server_rel", "client_rel")}
    if "client_drift" in per_iteration:
        out["client_drift"] = per_iteration["client_drift"][-1]
    if "server_rel" in per_iteration:
        out["server_rel_update"] = jnp.mean(per_iteration["server_rel"])
        out["client_rel_update"] = jnp.mean(per_iteration["client_rel"])
        out["update_ratio"] = out["server_rel_update"] / (out["client_rel_update"] + 1e-12)
    return out
