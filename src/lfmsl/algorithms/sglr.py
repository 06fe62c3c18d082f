"""SGLR (later work): every client receives the averaged split-layer gradient, and the server's
learning rate is scaled with the number of clients; clients keep their own models."""

from __future__ import annotations

from lfmsl.algorithms import rules
from lfmsl.algorithms.registry import register
from lfmsl.algorithms.split import Recipe, split_entry
from lfmsl.config import Config


def recipe(config: Config) -> Recipe:
    return Recipe(server=rules.SharedServer(), downlink=rules.mean_gradient(), server_lr_scales_with_clients=True)


ENTRY = register(split_entry("sglr", "SGLR", recipe, order=70, role="later"))
