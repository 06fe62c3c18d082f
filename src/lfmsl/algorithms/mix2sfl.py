"""Mix2SFL (later work): SmashMix (smashed-data mixup at the server) plus GradMix (a random subset
of clients receives the subset's averaged gradient); client models averaged."""

from __future__ import annotations

from lfmsl.algorithms import parts
from lfmsl.algorithms.registry import register, require_mix_partners
from lfmsl.algorithms.split import Recipe, averaging, split_entry
from lfmsl.config import Config


def recipe(config: Config) -> Recipe:
    return Recipe(server=parts.SharedServer(parts.Mixup(config.mix_partners, config.mix_alpha)),
                  downlink=parts.gradmix(config.gradmix_fraction), averaging=averaging(config))


ENTRY = register(split_entry("mix2sfl", "Mix2SFL", recipe, check=require_mix_partners,
                             reads=frozenset({"mix_alpha", "mix_partners", "gradmix_fraction", "avg_every"})))
