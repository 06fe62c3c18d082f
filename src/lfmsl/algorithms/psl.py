"""Parallel SL (PSL): every client at once, one server step on the combined loss, no averaging.

Clients keep their own lower segments; each receives the gradient that --client-grad names
(its own loss's [default], or the combined loss's).
"""

from __future__ import annotations

from lfmsl.algorithms import rules
from lfmsl.algorithms.registry import register
from lfmsl.algorithms.split import Recipe, split_entry
from lfmsl.config import Config


def recipe(config: Config) -> Recipe:
    return Recipe(server=rules.SharedServer(), downlink=rules.client_grad_rule(config.client_grad))


ENTRY = register(split_entry("psl", "PSL", recipe, reads=frozenset({"client_grad"}), order=20, role="paper"))
