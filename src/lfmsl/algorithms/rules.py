"""The rules a parallel split algorithm is made of, each a small typed value with explicit settings.

A `Recipe` (see `split.py`) picks one rule of each kind:
- a **server rule**: `SharedServer` (one step on the combined loss, optionally with `Mixup`),
  `PerClientServer` (SFL-V1's server copies) or `SequentialServer` (SFL-V2);
- a **downlink rule**: what each client receives from its own-loss gradient (`client_grad_rule(name)`);
- a **local loss** on the client: `DecoderRegulariser` (LocFedMix-SL's Loc) or `AuxClassifier`
  (LocSplitFed), or none;
- **averaging**: which of the clients' model parts are averaged and how often, or none.
Every factory refuses a name it does not know: there is no silent default.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lfmsl.core import numerics
from lfmsl.algorithms.base import Context, PyTree
from lfmsl.core.executors import map_clients

# ---------------------------------------------------------------------------------------------
# Local losses: what a client computes besides its smashed data, with a model part of its own.


@dataclasses.dataclass(frozen=True)
class DecoderRegulariser:
    """LocFedMix-SL's local regulariser R: a decoder reconstructs the input from the smashed data.

    The decoder steps along dR/dh unscaled; `weight` (beta) scales only R's pull on the client segment."""

    weight: float = 1.0
    loss_kind: str = "mse"  # "mse" | "bce"
    part = "decoder"  # its parameters' key in a client's pytree

    def __post_init__(self):
        if self.loss_kind not in numerics.RECONSTRUCTION_LOSSES:
            known = ", ".join(numerics.RECONSTRUCTION_LOSSES)
            raise ValueError(f"unknown reconstruction loss {self.loss_kind!r}; known: {known}")

    def loss(self, ctx: Context, params: PyTree, smashed: jax.Array, images: jax.Array, labels: jax.Array) -> jax.Array:
        pulled = numerics.scale_gradient(smashed, self.weight)
        reconstruction = ctx.model.decoder.apply({"params": params[self.part]}, pulled)
        return numerics.reconstruction_loss(reconstruction, images, self.loss_kind)


@dataclasses.dataclass(frozen=True)
class AuxClassifier:
    """LocSplitFed's auxiliary classifier: the client learns from its own cross-entropy."""

    part = "aux"

    def loss(self, ctx: Context, params: PyTree, smashed: jax.Array, images: jax.Array, labels: jax.Array) -> jax.Array:
        return numerics.cross_entropy(ctx.model.aux.apply({"params": params[self.part]}, smashed), labels)


LocalLoss = DecoderRegulariser | AuxClassifier


# ---------------------------------------------------------------------------------------------
# Server rules: the server's step and each client's own-loss gradient dL_i/ds_i.


@dataclasses.dataclass(frozen=True)
class Mixup:
    """Smashed-data mixup at the server: each client's batch mixed with `partners` other clients'."""

    partners: int = 1
    alpha: float = 1.0


class ServerBatch(NamedTuple):
    """What the server works on in one iteration (client axis first)."""

    smashed: jax.Array  # [N, B, *smashed_shape], no gradient to the clients
    labels: jax.Array  # [N, B]
    weights: jax.Array  # [N] data shares; zero for clients outside their epoch
    key: jax.Array
    active: jax.Array | None  # [N] with --round-mode epoch, else None


class ServerStep(NamedTuple):
    params: PyTree
    opt_state: PyTree
    own: jax.Array  # [N, B, ...] each client's own-loss gradient
    per_client_loss: jax.Array  # [N]
    relative_update: jax.Array  # the iteration's whole server update, relative to the parameters


def server_logits(ctx: Context, params: PyTree, smashed: jax.Array) -> jax.Array:
    """Apply the server to [..., B, *smashed_shape], keeping the leading axes."""
    lead = smashed.shape[: smashed.ndim - len(ctx.model.smashed_shape)]
    flat = smashed.reshape((-1,) + tuple(ctx.model.smashed_shape))
    return ctx.model.server.apply({"params": params}, flat).reshape(lead + (-1,))


@dataclasses.dataclass(frozen=True)
class SharedServer:
    """One server step on sum_i delta_i (L_i + mixed loss); the mixed loss reaches no client.

    With `active`, the weights are zero for the clients outside their epoch; they are mixed with
    nobody's data, and a server with no active client does not step (sequential SL)."""

    mixup: Mixup | None = None
    copies = False  # one server model, not one per client

    def step(self, ctx: Context, optimizer: optax.GradientTransformation, params: PyTree, opt_state: PyTree,
             batch: ServerBatch) -> ServerStep:
        smashed, labels, weights, key, active = batch
        mixup = self.mixup

        def loss_fn(params, smashed):
            per_client = jax.vmap(numerics.cross_entropy)(server_logits(ctx, params, smashed), labels)
            total = weights @ per_client
            if mixup is not None:
                with jax.named_scope("mixup"):
                    mixed, soft, partners = numerics.smashed_mixup(
                        key, jax.lax.stop_gradient(smashed), labels, ctx.model.num_classes, mixup.partners, mixup.alpha,
                        active,
                    )
                num_clients = smashed.shape[0]
                mixed_logits = server_logits(ctx, params, mixed).reshape(num_clients, -1, ctx.model.num_classes)
                if active is None:
                    mixed_loss = jax.vmap(numerics.cross_entropy)(mixed_logits, soft.reshape(mixed_logits.shape))
                else:  # the mean over the partners that are active themselves
                    pairs = mixed_logits.reshape(num_clients, mixup.partners, -1, ctx.model.num_classes)
                    pair_loss = jax.vmap(jax.vmap(numerics.cross_entropy))(pairs, soft.reshape(pairs.shape))
                    partner_on = active[partners].astype(pair_loss.dtype)
                    mixed_loss = jnp.sum(pair_loss * partner_on, 1) / jnp.maximum(partner_on.sum(1), 1.0)
                total = total + weights @ mixed_loss  # mean over n_s * B = (1/n_s) sum over partners
            return total, per_client

        value_and_grad = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)
        (_, per_client), (grad_params, grad_smashed) = value_and_grad(params, smashed)
        expanded = weights.reshape((-1,) + (1,) * (smashed.ndim - 1))
        if active is None:
            own = grad_smashed / expanded
        else:
            own = jnp.where(expanded > 0, grad_smashed / jnp.where(expanded > 0, expanded, 1.0), 0.0)
        with jax.named_scope("server_optimizer"):
            updates, new_opt_state = optimizer.update(grad_params, opt_state, params)
            rel = numerics.relative_update(updates, params)
            new_params = optax.apply_updates(params, updates)
        if active is not None:
            steps = jnp.any(active)
            new_params, new_opt_state = jax.tree.map(lambda n, o: jnp.where(steps, n, o), (new_params, new_opt_state),
                                                     (params, opt_state))
        return ServerStep(new_params, new_opt_state, own, per_client, rel)


def single_server_step(ctx: Context, optimizer, params, opt_state, smashed, labels):
    """A server step on one client's batch, as in plain SL."""

    def loss_fn(params, smashed):
        return numerics.cross_entropy(server_logits(ctx, params, smashed), labels)

    loss, (grad_params, grad_smashed) = jax.value_and_grad(loss_fn, argnums=(0, 1))(params, smashed)
    updates, opt_state = optimizer.update(grad_params, opt_state, params)
    rel = numerics.relative_update(updates, params)
    return optax.apply_updates(params, updates), opt_state, grad_smashed, loss, rel


@dataclasses.dataclass(frozen=True)
class PerClientServer:
    """SFL-V1: server copy i trains on client i's batch, all copies in parallel."""

    copies = True  # one server model per client (a leading clients axis)

    def step(self, ctx: Context, optimizer: optax.GradientTransformation, params: PyTree, opt_state: PyTree,
             batch: ServerBatch) -> ServerStep:
        step = lambda p, o, s, y: single_server_step(ctx, optimizer, p, o, s, y)
        stepped = map_clients(step, ctx.executor)(params, opt_state, batch.smashed, batch.labels)
        new_params, new_opt_state, own, per_client, rel = stepped
        active = batch.active
        if active is None:
            return ServerStep(new_params, new_opt_state, own, per_client, jnp.mean(rel))
        new_params, new_opt_state = numerics.keep_active(active, (new_params, new_opt_state), (params, opt_state))
        active_rel = jnp.sum(rel * active) / jnp.maximum(active.sum(), 1)
        return ServerStep(new_params, new_opt_state, own, per_client, active_rel)


@dataclasses.dataclass(frozen=True)
class SequentialServer:
    """SFL-V2: one server, one step per client batch, clients taken in a random order.

    Its relative update is the whole iteration's (all N steps), comparable with one shared step.
    Clients outside their epoch (`active` False) are skipped."""

    copies = False

    def step(self, ctx: Context, optimizer: optax.GradientTransformation, params: PyTree, opt_state: PyTree,
             batch: ServerBatch) -> ServerStep:
        smashed, labels, active = batch.smashed, batch.labels, batch.active
        order = jax.random.permutation(batch.key, smashed.shape[0])

        def body(carry, i):
            params, opt_state = carry
            new = single_server_step(ctx, optimizer, params, opt_state, smashed[i], labels[i])
            if active is not None:
                new = jax.tree.map(lambda n, o: jnp.where(active[i], n, o), new[:2], (params, opt_state)) + new[2:]
            params, opt_state, grad_smashed, loss, _ = new
            return (params, opt_state), (grad_smashed, loss)

        (new_params, opt_state), (grads, losses) = jax.lax.scan(body, (params, opt_state), order)
        own = jnp.zeros_like(smashed).at[order].set(grads)
        per_client = jnp.zeros_like(losses).at[order].set(losses)
        rel = numerics.relative_update(jax.tree.map(jnp.subtract, new_params, params), params)
        return ServerStep(new_params, opt_state, own, per_client, rel)


ServerRule = SharedServer | PerClientServer | SequentialServer


# ---------------------------------------------------------------------------------------------
# Downlink rules: what each client receives, from every client's own-loss gradient `own` [N, B, ...].


class Downlink(NamedTuple):
    name: str
    sends: bool  # False: nothing crosses the downlink (clients learn from their local loss only)
    receive: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]  # (own, weights [N], key) -> received


def _expand(weights: jax.Array, like: jax.Array) -> jax.Array:
    return weights.reshape((-1,) + (1,) * (like.ndim - 1))


def own_gradient() -> Downlink:
    """Each client receives the unscaled gradient of its own loss [default]."""
    return Downlink("own", True, lambda own, weights, key: own)


def global_gradient() -> Downlink:
    """The gradient of the combined loss sum_i delta_i L_i: about 1/N of each client's own."""
    return Downlink("global", True, lambda own, weights, key: own * _expand(weights, own))


def mean_gradient() -> Downlink:
    """SGLR: every client receives the delta-weighted average of the clients' gradients."""
    return Downlink("mean", True,
                    lambda own, weights, key: jnp.broadcast_to(jnp.tensordot(weights, own, axes=1), own.shape))


def gradmix(fraction: float) -> Downlink:
    """Mix2SFL's GradMix: a random subset (a `fraction` of the clients) receives the average of
    the subset's gradients; the others their own."""
    if not 0 < fraction <= 1:
        raise ValueError(f"the GradMix fraction must be in (0, 1], got {fraction}")

    def receive(own, weights, key):
        num_clients = own.shape[0]
        chosen = max(1, round(fraction * num_clients))
        in_subset = jnp.zeros(num_clients, bool).at[jax.random.permutation(key, num_clients)[:chosen]].set(True)
        subset_weights = jnp.where(in_subset, weights, 0.0)
        subset_share = subset_weights / jnp.maximum(subset_weights.sum(), jnp.finfo(own.dtype).tiny)
        subset_mean = jnp.tensordot(subset_share, own, axes=1)
        return jnp.where(_expand(in_subset, own), subset_mean[None], own)

    return Downlink("gradmix", True, receive)


def no_gradient() -> Downlink:
    """Nothing is sent down (LocSplitFed)."""
    return Downlink("none", False, lambda own, weights, key: jnp.zeros_like(own))


CLIENT_GRAD_RULES = {"own": own_gradient, "global": global_gradient}  # --client-grad


def client_grad_rule(name: str) -> Downlink:
    """The downlink rule that `--client-grad NAME` selects."""
    if name not in CLIENT_GRAD_RULES:
        raise ValueError(f"unknown --client-grad rule {name!r}; known: {', '.join(CLIENT_GRAD_RULES)}")
    return CLIENT_GRAD_RULES[name]()


# ---------------------------------------------------------------------------------------------
# Averaging of the client segments.


@dataclasses.dataclass(frozen=True)
class Averaging:
    """Every `every` iterations (None: once per round) the clients' `parts` are replaced by their
    data-weighted average; with `server`, so are the per-client server copies (SFL-V1)."""

    parts: tuple[str, ...] = ("lower",)
    every: int | None = None
    server: bool = False

    def __post_init__(self):
        unknown = [p for p in self.parts if p not in ("lower", "decoder", "aux")]
        if unknown or "lower" not in self.parts:
            raise ValueError(f"averaging takes the lower segment and optionally decoder / aux, got {self.parts}")
        if self.every is not None and self.every < 1:
            raise ValueError(f"averaging needs a positive interval, got {self.every}")
