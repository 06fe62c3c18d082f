"""The JAX backend a run will use, started before any work: a platform asked for in JAX_PLATFORMS that JAX
cannot start (a GPU machine whose CUDA wheel is missing, a TPU runtime without libtpu) is one line that says what
to install, where JAX itself fails deep inside the first library that asks (orbax, with a bare AssertionError)."""

from __future__ import annotations

import os

import jax

from lfmsl.errors import UsageError

# What to install for each platform JAX_PLATFORMS can name (jax's own extras).
INSTALL = {
    "cuda": 'pip install -U "jax[cuda13]" (or "jax[cuda12]" for a CUDA 12 driver)',
    "gpu": 'pip install -U "jax[cuda13]" (or "jax[cuda12]" for a CUDA 12 driver)',
    "tpu": 'pip install -U "jax[tpu]"',
    "rocm": "the ROCm build of jaxlib (see JAX's installation guide)",
}


def check_backend() -> str:
    """The default backend's platform ('cpu', 'gpu', 'tpu'); UsageError where JAX cannot start the one asked for."""
    try:
        return jax.default_backend()
    except (RuntimeError, AssertionError) as error:
        wanted = [p.strip() for p in (os.environ.get("JAX_PLATFORMS") or jax.config.jax_platforms or "").split(",")
                  if p.strip()]
        named = ", ".join(wanted) or "default"
        hints = [f"for {p}: {INSTALL[p]}" for p in wanted if p in INSTALL]
        why = str(error).split(" (set JAX_PLATFORMS")[0].strip()
        raise UsageError(
            f"JAX found no working {named} backend (JAX_PLATFORMS={','.join(wanted) or 'unset'}"
            + (f": {why}" if why else "")
            + "); "
            + ("; ".join(hints) + ", " if hints else "")
            + "or unset JAX_PLATFORMS to run on what this machine has"
        ) from None
