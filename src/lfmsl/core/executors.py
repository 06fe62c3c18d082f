"""How a per-client function is mapped over the leading clients axis.

All executors compute the same thing; they differ in how XLA schedules it:
- `vmap`: every client at once (batched operations over the clients axis).
- `chunked:K`: `lax.map` over chunks of K clients, vmapped inside a chunk.
- `loop`: `lax.map` over single clients, one after another (a scan): no batching transform at
  all, which makes it the reference the vectorised paths are checked against.
- `auto`: a per-backend, per-client-count choice from measurements (see `resolve`); where the
  chosen executor's round would not fit in memory, `Simulation` takes the loop (memory.py).
The map happens inside the round's one jitted computation, so each compiles once.

The `lax.map` executors rematerialise each chunk's forward pass in the backward pass
(`jax.checkpoint`): only a chunk's inputs are kept per chunk, so memory grows with the clients
through their parameters and batches, not their activations, and on XLA:CPU it was also faster
(no stacking of every chunk's activations; docs/PERFORMANCE.md).
"""

from __future__ import annotations

from typing import Callable

import jax

from lfmsl.errors import UsageError

EXECUTORS = ("auto", "vmap", "chunked", "loop")
DEFAULT_CHUNK = 16


def parse_executor(spec: str) -> tuple[str, int | None]:
    """'vmap' | 'loop' | 'auto' | 'chunked' | 'chunked:K' -> (kind, chunk size)."""
    kind, _, value = spec.partition(":")
    if kind not in EXECUTORS:
        raise UsageError(f"unknown --executor {spec!r}; choose one of {', '.join(EXECUTORS)} "
                         "(chunked:K sets the chunk size)")
    if kind != "chunked":
        if value:
            raise UsageError(f"--executor {kind} takes no ':' value; only chunked:K does")
        return kind, None
    if not value:
        return kind, DEFAULT_CHUNK
    try:
        chunk = int(value)
    except ValueError:
        raise UsageError(f"--executor chunked:K needs an integer K, got {value!r}") from None
    if chunk < 1:
        raise UsageError(f"--executor chunked:K needs K >= 1, got {chunk}")
    return kind, chunk


# What `auto` picks: per backend, (largest client count, executor) in increasing order. CPU rows
# come from scripts/bench.py on an idle 2-core AMD EPYC (docs/PERFORMANCE.md): vmap was fastest
# at 1, 10 and 100 clients, the loop at 300 and level at 500; at 1,000 vmap needs 23 GB of
# activations, more than that machine could give, and the loop was fastest. The accelerator rows are the design's
# expectation (all clients in one batched computation), not yet measured.
AUTO_TABLE: dict[str, tuple[tuple[int, str], ...]] = {
    "cpu": ((100, "vmap"), (2**62, "loop")),
    "gpu": ((2**62, "vmap"),),
    "tpu": ((2**62, "vmap"),),
}


def resolve(spec: str, backend: str | None = None, num_clients: int | None = None) -> str:
    """Turn 'auto' into a concrete executor for this backend and client count; others pass
    through. Without a client count, the choice for the largest counts is taken."""
    kind, _ = parse_executor(spec)
    if kind != "auto":
        return spec
    table = AUTO_TABLE.get(backend or jax.default_backend(), AUTO_TABLE["cpu"])
    for largest, choice in table:
        if num_clients is not None and num_clients <= largest:
            return choice
    return table[-1][1]


def map_clients(fn: Callable, spec: str) -> Callable:
    """Return a function applying `fn` to every client slice of its arguments' leading axis.

    Every argument and output of `fn` is per client. Where a mesh with a "clients" axis of
    more than one device is set (`jax.set_mesh`, see sharding.py) when this is traced, each
    device maps over its own clients (`shard_map`), so no executor gathers the clients axis.
    """
    kind, chunk = parse_executor(resolve(spec))
    if kind == "vmap":
        local = jax.vmap(fn)
    else:
        remat = jax.checkpoint(fn)

        def local(*args):
            return jax.lax.map(lambda xs: remat(*xs), args, batch_size=chunk)

    def mapped(*args):
        mesh = jax.sharding.get_abstract_mesh()
        if mesh.empty or mesh.shape.get("clients", 1) == 1:
            return local(*args)
        spec = jax.sharding.PartitionSpec("clients")
        return jax.shard_map(local, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)(*args)

    return mapped
