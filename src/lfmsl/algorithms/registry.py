"""The algorithm registry: each algorithm module registers one `Entry`, and nothing else in lfmsl
names an algorithm.

An entry says what the algorithm is called, where it is listed, how to build it, what it exchanges
(`exchanges.Exchange`), which of the algorithm options it reads, and its own configuration checks.
Building is the boundary: `context` and each entry's `build` read the configuration, and what they
build sees explicit values only.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from lfmsl.algorithms.base import OPTIMIZERS, Algorithm, Context, Optimisers
from lfmsl.algorithms.exchanges import Exchange
from lfmsl.config import Config
from lfmsl.errors import UsageError
from lfmsl.models import SplitModel

# Options that only some algorithms read; the others refuse them set away from their defaults.
ALGORITHM_OPTIONS = ("mix", "loc", "fed", "mix_alpha", "mix_partners", "loc_weight", "loc_loss", "average_decoders",
                     "gradmix_fraction", "client_grad", "avg_every")

# What an algorithm is to the experiments, which choose the algorithms they compare by it.
ROLES = {
    "paper": "the split algorithms of LocFedMix-SL's paper, compared with it",
    "later": "split algorithms from later work",
    "reference": "training without a split: the references",
}


def _no_check(config: Config) -> None:
    return None


def _nothing_switched_off(config: Config) -> dict[str, str]:
    return {}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One algorithm, as the rest of lfmsl sees it."""

    name: str
    label: str  # for tables and figures
    build: Callable[[Config, Context], Algorithm]  # reads the algorithm's own options; what it builds reads none
    exchange: Callable[[Config], Exchange]
    reads: frozenset[str] = frozenset()  # of ALGORITHM_OPTIONS
    # the options it reads that its own switches make inert: name -> why
    switched_off: Callable[[Config], dict[str, str]] = _nothing_switched_off
    check: Callable[[Config], None] = _no_check  # raises UsageError for a combination it cannot run
    order: int = 1000  # where the command line, tables and figures list it: smallest first, then by registration
    role: str | None = None  # one of ROLES, or None: an algorithm no experiment chooses by its role

    def __post_init__(self):
        unknown = sorted(set(self.reads) - set(ALGORITHM_OPTIONS))
        if unknown:
            raise ValueError(f"{self.name} reads unknown options {unknown}; algorithm options are {ALGORITHM_OPTIONS}")
        if self.role is not None and self.role not in ROLES:
            raise ValueError(f"{self.name} has the unknown role {self.role!r}; roles are {', '.join(ROLES)}")


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


def names(role: str | None = None) -> tuple[str, ...]:
    """Every registered algorithm (with `role`: those of that role), in the order entries ask for."""
    if role is not None and role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    listed = sorted(_ENTRIES.values(), key=lambda entry: entry.order)  # stable: ties keep their registration order
    return tuple(entry.name for entry in listed if role is None or entry.role == role)


def get(name: str) -> Entry:
    if name not in _ENTRIES:
        raise UsageError(f"unknown --algorithm {name!r}; choose one of {', '.join(names())}")
    return _ENTRIES[name]


def label(name: str) -> str:
    """The algorithm's name in tables and figures (the name itself where none is registered)."""
    return _ENTRIES[name].label if name in _ENTRIES else name


def context(config: Config, model: SplitModel, num_clients: int, iterations: int, executor: str) -> Context:
    """The run's facts every algorithm reads, taken from the configuration once."""
    optimisers = Optimisers(OPTIMIZERS[config.optimizer], config.resolved_client_lr, config.resolved_server_lr)
    return Context(model, num_clients, iterations, executor, config.batch_size, config.round_mode, optimisers)


def build(config: Config, ctx: Context) -> Algorithm:
    """The algorithm that `config` names, with its own options from `config`."""
    return get(config.algorithm).build(config, ctx)


def exchange(config: Config) -> Exchange:
    return get(config.algorithm).exchange(config)
