"""Does a compiled round fit in the device's memory? Asked before the round runs.

Why: `vmap` keeps every client's activations for the backward pass (about 23 MB per client for
the cnn at batch 32), so 1,000 clients need 23 GB. Without this check a CPU run would be killed
by the kernel part-way, or stop with an allocator traceback; with it the user gets one line
that says which executor fits, and `--executor auto` falls back to the loop by itself.
"""

from __future__ import annotations

from typing import Any

import jax

from lfmsl.errors import UsageError


def available_bytes(device: jax.Device | None = None) -> int | None:
    """Memory a new allocation can still get on `device`: free accelerator memory, or the
    host's MemAvailable on a CPU; None where the platform does not say."""
    device = device or jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def working_bytes(compiled: Any) -> int | None:
    """Temporary memory one call of a compiled computation allocates (XLA's memory analysis)."""
    try:
        analysis = compiled.memory_analysis()
    except Exception:  # not every backend implements it
        return None
    return None if analysis is None else int(analysis.temp_size_in_bytes)


def shortfall(compiled: Any, device: jax.Device | None = None) -> tuple[int, int] | None:
    """(needed, available) bytes when the compiled computation certainly needs more memory than
    is available, else None (it fits, or the platform does not say)."""
    need, have = working_bytes(compiled), available_bytes(device)
    return (need, have) if need is not None and have is not None and need > have else None


def require_fit(compiled: Any, executor: str, num_clients: int, device: jax.Device | None = None) -> None:
    """Raise a UsageError saying what to change when a round cannot fit in memory."""
    missing = shortfall(compiled, device)
    if missing is None:
        return
    need, have = missing
    lighter = ("" if executor == "loop"
               else "--executor loop or chunked:K (they keep one chunk's activations at a time), ")
    raise UsageError(
        f"one round with --executor {executor} and {num_clients} clients needs {need / 2**30:.1f} GiB of working "
        f"memory, but only {have / 2**30:.1f} GiB is available; use {lighter}fewer --clients or a smaller --batch-size")


def nbytes(tree: Any) -> int:
    """Bytes of every array in a pytree (abstract shapes too: `jax.eval_shape`'s)."""
    return sum(int(leaf.size) * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree))


def require_state_fit(abstract_state: Any, num_clients: int, device: jax.Device | None = None) -> None:
    """Raise a UsageError, before the state is built, when the state of `num_clients` clients (each one's model
    parts and optimiser state: `abstract_state`, from `jax.eval_shape`) cannot fit in the memory available, naming
    how many clients would. Without it, a state too large is built until the kernel kills the process, silently."""
    have = available_bytes(device)
    if have is None:
        return
    total = nbytes(abstract_state)
    per_client = nbytes([leaf for leaf in jax.tree.leaves(abstract_state)
                         if leaf.ndim and leaf.shape[0] == num_clients]) / max(num_clients, 1)
    if total <= have:
        return
    fits = int((have - (total - per_client * num_clients)) // per_client) if per_client else 0
    raise UsageError(
        f"the state of {num_clients} clients (each one's model parts and optimiser state, "
        f"{per_client / 2**20:.2f} MiB a client) needs {total / 2**30:.1f} GiB, but only {have / 2**30:.1f} GiB "
        f"is available; use at most {max(fits, 0)} --clients (--clients-per-round does not shrink it: every client "
        "keeps its own model)")
