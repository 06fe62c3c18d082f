"""Compiling faster where only agreement matters.

Most of the suite's time is XLA compiling small programs once each. At backend optimisation level 0
they compile about 1.5 to 2 times faster and run slower, which tiny test data does not notice. Tests
that check two computations against each other on tiny data (the vmap executor against the loop,
the quick study's pipeline, sharded against single-device, split against stacked training at each
cut of every model, the model checks on resnet18, and the model initialisations they share) compile
both sides this way; what they check does not depend on the level. The CIFAR-10 run on mock data
does too: resnet18 compiles in half the time, which outweighs its slower round. resnet18's split
training trains with SGD and the patch convolutions (test_cuts.py says why). The golden metrics
and real-sized workloads compile at the default level, and so do the other command-line runs of
cli_runs.py: sharing one compile cache, they load their programs and spend their time running them,
which level 0 does four times slower (5 rounds: 4.5 s against 1.1 s). An initialisation compiled at
the default level costs 5 to 10 s (its random draws); at level 0, about one.
"""

from __future__ import annotations

import functools

import jax

OPTIONS = {"xla_backend_optimization_level": 0}
FLAG = " ".join(f"--{name}={value}" for name, value in OPTIONS.items())  # the same for a subprocess, through XLA_FLAGS

jit = functools.partial(jax.jit, compiler_options=OPTIONS)
