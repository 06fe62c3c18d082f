"""Mix2SFL (later work): SmashMix (smashed-data mixup at the server) plus GradMix (a random subset
of clients receives the subset's averaged gradient); client models averaged."""

from __future__ import annotations

from lfmsl.algorithms import rules
from lfmsl.algorithms.checks import require_mix_partners
from lfmsl.algorithms.registry import register
from lfmsl.algorithms.split import Recipe, averaging, split_entry
from lfmsl.config import Config


def recipe(config: Config) -> Recipe:
    return Recipe(server=rules.SharedServer(rules.Mixup(config.mix_partners, config.mix_alpha)),
                  downlink=rules.gradmix(config.gradmix_fraction), averaging=averaging(config))


ENTRY = register(split_entry("mix2sfl", "Mix2SFL", recipe, check=require_mix_partners,
                             reads=frozenset({"mix_alpha", "mix_partners", "gradmix_fraction", "avg_every"}),
                             order=80, role="later"))
