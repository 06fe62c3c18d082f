"""Tolerances for comparing two float32 computations, derived from what they compare rather than observed.

Two programs that compute the same mathematics (the vmap executor and the loop, one device and four, PSL with one
client and centralised training) round differently, and so does one program on two CPUs: XLA orders each sum by
the vector width it compiles for (8 float32 lanes with AVX2, 16 with AVX-512), fuses differently and may contract
a multiply and an add into one rounding. Each addition rounds to within EPS32 / 2 relative, so two orders of one
sum of n terms differ by at most 2 n EPS32 sum|x_i| (Higham, Accuracy and Stability of Numerical Algorithms,
section 3.1) and, rounding errors being unbiased, by about sqrt(n) EPS32 sum|x_i| in practice.

What happens to that difference depends on the regime:
- **SGD** steps theta - lr g. A rounding difference d in g moves a parameter by lr d, and the step itself rounds
  the parameter once: rounding stays rounding (`sgd`).
- **Adam** steps lr m / (sqrt(v) + eps), about lr sign(g) whatever |g| is. Where a gradient entry is near zero
  through cancellation, its relative rounding is large, and the step of that entry can change by up to 2 lr:
  Adam turns a rounding difference into a whole step (measured: PSL with one client against centralised
  training, 12 Adam steps of lr 1e-3, differ by up to 3e-6 on an AMD EPYC with AVX-512 and by 1.5e-6 here with
  XLA limited to AVX, where SGD differs by one float32 spacing, 6e-8). So tests that compare two training
  computations train with `SGD`, where a wrong gradient, client or average still moves parameters by lr |g| per
  step: tests/mutants.py holds such errors, and docs/DETERMINISM.md lists which test catches which.
- **One evaluation** (a forward pass, one gradient) is a chain of sums: `chain`, `assert_chain_close`.
"""

from __future__ import annotations

import math

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 2**-23: the spacing of float32 numbers in [1, 2)

# The regime of every test that compares two training computations (the optimizer and its learning rate).
SGD = {"optimizer": "sgd", "lr": 0.05}


def reordered_sum(terms: int, magnitude: float = 1.0) -> float:
    """The most two orders of a float32 sum of `terms` terms whose absolute values add up to `magnitude` differ."""
    return 2 * terms * EPS32 * magnitude


def chain(*reductions: int) -> float:
    """rtol for the result of dependent float32 sums of the given numbers of terms (the layers of a forward pass,
    then those of its backward pass): each sum adds about sqrt(n) EPS32 of its magnitude, and a factor 4 covers
    its spread."""
    return 4 * EPS32 * sum(math.sqrt(n) for n in reductions)


def fan_ins(params) -> list[int]:
    """The number of products each layer's outputs sum: the fan-in of every kernel in a Flax parameter tree."""
    import jax

    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return [int(np.prod(leaf.shape[:-1])) for path, leaf in flat if "kernel" in jax.tree_util.keystr(path)]


def assert_chain_close(got, want, *reductions: int, err_msg: str = "") -> None:
    """`got` and `want` computed two ways through dependent sums of `reductions` terms each: within `chain`'s rtol
    of each value, and of the largest value for entries near zero (a sum's rounding follows its terms' sizes)."""
    want = np.asarray(want)
    rtol = chain(*reductions)
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    np.testing.assert_allclose(np.asarray(got), want, rtol=rtol, atol=rtol * scale, err_msg=err_msg)


def sgd(steps: int, reduction: int, lr: float = SGD["lr"], gradient: float = 1.0) -> dict[str, float]:
    """rtol/atol for parameters (and what is computed from them) after `steps` SGD steps taken by two programs.

    rtol: every step rounds each parameter once in each program, and a gradient entry without cancellation
    rounds by a few EPS32: 4 EPS32 a step.
    atol, for entries near zero: a gradient entry is a sum of at most `reduction` products (batch x positions for
    a convolution kernel) of size `gradient` or less (the cross-entropy's gradient per logit lies in [-1, 1] and
    inputs in [0, 1]); reordered, it moves by about sqrt(reduction) EPS32 `gradient`, times 4 for its spread, and
    each step applies lr times that. The parameters' own differences feed back through lr times the curvature,
    which these tests' few steps keep below the factor 4."""
    return {"rtol": 4 * steps * EPS32, "atol": steps * lr * 4 * math.sqrt(reduction) * EPS32 * gradient}
