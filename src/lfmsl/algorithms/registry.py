"""The algorithm registry: each algorithm module registers one `Entry`, and nothing else in lfmsl
names an algorithm.

An entry says what the algorithm is called, how to build it, what it exchanges (`Exchange`, read
by the ledger and the latency model), which of the algorithm options it reads, and its own
configuration checks. `validate` checks a whole configuration: the options themselves
(`config.check_options`), then what the chosen algorithm makes of them.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from lfmsl.algorithms.base import Algorithm, Context
from lfmsl.config import Config, check_options, flag
from lfmsl.errors import UsageError
from lfmsl import privacy_options

SCHEDULES = ("parallel", "relay", "local", "central")

# Options that only some algorithms read; the others refuse them set away from their defaults.
ALGORITHM_OPTIONS = ("mix", "loc", "fed", "mix_alpha", "mix_partners", "loc_weight", "loc_loss", "average_decoders",
                     "gradmix_fraction", "client_grad", "avg_every")


@dataclasses.dataclass(frozen=True)
class Exchange:
    """What an algorithm sends over the clients' links, and how its server works.

    schedule: "parallel" (every client each iteration, through the server), "relay" (one client
    at a time, the client model handed on: sequential SL), "local" (whole models trained on the
    clients, only averaging crosses the links: FedAvg) or "central" (one learner at the server).
    averaged: the model parts ("client", "server", "decoder", "aux") every client sends up and gets
    back at each averaging step, every `avg_every` iterations (None: once per round).
    """

    schedule: str = "parallel"
    grads_down: bool = True  # split-layer gradients, server -> clients
    local: str | None = None  # the client's extra part, computed every iteration: "decoder" | "aux"
    averaged: tuple[str, ...] = ()
    avg_every: int | None = None
    server_copies: bool = False  # per-client server copies averaged at the server (SFL-V1): no link
    mixed_per_client: int = 0  # mixed samples per client sample the server also trains on (n_s)
    sequential_server: bool = False  # one server step per client batch (SFL-V2)

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")
        unknown = [p for p in self.averaged if p not in ("client", "server", "decoder", "aux")]
        if unknown or (self.local is not None and self.local not in ("decoder", "aux")):
            raise ValueError(f"unknown model parts in {self}")

    @property
    def splits_clients(self) -> bool:
        """Whether the clients train side by side (so they can be split over devices)."""
        return self.schedule in ("parallel", "local")


def _no_check(config: Config) -> None:
    return None


def _nothing_switched_off(config: Config) -> dict[str, str]:
    return {}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One algorithm, as the rest of lfmsl sees it."""

    name: str
    label: str  # for tables and figures
    build: Callable[[Context], Algorithm]
    exchange: Callable[[Config], Exchange]
    reads: frozenset[str] = frozenset()  # of ALGORITHM_OPTIONS
    switched_off: Callable[[Config], dict[str, str]] = _nothing_switched_off  # read options its own switches make inert: name -> why
    check: Callable[[Config], None] = _no_check  # raises UsageError for a combination it cannot run

    def __post_init__(self):
        unknown = sorted(set(self.reads) - set(ALGORITHM_OPTIONS))
        if unknown:
            raise ValueError(f"{self.name} reads unknown options {unknown}; algorithm options are {ALGORITHM_OPTIONS}")


_ENTRIES: dict[str, Entry] = {}


def register(entry: Entry) -> Entry:
    """Add an algorithm; a second entry under one name is a mistake, not an override."""
    if entry.name in _ENTRIES and _ENTRIES[entry.name] != entry:
        raise ValueError(f"an algorithm named {entry.name!r} is registered already")
    _ENTRIES[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove an algorithm (tests that register a toy one clean up after themselves)."""
    _ENTRIES.pop(name, None)


def names() -> tuple[str, ...]:
    """Every registered algorithm, in registration order."""
    return tuple(_ENTRIES)


def get(name: str) -> Entry:
    if name not in _ENTRIES:
        raise UsageError(f"unknown --algorithm {name!r}; choose one of {', '.join(_ENTRIES)}")
    return _ENTRIES[name]


def label(name: str) -> str:
    """The algorithm's name in tables and figures (the name itself where none is registered)."""
    return _ENTRIES[name].label if name in _ENTRIES else name


def build(ctx: Context) -> Algorithm:
    """The algorithm that ctx.config names."""
    return get(ctx.config.algorithm).build(ctx)


def exchange(config: Config) -> Exchange:
    return get(config.algorithm).exchange(config)


def inert_options(config: Config) -> dict[str, str]:
    """Options set away from their defaults that do nothing in this combination: name -> why."""
    entry = get(config.algorithm)
    why = {name: f"--algorithm {entry.name} does not use it" for name in ALGORITHM_OPTIONS if name not in entry.reads}
    why.update(entry.switched_off(config))
    defaults = Config()
    return {name: reason for name, reason in why.items() if getattr(config, name) != getattr(defaults, name)}


def without_inert(config: Config) -> Config:
    """`config` with every option that does nothing put back to its default (a sweep's grid runs each meaningful run once)."""
    defaults = Config()
    return dataclasses.replace(config, **{name: getattr(defaults, name) for name in inert_options(config)})


def validate(config: Config) -> Config:
    """Check every option and combination that needs no data; raise UsageError saying what to do."""
    check_options(config)
    entry = get(config.algorithm)
    for name, why in inert_options(config).items():
        raise UsageError(f"{flag(name, getattr(config, name))} does nothing here: {why}; leave it out")
    if not config.overlap and entry.exchange(config).local is None:
        raise UsageError(f"--no-overlap times the client's local work (a decoder or an auxiliary head), which --algorithm {entry.name} "
                         "does not have here; leave it out")
    sampling = config.clients_per_round is not None and config.clients_per_round < config.clients
    if sampling and entry.exchange(config).schedule == "central":
        raise UsageError(f"--clients-per-round draws clients each round, but --algorithm {entry.name} trains one learner on all "
                         "the data; leave it out")
    if entry.exchange(config).schedule == "central":
        for name, what in (("dropout", "makes clients fail"), ("device_spread", "gives each client its own device"),
                           ("round_deadline", "leaves slow clients out")):
            if getattr(config, name):
                raise UsageError(f"{flag(name, getattr(config, name))} {what}, but --algorithm {entry.name} trains one learner on "
                                 "all the data; leave it out")
    if sampling and config.round_mode == "epoch":
        raise UsageError("--clients-per-round with --round-mode epoch is not supported; use --round-mode wrap (the default) "
                         "or leave --clients-per-round out")
    privacy_options.check(config, entry.exchange(config), sampling)
    entry.check(config)
    return config


def participants_per_round(config: Config) -> int:
    """K: the clients that take part in a round (all N unless --clients-per-round draws fewer)."""
    return config.clients if config.clients_per_round is None else config.clients_per_round


def require_mix_partners(config: Config, switch_hint: str = "") -> None:
    """Mixup pairs different clients: a check for the algorithms whose server mixes."""
    name, count = ("--clients" if config.clients_per_round is None else "--clients-per-round"), participants_per_round(config)
    if count < 2:
        raise UsageError(f"mixup pairs different clients, so --algorithm {config.algorithm} needs {name} 2 or more{switch_hint}")
    if config.mix_partners >= count:
        raise UsageError(
            f"--mix-partners must be smaller than {name} ({config.mix_partners} >= {count}): "
            "each client is mixed with that many other clients of the round"
        )
