"""SplitFed V2: one server that takes one step per client batch, clients in a random order;
client models averaged every T_c iterations [default: once per round]."""

from __future__ import annotations

from lfmsl.algorithms import rules
from lfmsl.algorithms.registry import register
from lfmsl.algorithms.split import Recipe, averaging, split_entry
from lfmsl.config import Config


def recipe(config: Config) -> Recipe:
    return Recipe(server=rules.SequentialServer(), downlink=rules.client_grad_rule(config.client_grad),
                  averaging=averaging(config))


ENTRY = register(split_entry("sflv2", "SplitFed V2", recipe, reads=frozenset({"client_grad", "avg_every"}), order=40,
                             role="paper"))
