"""The parallel split-learning iteration that PSL, SplitFed, LocSplitFed and LocFedMix-SL share.

One iteration:
1. every client computes its smashed data s_i (and its local loss) through the executor;
2. the server rule computes the server's step and each client's gradient g_i = dL_i/ds_i;
3. a gradient rule decides what is sent down (own, global scale, averaged, GradMix, nothing);
4. each client backpropagates what it received plus its local loss, and steps;
5. every T_c iterations the lower segments (and decoders / auxiliary heads) are averaged.
An algorithm is a `Recipe`: a choice for each of these parts.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from lfmsl import blocks
from lfmsl.algorithms.base import Algorithm, Context, Metrics, PyTree, State, make_optimizer, scan_round, stacked_init, stacked_update
from lfmsl.executors import map_clients
from lfmsl.models import init_params


@dataclasses.dataclass(frozen=True)
class Recipe:
    local: str | None = None  # None | "decoder" (LocFedMix-SL's Loc) | "aux" (LocSplitFed)
    server: str = "shared"  # "shared": one step on sum_i delta_i L_i | "per_client" (SFL-V1) | "sequential" (SFL-V2)
    mix: bool = False  # smashed-data mixup at the server
    send_grad: bool = True  # False: clients learn from their local loss only
    grad_rule: str = "config"  # "config" (--client-grad) | "mean" (SGLR) | "gradmix" (Mix2SFL)
    average_clients: bool = False
    average_server: bool = False  # SFL-V1 averages its per-client server copies
    server_lr_scale: str = "one"  # "one" | "clients" (SGLR scales the server rate with N)


def _client_forward(ctx: Context, recipe: Recipe):
    """One client's forward pass: smashed data and its local loss (zero if it has none)."""
    model, loss_kind, beta = ctx.model, ctx.config.loc_loss, ctx.config.loc_weight

    def forward(params: PyTree, images: jax.Array, labels: jax.Array):
        smashed = model.client.apply({"params": params["lower"]}, images)
        if recipe.local == "decoder":  # the decoder steps along dR/dh; beta weighs R's pull on the client only
            reconstruction = model.decoder.apply({"params": params["decoder"]}, blocks.scale_gradient(smashed, beta))
            local = blocks.reconstruction_loss(reconstruction, images, loss_kind)
        elif recipe.local == "aux":
            local = blocks.cross_entropy(model.aux.apply({"params": params["aux"]}, smashed), labels)
        else:
            local = jnp.zeros((), smashed.dtype)
        return smashed, local

    return forward


def _server_logits(ctx: Context, params: PyTree, smashed: jax.Array) -> jax.Array:
    """Apply the server to [..., B, *smashed_shape], keeping the leading axes."""
    lead = smashed.shape[: smashed.ndim - len(ctx.model.smashed_shape)]
    flat = smashed.reshape((-1,) + tuple(ctx.model.smashed_shape))
    return ctx.model.server.apply({"params": params}, flat).reshape(lead + (-1,))


def _shared_server(ctx: Context, recipe: Recipe, optimizer, params, opt_state, smashed, labels, weights, key, active=None):
    """One server step on sum_i delta_i (L_i + mixed loss); the mixed loss reaches no client.

    With `active` [N], `weights` are zero for the clients outside their epoch; they are mixed
    with nobody's data, and a server with no active client does not step (sequential SL)."""
    cfg = ctx.config

    def loss_fn(params, smashed):
        per_client = jax.vmap(blocks.cross_entropy)(_server_logits(ctx, params, smashed), labels)
        total = weights @ per_client
        if recipe.mix:
            mixed, soft, partners = blocks.smashed_mixup(
                key, jax.lax.stop_gradient(smashed), labels, ctx.model.num_classes, cfg.mix_partners, cfg.mix_alpha, active
            )
            num_clients = smashed.shape[0]
            mixed_logits = _server_logits(ctx, params, mixed).reshape(num_clients, -1, ctx.model.num_classes)
            if active is None:
                mixed_loss = jax.vmap(blocks.cross_entropy)(mixed_logits, soft.reshape(mixed_logits.shape))
            else:  # the mean over the partners that are active themselves
                pairs = mixed_logits.reshape(num_clients, cfg.mix_partners, -1, ctx.model.num_classes)
                pair_loss = jax.vmap(jax.vmap(blocks.cross_entropy))(pairs, soft.reshape(pairs.shape))
                partner_on = active[partners].astype(pair_loss.dtype)
                mixed_loss = jnp.sum(pair_loss * partner_on, 1) / jnp.maximum(partner_on.sum(1), 1.0)
            total = total + weights @ mixed_loss  # mean over n_s * B = (1/n_s) sum over partners
        return total, per_client

    (_, per_client), (grad_params, grad_smashed) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(params, smashed)
    expanded = weights.reshape((-1,) + (1,) * (smashed.ndim - 1))
    if active is None:
        own = grad_smashed / expanded
    else:
        own = jnp.where(expanded > 0, grad_smashed / jnp.where(expanded > 0, expanded, 1.0), 0.0)
    updates, new_opt_state = optimizer.update(grad_params, opt_state, params)
    rel = blocks.relative_update(updates, params)
    new_params = optax.apply_updates(params, updates)
    if active is not None:
        steps = jnp.any(active)
        new_params, new_opt_state = jax.tree.map(lambda n, o: jnp.where(steps, n, o), (new_params, new_opt_state), (params, opt_state))
    return new_params, new_opt_state, own, per_client, rel


def _single_server_step(ctx: Context, optimizer, params, opt_state, smashed, labels):
    """A server step on one client's batch, as in plain SL."""

    def loss_fn(params, smashed):
        return blocks.cross_entropy(_server_logits(ctx, params, smashed), labels)

    loss, (grad_params, grad_smashed) = jax.value_and_grad(loss_fn, argnums=(0, 1))(params, smashed)
    updates, opt_state = optimizer.update(grad_params, opt_state, params)
    rel = blocks.relative_update(updates, params)
    return optax.apply_updates(params, updates), opt_state, grad_smashed, loss, rel


def _per_client_server(ctx: Context, recipe: Recipe, optimizer, params, opt_state, smashed, labels, weights, key, active=None):
    """SFL-V1: server copy i trains on client i's batch, all copies in parallel."""
    step = lambda p, o, s, y: _single_server_step(ctx, optimizer, p, o, s, y)
    new_params, new_opt_state, own, per_client, rel = map_clients(step, ctx.executor)(params, opt_state, smashed, labels)
    if active is None:
        return new_params, new_opt_state, own, per_client, jnp.mean(rel)
    new_params, new_opt_state = blocks.keep_active(active, (new_params, new_opt_state), (params, opt_state))
    return new_params, new_opt_state, own, per_client, jnp.sum(rel * active) / jnp.maximum(active.sum(), 1)


def _sequential_server(ctx: Context, recipe: Recipe, optimizer, params, opt_state, smashed, labels, weights, key, active=None):
    """SFL-V2: one server, one step per client batch, clients taken in a random order.

    Its relative update is the whole iteration's (all N steps), comparable with one shared step.
    Clients outside their epoch (`active` False) are skipped."""
    order = jax.random.permutation(key, smashed.shape[0])

    def body(carry, i):
        params, opt_state = carry
        new = _single_server_step(ctx, optimizer, params, opt_state, smashed[i], labels[i])
        if active is not None:
            new = jax.tree.map(lambda n, o: jnp.where(active[i], n, o), new[:2], (params, opt_state)) + new[2:]
        params, opt_state, grad_smashed, loss, _ = new
        return (params, opt_state), (grad_smashed, loss)

    (new_params, opt_state), (grads, losses) = jax.lax.scan(body, (params, opt_state), order)
    own = jnp.zeros_like(smashed).at[order].set(grads)
    per_client = jnp.zeros_like(losses).at[order].set(losses)
    rel = blocks.relative_update(jax.tree.map(jnp.subtract, new_params, params), params)
    return new_params, opt_state, own, per_client, rel


SERVER_RULES = {"shared": _shared_server, "per_client": _per_client_server, "sequential": _sequential_server}


def downlink_gradient(ctx: Context, recipe: Recipe, own: jax.Array, weights: jax.Array, key: jax.Array) -> jax.Array:
    """What each client receives, from each client's own-loss gradient `own` [N, B, ...]."""
    if not recipe.send_grad:
        return jnp.zeros_like(own)
    rule = ctx.config.client_grad if recipe.grad_rule == "config" else recipe.grad_rule
    expand = lambda w: w.reshape((-1,) + (1,) * (own.ndim - 1))
    if rule == "own":
        return own
    if rule == "global":  # gradient of the combined loss sum_i delta_i L_i: about 1/N smaller
        return own * expand(weights)
    if rule == "mean":  # SGLR: every client gets the delta-weighted average
        return jnp.broadcast_to(jnp.tensordot(weights, own, axes=1), own.shape)
    # GradMix: a random subset (fraction phi) receives the average of the subset's gradients.
    num_clients = own.shape[0]
    chosen = max(1, round(ctx.config.gradmix_fraction * num_clients))
    in_subset = jnp.zeros(num_clients, bool).at[jax.random.permutation(key, num_clients)[:chosen]].set(True)
    subset_weights = jnp.where(in_subset, weights, 0.0)
    subset_mean = jnp.tensordot(subset_weights / jnp.maximum(subset_weights.sum(), jnp.finfo(own.dtype).tiny), own, axes=1)
    return jnp.where(expand(in_subset), subset_mean[None], own)


def make_step(ctx: Context, recipe: Recipe, client_opt, server_opt):
    """The iteration of `recipe` as a function for `scan_round`."""
    forward = map_clients(_client_forward(ctx, recipe), ctx.executor)
    server_rule = SERVER_RULES[recipe.server]
    averaged = ["lower"] + (["decoder"] if ctx.config.average_decoders else []) + ["aux"]

    def step(state: State, images, labels, weights, key, active=None) -> tuple[State, Metrics]:
        """One iteration; with `active` [N] (--round-mode epoch) only those clients take part."""
        server_key, grad_key = jax.random.split(key)
        taking_part = weights if active is None else blocks.active_weights(weights, active)
        (smashed, local), client_vjp = jax.vjp(lambda p: forward(p, images, labels), state.clients)
        server, server_opt_state, own, per_client, server_rel = server_rule(
            ctx, recipe, server_opt, state.server, state.server_opt, jax.lax.stop_gradient(smashed), labels, taking_part, server_key,
            active,
        )
        received = downlink_gradient(ctx, recipe, own, taking_part, grad_key)
        (grads,) = client_vjp((received, jnp.ones_like(local)))
        updates, client_opt_state = stacked_update(client_opt, grads, state.client_opt, state.clients)
        client_rels = blocks.per_client_relative_update(updates["lower"], state.clients["lower"])
        clients = optax.apply_updates(state.clients, updates)
        if active is None:
            client_rel = jnp.mean(client_rels)
        else:  # clients outside their epoch keep their model and optimiser state
            client_rel = jnp.sum(client_rels * active) / jnp.maximum(active.sum(), 1)
            clients, client_opt_state = blocks.keep_active(active, (clients, client_opt_state), (state.clients, state.client_opt))

        step_count = state.step + 1
        drift = blocks.distance_to_average(clients["lower"], weights)
        if recipe.average_clients:
            do_average = step_count % ctx.avg_every == 0
            clients = {k: blocks.average_every_client(v, weights, do_average) if k in averaged else v for k, v in clients.items()}
            if recipe.average_server:
                server = blocks.average_every_client(server, weights, do_average)
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
    if recipe.local == "decoder":
        client["decoder"] = params["decoder"]
    if recipe.local == "aux":
        client["aux"] = params["aux"]
    clients = blocks.broadcast_clients(client, num_client_models)
    server = params["server"]
    if recipe.server == "per_client":
        server = blocks.broadcast_clients(server, num_client_models)
        server_opt_state = stacked_init(server_opt, server)
    else:
        server_opt_state = server_opt.init(server)
    return State(clients, stacked_init(client_opt, clients), server, server_opt_state, jnp.zeros((), jnp.int32))


def optimizers(ctx: Context, recipe: Recipe):
    server_lr = ctx.config.resolved_server_lr * (ctx.num_clients if recipe.server_lr_scale == "clients" else 1)
    return make_optimizer(ctx.config, ctx.config.resolved_client_lr), make_optimizer(ctx.config, server_lr)


def eval_pairs_for(recipe: Recipe):
    """Averaging algorithms score the averaged model; the others each client's own pair."""

    def eval_pairs(state: State, data, eval_ids: jax.Array):
        lower = state.clients["lower"]
        if recipe.average_clients:
            lower = blocks.broadcast_clients(blocks.weighted_average(lower, data.weights), 1)
            server = blocks.weighted_average(state.server, data.weights) if recipe.server == "per_client" else state.server
            return lower, blocks.broadcast_clients(server, 1)
        lower = jax.tree.map(lambda leaf: leaf[eval_ids], lower)
        return lower, blocks.broadcast_clients(state.server, eval_ids.shape[0])

    return eval_pairs


def build_split(ctx: Context, recipe: Recipe) -> Algorithm:
    client_opt, server_opt = optimizers(ctx, recipe)
    step = make_step(ctx, recipe, client_opt, server_opt)
    return Algorithm(
        init=lambda key: init_state(ctx, recipe, key, client_opt, server_opt, ctx.num_clients),
        round=lambda state, data, key: scan_round(step, ctx, state, data, key),
        eval_pairs=eval_pairs_for(recipe),
        personal=not recipe.average_clients,
    )
