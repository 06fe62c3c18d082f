"""LocFedMix-SL (Oh et al., 2022): PSL with a **loc**al reconstruction regulariser on each client,
**fed**erated averaging of the client segments and smashed-data **mix**up at the server.

Each component switches off on its own (--no-loc, --no-fed, --no-mix): with all three off it is PSL.
"""

from __future__ import annotations

from lfmsl.algorithms import rules
from lfmsl.algorithms.checks import require_mix_partners
from lfmsl.algorithms.registry import register
from lfmsl.algorithms.split import Recipe, averaging, split_entry
from lfmsl.config import Config


def recipe(config: Config) -> Recipe:
    mixup = rules.Mixup(config.mix_partners, config.mix_alpha) if config.mix else None
    local = rules.DecoderRegulariser(config.loc_weight, config.loc_loss) if config.loc else None
    averaged = ("decoder",) if config.loc and config.average_decoders else ()
    return Recipe(server=rules.SharedServer(mixup), downlink=rules.client_grad_rule(config.client_grad), local=local,
                  averaging=averaging(config, *averaged) if config.fed else None)


def switched_off(config: Config) -> dict[str, str]:
    """The settings of a part that --no-mix, --no-loc or --no-fed turned off."""
    off = {}
    if not config.mix:
        off.update(mix_alpha="--no-mix turns mixup off", mix_partners="--no-mix turns mixup off")
    if not config.loc:
        off.update(dict.fromkeys(("loc_weight", "loc_loss", "average_decoders"), "--no-loc turns the decoder off"))
    if not config.fed:
        off["avg_every"] = "--no-fed turns averaging off"
    return off


def check(config: Config) -> None:
    if config.mix:
        require_mix_partners(config, " (or pass --no-mix)")


ENTRY = register(split_entry(
    "locfedmix", "LocFedMix-SL", recipe, switched_off=switched_off, check=check,
    reads=frozenset({"mix", "loc", "fed", "mix_alpha", "mix_partners", "loc_weight", "loc_loss", "average_decoders",
                     "client_grad", "avg_every"}),
    order=60, role="paper",
))
