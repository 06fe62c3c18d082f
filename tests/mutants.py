"""Deliberately broken variants of lfmsl, to show that a test's tolerance still catches a real error.

`LFMSL_MUTANT=NAME python -m pytest TEST` runs TEST against the variant NAME: conftest.py applies it in every test
process before the tests import lfmsl's names, and test_sharding.py in the runs it starts. A test that compares two
computations must fail against each variant that breaks one side of its comparison; docs/DETERMINISM.md lists
which test catches which.

Each variant is a small error of the kind a change could make, small on purpose: a test that catches a 0.1 %
error in one client's computation catches the whole-step errors of a wrong gradient, client or average.
"""

from __future__ import annotations

import sys
from typing import Callable

import jax
import jax.numpy as jnp

SCALE = 1 + 1e-3  # a computation 0.1 % wrong


def _scaled(tree):
    return jax.tree.map(lambda x: x * SCALE if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _replace_everywhere(original: Callable, replacement: Callable) -> None:
    """Rebind `original` to `replacement` in every lfmsl module that imported it by name."""
    for name, module in list(sys.modules.items()):
        if name == "lfmsl" or name.startswith("lfmsl."):
            for attribute, value in list(vars(module).items()):
                if value is original:
                    setattr(module, attribute, replacement)


def _mapped_executor(change: Callable) -> None:
    """The lax.map executors (chunked, loop) apply `change` to what each mapped call returns; vmap is unchanged."""
    from lfmsl.core import executors

    original = executors.map_clients

    def map_clients(fn, spec):
        mapped = original(fn, spec)
        if executors.parse_executor(executors.resolve(spec))[0] == "vmap":
            return mapped
        return lambda *args: change(mapped(*args))

    _replace_everywhere(original, map_clients)


def loop_scaled() -> None:
    """The loop and chunked executors compute every client's outputs 0.1 % too large."""
    _mapped_executor(_scaled)


def loop_rolled() -> None:
    """The loop and chunked executors hand each client its neighbour's outputs."""
    _mapped_executor(lambda out: jax.tree.map(lambda x: jnp.roll(x, 1, axis=0), out))


def split_client_lr() -> None:
    """The split algorithms' clients step with a learning rate 1 % too large (centralised training and FedAvg
    keep theirs)."""
    import dataclasses

    from lfmsl.algorithms import split

    original = split.optimizers

    def optimizers(ctx, recipe):
        faster = dataclasses.replace(ctx.optimisers, client_lr=ctx.optimisers.client_lr * 1.01)
        return original(dataclasses.replace(ctx, optimisers=faster), recipe)[0], original(ctx, recipe)[1]

    _replace_everywhere(original, optimizers)


def average_unweighted() -> None:
    """Averaging ignores the clients' data shares: a plain mean."""
    from lfmsl.core import numerics

    original = numerics.weighted_average

    def weighted_average(stacked, weights):
        return original(stacked, jnp.full_like(weights, 1.0 / weights.shape[0]))

    _replace_everywhere(original, weighted_average)


def sharded_scaled() -> None:
    """Where the clients are sharded over several devices, each device's clients compute 0.1 % too large."""
    from lfmsl.core import executors

    original = executors.map_clients

    def map_clients(fn, spec):
        mapped = original(fn, spec)

        def run(*args):
            mesh = jax.sharding.get_abstract_mesh()
            sharded = not mesh.empty and mesh.shape.get("clients", 1) > 1
            return _scaled(mapped(*args)) if sharded else mapped(*args)

        return run

    _replace_everywhere(original, map_clients)


def mixup_reaches_clients() -> None:
    """The mixed loss's gradient flows down to the clients (the split algorithms' stop_gradient is gone)."""
    import types

    from lfmsl.algorithms import rules

    lax = types.SimpleNamespace(**{**vars(jax.lax), "stop_gradient": lambda x: x})
    rules.jax = types.SimpleNamespace(**{**{name: getattr(jax, name) for name in dir(jax) if not name.startswith("__")}, "lax": lax})


def decoder_scaled() -> None:
    """LocFedMix-SL's beta scales the decoder's own step too, not only the pull on the client segment."""
    from lfmsl.algorithms import rules
    from lfmsl.core import numerics

    def loss(self, ctx, params, smashed, images, labels):
        reconstruction = ctx.model.decoder.apply({"params": params[self.part]}, smashed)
        return self.weight * numerics.reconstruction_loss(reconstruction, images, self.loss_kind)

    rules.DecoderRegulariser.loss = loss


def inactive_step() -> None:
    """Clients outside their epoch (--round-mode epoch) step anyway."""
    from lfmsl.core import numerics

    original = numerics.keep_active
    _replace_everywhere(original, lambda active, new, old: new)


def participant_weights() -> None:
    """A round of K drawn clients weighs them by their shares of all N clients' data, not renormalised over the K."""
    from lfmsl.algorithms import participation

    original = participation.surviving

    def participant_data(data, ids, alive=None):
        mine = data._replace(client_index=data.client_index[ids], sizes=data.sizes[ids], weights=data.weights[ids])
        return mine if alive is None else original(mine, alive)

    participation.participant_data = participant_data


def patch_conv_scaled() -> None:
    """The patch convolutions (and their transposes) compute 0.1 % too large."""
    from lfmsl.models import layers

    extract = layers.extract_patches
    layers.extract_patches = lambda *args, **kwargs: extract(*args, **kwargs) * SCALE
    for name in ("_subpixel_transpose", "_overlap_add_transpose"):
        original = getattr(layers, name)
        setattr(layers, name, lambda *args, original=original: original(*args) * SCALE)


def vmap_scaled() -> None:
    """jax.vmap's results come out 0.1 % too large (what a batching rule that mixed clients would break)."""
    original = jax.vmap

    def vmap(fn, *args, **kwargs):
        mapped = original(fn, *args, **kwargs)
        return lambda *a, **k: _scaled(mapped(*a, **k))

    jax.vmap = vmap


def server_rows_rolled() -> None:
    """A server segment hands each sample the logits of its neighbour in the batch (a split that pairs the wrong
    rows)."""
    from lfmsl.models import factory

    original = factory.Segment.__call__

    def call(self, x):
        out = original(self, x)
        return jnp.roll(out, 1, axis=0) if self.start > 0 else out

    factory.Segment.__call__ = call


MUTANTS: dict[str, Callable[[], None]] = {
    "server-rows-rolled": server_rows_rolled,
    "patch-conv-scaled": patch_conv_scaled,
    "vmap-scaled": vmap_scaled,
    "participant-weights": participant_weights,
    "mixup-reaches-clients": mixup_reaches_clients,
    "decoder-scaled": decoder_scaled,
    "inactive-step": inactive_step,
    "loop-scaled": loop_scaled,
    "loop-rolled": loop_rolled,
    "split-client-lr": split_client_lr,
    "average-unweighted": average_unweighted,
    "sharded-scaled": sharded_scaled,
}


def apply(name: str) -> None:
    import lfmsl.experiments.simulation  # noqa: F401  (imports every module whose names are rebound)

    if name not in MUTANTS:
        raise SystemExit(f"unknown LFMSL_MUTANT {name!r}; known: {', '.join(MUTANTS)}")
    MUTANTS[name]()
