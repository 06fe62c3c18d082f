"""The privacy options against the algorithm: the measures and the defences need smashed data crossing a cut."""

from __future__ import annotations

from lfmsl.config import Config, flag
from lfmsl.errors import UsageError
from lfmsl.privacy.threats import attacks_for, holdings

PRIVACY_OPTIONS = ("privacy_probes", "aux_size", "attacks", "attack_steps", "attack_lr")  # read only with privacy_every


def check(config: Config, exchange, sampling: bool) -> None:
    """Refuse privacy options the algorithm cannot use, each in one line saying what to do."""
    defaults = Config()
    held = holdings(exchange)
    if config.privacy_every is None:
        for name in PRIVACY_OPTIONS:
            if getattr(config, name) != getattr(defaults, name):
                raise UsageError(f"{flag(name, getattr(config, name))} does nothing without --privacy-every R "
                                 "(which rounds to measure leakage at); give both or leave it out")
    for name, what in (("privacy_every", "measures what the server learns from the smashed data"),
                       ("nopeek_weight", "decorrelates the smashed data from the inputs"),
                       ("smash_noise", "adds noise to the smashed data")):
        value = getattr(config, name)
        if value is not None and value != getattr(defaults, name) and not held.smashed:
            raise UsageError(f"{flag(name, value)} {what}, but --algorithm {config.algorithm} sends no smashed data; "
                             "leave it out")
    if config.privacy_every is not None:
        if sampling:
            raise UsageError("--privacy-every with --clients-per-round is not supported yet (the probes follow the "
                             "evaluated clients, who may sit a round out); leave one of them out")
        attacks_for(config.attacks, held)
