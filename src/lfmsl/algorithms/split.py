"""The parallel split-learning iteration that PSL, SplitFed, LocSplitFed and LocFedMix-SL share.

One iteration:
1. every client computes its smashed data s_i (and its local loss) through the executor;
2. the server rule computes the server's step and each client's gradient g_i = dL_i/ds_i;
3. the downlink rule decides what is sent down (own, global scale, averaged, GradMix, nothing);
4. each client backpropagates what it received plus its local loss, and steps;
5. every T_c iterations the lower segments (and decoders / auxiliary heads) are averaged.
An algorithm is a `Recipe`: one rule of each kind in `rules.py`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lfmsl.core import numerics
from lfmsl.algorithms import rules
from lfmsl.algorithms.base import Algorithm, Context, Metrics, PyTree, State, scan_round, stacked_init, stacked_update
from lfmsl.algorithms.exchanges import Exchange
from lfmsl.algorithms.registry import Entry, get
from lfmsl.config import Config
from lfmsl.core.executors import map_clients
from lfmsl.models import init_params
from lfmsl.privacy.attacks import add_noise
from lfmsl.privacy.measures import distance_correlation

NOISE_STREAM = 0x5A  # folded into an iteration's key for --smash-noise, so the other draws keep their keys


class Recipe(NamedTuple):
    """A parallel split algorithm: one rule of each kind, with its settings."""

    server: rules.ServerRule
    downlink: rules.Downlink
    local: rules.LocalLoss | None = None
    averaging: rules.Averaging | None = None
    server_lr_scales_with_clients: bool = False  # SGLR: the server's learning rate times N


class Defences(NamedTuple):
    """The defences of the smashed data; at zero strength the program is the one without them."""

    nopeek_weight: float = 0.0  # --nopeek-weight
    smash_noise: float = 0.0  # --smash-noise


def defences(config: Config) -> Defences:
    """The defences `config` asks for (read when an algorithm is built, never inside its round)."""
    return Defences(config.nopeek_weight, config.smash_noise)


def _client_forward(ctx: Context, recipe: Recipe, nopeek: float):
    """One client's forward pass: smashed data and its local loss (zero if it has none). With --nopeek-weight
    alpha > 0 the local loss also holds NoPeek's alpha * dCor(inputs, smashed data) (Vepakomma et al. 2020)."""
    model, local = ctx.model, recipe.local

    def forward(params: PyTree, images: jax.Array, labels: jax.Array):
        smashed = model.client.apply({"params": params["lower"]}, images)
        loss = jnp.zeros((), smashed.dtype) if local is None else local.loss(ctx, params, smashed, images, labels)
        if nopeek > 0:  # decided when tracing: at 0 the program is the one without NoPeek
            loss = loss + nopeek * distance_correlation(images, smashed)
        return smashed, loss

    return forward


def make_step(ctx: Context, recipe: Recipe, client_opt: optax.GradientTransformation,
              server_opt: optax.GradientTransformation, defended: Defences = Defences()):
    """The iteration of `recipe` as a function for `scan_round`."""
    forward = map_clients(_client_forward(ctx, recipe, defended.nopeek_weight), ctx.executor)
    averaging = recipe.averaging
    avg_every = None if averaging is None else (averaging.every or ctx.iterations)
    noise = defended.smash_noise

    def step(state: State, images, labels, weights, key, active=None) -> tuple[State, Metrics]:
        """One iteration; with `active` [N] (--round-mode epoch) only those clients take part."""
        server_key, grad_key = jax.random.split(key)
        taking_part = weights if active is None else numerics.active_weights(weights, active)
        (smashed, local), client_vjp = jax.vjp(lambda p: forward(p, images, labels), state.clients)
        if noise > 0:  # --smash-noise: what leaves each client; its own local loss saw the clean smashed data
            smashed = add_noise(smashed, noise, jax.random.fold_in(key, NOISE_STREAM))
        batch = rules.ServerBatch(jax.lax.stop_gradient(smashed), labels, taking_part, server_key, active)
        # named scopes only label the compiled program for profiles (scripts/profile_round.py)
        with jax.named_scope("server"):
            server, server_opt_state, own, per_client, server_rel = recipe.server.step(
                ctx, server_opt, state.server, state.server_opt, batch)
        received = recipe.downlink.receive(own, taking_part, grad_key)
        (grads,) = client_vjp((received, jnp.ones_like(local)))
        with jax.named_scope("client_optimizer"):
            updates, client_opt_state = stacked_update(client_opt, grads, state.client_opt, state.clients)
            client_rels = numerics.per_client_relative_update(updates["lower"], state.clients["lower"])
            clients = optax.apply_updates(state.clients, updates)
        if active is None:
            client_rel = jnp.mean(client_rels)
        else:  # clients outside their epoch keep their model and optimiser state
            client_rel = jnp.sum(client_rels * active) / jnp.maximum(active.sum(), 1)
            clients, client_opt_state = numerics.keep_active(active, (clients, client_opt_state),
                                                             (state.clients, state.client_opt))

        step_count = state.step + 1
        drift = numerics.distance_to_average(clients["lower"], weights)
        if averaging is not None:
            with jax.named_scope("averaging"):
                do_average = step_count % avg_every == 0
                clients = {k: numerics.average_every_client(v, weights, do_average) if k in averaging.parts else v
                           for k, v in clients.items()}
                if averaging.server:
                    server = numerics.average_every_client(server, weights, do_average)
        metrics = {
            "train_loss": taking_part @ per_client,
            "server_rel": server_rel,
            "client_rel": client_rel,
            "client_drift": drift,
        }
        if recipe.local is not None:
            metrics["local_loss"] = taking_part @ local
        if active is not None:
            metrics["active_clients"] = active.sum()
        return State(clients, client_opt_state, server, server_opt_state, step_count), metrics

    return step


def init_state(ctx: Context, recipe: Recipe, key: jax.Array, client_opt, server_opt, num_client_models: int) -> State:
    """All clients (and SFL-V1's server copies) start from one common initial model."""
    params = init_params(ctx.model, key)
    client = {"lower": params["client"]}
    if recipe.local is not None:
        client[recipe.local.part] = params[recipe.local.part]
    clients = numerics.broadcast_clients(client, num_client_models)
    server = params["server"]
    if recipe.server.copies:
        server = numerics.broadcast_clients(server, num_client_models)
        server_opt_state = stacked_init(server_opt, server)
    else:
        server_opt_state = server_opt.init(server)
    return State(clients, stacked_init(client_opt, clients), server, server_opt_state, jnp.zeros((), jnp.int32))


def optimizers(ctx: Context, recipe: Recipe) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """The clients' and the server's transformations (SGLR's server rate scaled with the clients)."""
    server_scale = ctx.num_clients if recipe.server_lr_scales_with_clients else 1
    return ctx.optimisers.client(), ctx.optimisers.server(server_scale)


def eval_pairs_for(recipe: Recipe):
    """Averaging algorithms score the averaged model; the others each client's own pair."""

    def eval_pairs(state: State, data, eval_ids: jax.Array):
        lower = state.clients["lower"]
        if recipe.averaging is not None:
            lower = numerics.broadcast_clients(numerics.weighted_average(lower, data.weights), 1)
            server = numerics.weighted_average(state.server, data.weights) if recipe.server.copies else state.server
            return lower, numerics.broadcast_clients(server, 1)
        lower = jax.tree.map(lambda leaf: leaf[eval_ids], lower)
        return lower, numerics.broadcast_clients(state.server, eval_ids.shape[0])

    return eval_pairs


def build_split(ctx: Context, recipe: Recipe, defended: Defences = Defences()) -> Algorithm:
    if recipe.averaging is not None and recipe.averaging.server and not recipe.server.copies:
        raise ValueError("averaging server copies needs a server rule with one copy per client (PerClientServer)")
    client_opt, server_opt = optimizers(ctx, recipe)
    step = make_step(ctx, recipe, client_opt, server_opt, defended)
    return Algorithm(
        init=lambda key: init_state(ctx, recipe, key, client_opt, server_opt, ctx.num_clients),
        round=lambda state, data, key: scan_round(step, ctx, state, data, key),
        eval_pairs=eval_pairs_for(recipe),
        personal=recipe.averaging is None,
        averaged=() if recipe.averaging is None else recipe.averaging.parts,
        averages_server=recipe.averaging is not None and recipe.averaging.server,
    )


_LEDGER_PART = {"lower": "client", "decoder": "decoder", "aux": "aux"}  # a client pytree key -> the ledger's part name


def split_exchange(recipe: Recipe) -> Exchange:
    """What a parallel split recipe sends, read off its rules."""
    averaging, server = recipe.averaging, recipe.server
    mixup = getattr(server, "mixup", None)
    return Exchange(
        schedule="parallel",
        grads_down=recipe.downlink.sends,
        local=None if recipe.local is None else recipe.local.part,
        averaged=() if averaging is None else tuple(_LEDGER_PART[p] for p in averaging.parts),
        avg_every=None if averaging is None else averaging.every,
        server_copies=averaging is not None and averaging.server,
        mixed_per_client=0 if mixup is None else mixup.partners,
        sequential_server=isinstance(server, rules.SequentialServer),
    )


@dataclasses.dataclass(frozen=True)
class SplitEntry(Entry):
    """The registry entry of a parallel split algorithm: it is its `recipe(config)`."""

    recipe: Callable[[Config], Recipe] | None = None


def split_entry(name: str, label: str, recipe: Callable[[Config], Recipe], **entry) -> SplitEntry:
    """The entry of the parallel split algorithm `recipe(config)`: building it and its exchange
    both follow from the recipe."""
    return SplitEntry(name, label, build=lambda config, ctx: build_split(ctx, recipe(config), defences(config)),
                      exchange=lambda config: split_exchange(recipe(config)), recipe=recipe, **entry)


def recipe_for(config: Config) -> Recipe | None:
    """The recipe of the configured algorithm, or None where it is not a parallel split one."""
    entry = get(config.algorithm)
    return entry.recipe(config) if isinstance(entry, SplitEntry) else None


def averaging(config: Config, *local_parts: str, server: bool = False) -> rules.Averaging:
    """Averaging of the lower segments (and `local_parts`) every --avg-every iterations."""
    return rules.Averaging(("lower",) + local_parts, config.avg_every, server)
