"""What a split model costs: its parameters and the forward FLOPs per sample of each part."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import jax.extend.core as jex
import numpy as np

from lfmsl.models.factory import SplitModel, example_inputs, init_params

def count_params(tree: Any) -> int:
    """Number of scalar parameters in a pytree."""
    return int(sum(np.prod(np.shape(leaf), dtype=np.int64) for leaf in jax.tree.leaves(tree)))


def _flops_from_cost(cost: Any) -> float | None:
    """The 'flops' entry of a cost analysis, which is a dict, or a list of one in older jax."""
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or cost.get("flops", 0.0) <= 0.0:
        return None
    return float(cost["flops"])


def _jaxprs_in_params(params: dict) -> Iterator[jex.Jaxpr]:
    """The jaxprs an equation nests (a scan's body, a cond's branches, a pjit's callee); jax's own helper
    (`jax.extend.core.jaxprs_in_params`) is new in jax 0.10, and lfmsl supports older jax too."""
    for value in params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, jex.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jex.Jaxpr):
                yield item


def count_jaxpr_flops(jaxpr: jex.Jaxpr) -> float:
    """2 * multiply-accumulates of every matmul and convolution, the fallback count."""
    total = 0.0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            k = np.prod([eqn.invars[0].aval.shape[d] for d in lhs_contract])
            total += 2.0 * np.prod(eqn.outvars[0].aval.shape) * k
        elif eqn.primitive.name == "conv_general_dilated":
            rhs = eqn.invars[1].aval.shape
            out_c = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
            # A transposed convolution dilates its input; the inserted zeros cost nothing.
            total += (2.0 * np.prod(eqn.outvars[0].aval.shape) * np.prod(rhs) / out_c
                      / np.prod(eqn.params["lhs_dilation"]))
        for sub in _jaxprs_in_params(eqn.params):
            total += count_jaxpr_flops(sub)
    return total


def flops_per_sample(model: SplitModel, batch: int = 8) -> dict[str, float]:
    """Forward FLOPs per sample of each part, from XLA's cost analysis of a compiled batch.

    XLA counts elementwise work too, but skips the taps that fall on SAME padding, so a small
    convolution comes out a few per cent under 2 * MACs (cnn client: 7.09e6 vs 7.68e6). Where
    it reports nothing (some backends), fall back to 2 * MACs of the matmuls and convolutions
    in the jaxpr.
    """
    params = jax.eval_shape(lambda: init_params(model, jax.random.key(0)))
    inputs = example_inputs(model, batch)
    out = {}
    for k, part in model.parts().items():
        fn = lambda p, x, part=part: part.apply({"params": p}, x)
        flops = _flops_from_cost(jax.jit(fn).lower(params[k], inputs[k]).compile().cost_analysis())
        if flops is None:
            flops = count_jaxpr_flops(jax.make_jaxpr(fn)(params[k], inputs[k]).jaxpr)
        out[k] = flops / batch
    return out
