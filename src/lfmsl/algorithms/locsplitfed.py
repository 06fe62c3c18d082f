"""LocSplitFed: clients learn from a local auxiliary classifier only, so nothing is sent down;
client segments and auxiliary heads are averaged every T_c iterations [default: once per round]."""

from __future__ import annotations

from lfmsl.algorithms import rules
from lfmsl.algorithms.registry import register
from lfmsl.algorithms.split import Recipe, averaging, split_entry
from lfmsl.config import Config


def recipe(config: Config) -> Recipe:
    return Recipe(server=rules.SharedServer(), downlink=rules.no_gradient(), local=rules.AuxClassifier(),
                  averaging=averaging(config, "aux"))


ENTRY = register(split_entry("locsplitfed", "LocSplitFed", recipe, reads=frozenset({"avg_every"}), order=50,
                             role="paper"))
