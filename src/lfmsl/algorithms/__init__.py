"""The algorithms: one module each, registered by name (`registry`). Importing this package
registers the built-in ones, in the order the command line lists them.

A parallel split algorithm is a `split.Recipe` of the parts in `parts.py`; sequential SL,
centralized training and FedAvg are written out on their own.
"""

from __future__ import annotations

from lfmsl.algorithms import sl, psl, sflv1, sflv2, locsplitfed, locfedmix, sglr, mix2sfl, centralized, fedavg  # noqa: F401  (registers them)
from lfmsl.algorithms.base import Algorithm, Context, State
from lfmsl.algorithms.registry import Entry, Exchange, build, exchange, get, inert_options, label, names, register, validate, without_inert
from lfmsl.algorithms.split import Recipe, recipe_for

__all__ = ["Algorithm", "Context", "State", "Entry", "Exchange", "Recipe", "recipe_for", "build", "exchange", "get", "inert_options", "label", "names",
           "register", "validate", "without_inert"]
