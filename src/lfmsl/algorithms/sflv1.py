"""SplitFed V1: one server copy per client, all in parallel; client models and server copies
averaged every T_c iterations [default: once per round]."""

from __future__ import annotations

from lfmsl.algorithms import rules
from lfmsl.algorithms.registry import register
from lfmsl.algorithms.split import Recipe, averaging, split_entry
from lfmsl.config import Config


def recipe(config: Config) -> Recipe:
    return Recipe(server=rules.PerClientServer(), downlink=rules.client_grad_rule(config.client_grad),
                  averaging=averaging(config, server=True))


ENTRY = register(split_entry("sflv1", "SplitFed V1", recipe, reads=frozenset({"client_grad", "avg_every"}), order=30,
                             role="paper"))
