"""Compiling faster where only agreement matters.

Most of the suite's time is XLA compiling small programs once each. At backend optimisation level 0
they compile about 1.5 to 2 times faster and run slower, which tiny test data does not notice (the
resnet18 tests and real-sized workloads do: they stay at the default level). Tests
that check two computations against each other (the vmap executor against the loop, a split model
against the whole one, a resumed run against an uninterrupted one) compile both sides this way;
what they check does not depend on the level. Tests of recorded values (the golden metrics) and of
real workloads compile at the default level.
"""

from __future__ import annotations

import functools

import jax

OPTIONS = {"xla_backend_optimization_level": 0}
FLAG = "--xla_backend_optimization_level=0"  # the same for a subprocess, through XLA_FLAGS

jit = functools.partial(jax.jit, compiler_options=OPTIONS)
