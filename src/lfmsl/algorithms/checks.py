"""Whether a configuration can run, checked before any data is read: the options themselves
(`config.check_options`), then what the chosen algorithm makes of them. Each message says what to do."""

from __future__ import annotations

import dataclasses

from lfmsl.algorithms.registry import ALGORITHM_OPTIONS, get
from lfmsl.config import Config, check_options, flag
from lfmsl.errors import UsageError
from lfmsl import privacy_options


def inert_options(config: Config) -> dict[str, str]:
    """Options set away from their defaults that do nothing in this combination: name -> why."""
    entry = get(config.algorithm)
    why = {name: f"--algorithm {entry.name} does not use it" for name in ALGORITHM_OPTIONS if name not in entry.reads}
    why.update(entry.switched_off(config))
    defaults = Config()
    return {name: reason for name, reason in why.items() if getattr(config, name) != getattr(defaults, name)}


def without_inert(config: Config) -> Config:
    """`config` with every option that does nothing put back to its default (a sweep's grid runs each meaningful run
    once)."""
    defaults = Config()
    return dataclasses.replace(config, **{name: getattr(defaults, name) for name in inert_options(config)})


def validate(config: Config) -> Config:
    """Check every option and combination that needs no data; raise UsageError saying what to do."""
    check_options(config)
    entry = get(config.algorithm)
    for name, why in inert_options(config).items():
        raise UsageError(f"{flag(name, getattr(config, name))} does nothing here: {why}; leave it out")
    if not config.overlap and entry.exchange(config).local is None:
        raise UsageError(f"--no-overlap times the client's local work (a decoder or an auxiliary head), which "
                         f"--algorithm {entry.name} does not have here; leave it out")
    sampling = config.clients_per_round is not None and config.clients_per_round < config.clients
    if sampling and entry.exchange(config).schedule == "central":
        raise UsageError(f"--clients-per-round draws clients each round, but --algorithm {entry.name} trains one "
                         "learner on all the data; leave it out")
    if entry.exchange(config).schedule == "central":
        for name, what in (("dropout", "makes clients fail"), ("device_spread", "gives each client its own device"),
                           ("round_deadline", "leaves slow clients out")):
            if getattr(config, name):
                raise UsageError(f"{flag(name, getattr(config, name))} {what}, but --algorithm {entry.name} trains one "
                                 "learner on all the data; leave it out")
    if sampling and config.round_mode == "epoch":
        raise UsageError("--clients-per-round with --round-mode epoch is not supported; use --round-mode wrap "
                         "(the default) or leave --clients-per-round out")
    privacy_options.check(config, entry.exchange(config), sampling)
    entry.check(config)
    return config


def participants_per_round(config: Config) -> int:
    """K: the clients that take part in a round (all N unless --clients-per-round draws fewer)."""
    return config.clients if config.clients_per_round is None else config.clients_per_round


def require_mix_partners(config: Config, switch_hint: str = "") -> None:
    """Mixup pairs different clients: a check for the algorithms whose server mixes."""
    name = "--clients" if config.clients_per_round is None else "--clients-per-round"
    count = participants_per_round(config)
    if count < 2:
        raise UsageError(f"mixup pairs different clients, so --algorithm {config.algorithm} needs {name} 2 or more"
                         f"{switch_hint}")
    if config.mix_partners >= count:
        raise UsageError(
            f"--mix-partners must be smaller than {name} ({config.mix_partners} >= {count}): "
            "each client is mixed with that many other clients of the round"
        )
