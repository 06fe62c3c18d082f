"""The algorithms: one module each, registered by name (`registry`). Importing this package
imports every module in this folder, so each registers itself: a new algorithm is one new file,
which says itself where it is listed (`Entry.order`) and what it is to the experiments (`Entry.role`).

A parallel split algorithm is a `split.Recipe` of the rules in `rules.py`; sequential SL,
centralized training and FedAvg are written out on their own.
"""

from __future__ import annotations

import importlib
import pkgutil

from lfmsl.algorithms.base import Algorithm, Context, Optimisers, State
from lfmsl.algorithms.checks import inert_options, validate, without_inert
from lfmsl.algorithms.exchanges import Exchange
from lfmsl.algorithms.registry import Entry, build, context, exchange, get, label, names, register
from lfmsl.algorithms.split import Recipe, recipe_for

__all__ = ["Algorithm", "Context", "Optimisers", "State", "Entry", "Exchange", "Recipe", "recipe_for", "build",
           "context", "exchange", "get", "inert_options", "label", "names", "register", "validate", "without_inert"]


def _import_all() -> None:
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        importlib.import_module(f"{__name__}.{module}")


_import_all()
