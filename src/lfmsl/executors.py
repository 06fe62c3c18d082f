"""How a per-client function is mapped over the leading clients axis.

All executors compute the same thing; they differ in how XLA schedules it:
- `vmap`: every client at once (batched operations over the clients axis).
- `chunked:K`: `lax.map` over chunks of K clients, vmapped inside a chunk.
- `loop`: `lax.map` over single clients, one after another (a scan): no batching transform at
  all, which makes it the reference the vectorised paths are checked against.
- `auto`: a per-backend choice (see `resolve`).
The map happens inside the round's one jitted computation, so each compiles once.
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
        raise UsageError(f"unknown --executor {spec!r}; choose one of {', '.join(EXECUTORS)} (chunked:K sets the chunk size)")
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


def resolve(spec: str, backend: str | None = None) -> str:
    """Turn 'auto' into a concrete executor for this backend; others pass through."""
    kind, _ = parse_executor(spec)
    if kind != "auto":
        return spec
    backend = backend or jax.default_backend()
    return "vmap" if backend in ("gpu", "tpu") else "loop"


def map_clients(fn: Callable, spec: str) -> Callable:
    """Return a function applying `fn` to every client slice of its arguments' leading axis."""
    kind, chunk = parse_executor(resolve(spec))
    if kind == "vmap":
        return jax.vmap(fn)

    def mapped(*args):
        return jax.lax.map(lambda xs: fn(*xs), args, batch_size=chunk)

    return mapped
