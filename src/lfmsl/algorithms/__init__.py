"""The algorithms: one module each, registered by name (`registry`). Importing this package
imports every module in this folder, so each registers itself: a new algorithm is one new file.
The built-in ones come first, in the order the command line, tables and figures list them.

A parallel split algorithm is a `split.Recipe` of the parts in `parts.py`; sequential SL,
centralized training and FedAvg are written out on their own.
"""

from __future__ import annotations

import importlib
import pkgutil

from lfmsl.algorithms.base import Algorithm, Context, State
from lfmsl.algorithms.registry import Entry, Exchange, build, exchange, get, inert_options, label, names, register, validate, without_inert
from lfmsl.algorithms.split import Recipe, recipe_for

__all__ = ["Algorithm", "Context", "State", "Entry", "Exchange", "Recipe", "recipe_for", "build", "exchange", "get", "inert_options", "label", "names",
           "register", "validate", "without_inert"]

_BUILT_IN = ("sl", "psl", "sflv1", "sflv2", "locsplitfed", "locfedmix", "sglr", "mix2sfl", "centralized", "fedavg")
_MACHINERY = ("base", "registry", "parts", "split", "participation")  # the modules algorithms are made of, not algorithms


def _import_all() -> None:
    found = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _BUILT_IN + _MACHINERY)
    for name in _BUILT_IN + tuple(found):
        importlib.import_module(f"{__name__}.{name}")


_import_all()
