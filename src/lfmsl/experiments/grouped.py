"""Many runs, one program: runs that differ only in values train side by side under one more `vmap`.

Runs of one grid that share every option shaping the program (algorithm, model, cut, client count, batch
size, executor, ...) and differ only in `VALUES` (the seed, the learning rates, `--mix-alpha`, `--loc-weight`)
are one jitted program with a leading runs axis over the state, the clients' index lists, the keys and those
values. Each run's own facts (its partition, its participants, its test subset, its initial state) are built
exactly as a run alone builds them (`Simulation`), and its records are read off its slice of the group's outputs.

The values reach the algorithm as traced arrays: inside the program the algorithm is built from a configuration
whose value fields are tracers, so a seed or a rate is never a constant of the compiled program, and two groups
that differ only in values run one executable.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lfmsl import algorithms
from lfmsl.algorithms.base import State
from lfmsl.config import Config
from lfmsl.core import memory
from lfmsl.core.batching import ClientData
from lfmsl.core.evaluate import evaluate_pairs
from lfmsl.core.executors import resolve
from lfmsl.experiments.simulation import RoundRecord, Simulation, pipelined
from lfmsl.io.data import Dataset

# The options a group's runs may differ in: each reaches the round only through arithmetic, so it can be an input.
VALUES = ("seed", "lr", "client_lr", "server_lr", "mix_alpha", "loc_weight")
# What the program is given for them: the seed only through its keys, and the two resolved learning rates.
TRACED = ("client_lr", "server_lr", "mix_alpha", "loc_weight")


def program_of(config: Config) -> Config:
    """What a run shares with every run of its group: its configuration with each of `VALUES` at one fixed value.
    Sequential SL's seed stays: it draws the order the clients are served in on the host, a constant of the program."""
    seed = config.seed if algorithms.exchange(config).schedule == "relay" else 0
    return dataclasses.replace(config, seed=seed, lr=1.0, client_lr=None, server_lr=None, mix_alpha=1.0,
                               loc_weight=1.0)


def programs(configs: Sequence[Config], most: int | None = None) -> list[list[int]]:
    """The indices of `configs` in groups that share one program (`program_of`), at most `most` each (None: any
    number; a group splits itself where it cannot fit in memory), in the order first seen; a run that must run
    alone (`runs_alone`) is a group of its own."""
    groups: dict[object, list[int]] = {}
    for index, config in enumerate(configs):
        key = index if most == 1 or runs_alone(config) else program_of(config)
        groups.setdefault(key, []).append(index)
    size = lambda group: len(group) if most is None else most
    return [group[i:i + size(group)] for group in groups.values() for i in range(0, len(group), size(group))]


def most_per_program(asked: int | None) -> int | None:
    """--runs-per-program, or its default: as many as fit on a GPU or TPU, where one run leaves the chip mostly idle;
    1 on a CPU, whose cores one run already keeps busy: there the runs one after another, each loading the program
    the first compiled (core/compile_cache.py), beat a group of three 10-round LocFedMix-SL runs at N = 10 (90.9
    against 109.8 s) and at N = 100 (545.8 against 723.2 s) (docs/PERFORMANCE.md#many-runs-one-program)."""
    if asked is not None:
        return asked
    return 1 if jax.default_backend() == "cpu" else None


def runs_alone(config: Config) -> str | None:
    """Why a run cannot share a program with others, or None where it can."""
    if config.privacy_every is not None:
        return "--privacy-every measures each run's leakage with its own attacks"
    if config.dropout or config.round_deadline is not None:
        return "with --dropout or --round-deadline the rounds each run loses differ"
    if jax.device_count() > 1:
        return "on several devices the clients are split over them, one run at a time"
    return None


def traced_values(config: Config) -> dict[str, float]:
    """A run's `TRACED` values, the learning rates resolved (a rate left to --lr is --lr)."""
    return {"client_lr": config.resolved_client_lr, "server_lr": config.resolved_server_lr,
            "mix_alpha": config.mix_alpha, "loc_weight": config.loc_weight}


def stack(trees: Sequence) -> object:
    """Trees of one structure as one tree whose leaves have a leading runs axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def member(tree: object, index: int) -> object:
    """Run `index`'s slice of a tree with a leading runs axis."""
    return jax.tree.map(lambda leaf: leaf[index], tree)


class GroupTooLarge(Exception):
    """A group's state or compiled round cannot fit in memory: its runs are to be split into smaller groups."""


class ShapesDiffer(ValueError):
    """The runs' partitions give other shapes (a non-IID partition draws other client sizes per seed): `groups` are
    the indices of the runs that can share a program."""

    def __init__(self, groups: list[list[int]], seeds: list[int]):
        super().__init__(f"the partitions of seeds {seeds} give other shapes than seed {seeds[0]}'s")
        self.groups = groups


# The clients' own fields of `ClientData` carry the runs axis; the training set itself is one for all runs.
DATA_AXES = ClientData(images=None, labels=None, client_index=0, sizes=0, weights=0, present=None)


class GroupSimulation:
    """R runs of one program (`program_of`) as one: their round and evaluation compiled once, with a runs axis.

    `members` are the runs' own `Simulation`s, built but never compiled: they hold each run's partition, schedule,
    test subset, costs and state, and turn its slice of the group's outputs into its records."""

    def __init__(self, configs: Sequence[Config], dataset: Dataset):
        programs = {program_of(c) for c in configs}
        if len(programs) != 1:
            raise ValueError("the runs of a group must differ only in " + ", ".join(VALUES))
        alone = {runs_alone(c) for c in configs} - {None}
        if alone:
            raise ValueError(f"these runs cannot share a program: {alone.pop()}")
        self.configs = list(configs)
        self.members = [Simulation(config, dataset) for config in configs]
        first = self.members[0]
        shapes: dict[tuple, list[int]] = {}
        for index, m in enumerate(self.members):
            shapes.setdefault(_shape_facts(m), []).append(index)
        if len(shapes) > 1:
            raise ShapesDiffer(list(shapes.values()), [m.config.seed for m in self.members])
        runs = len(self.members)
        # the executor that --executor auto picks for R x K clients at once
        executor = resolve(first.config.executor, num_clients=runs * first.schedule.per_round)
        self.template = first.built if executor == first.context.executor else first.built.with_executor(executor)
        self.values = {k: jnp.asarray([traced_values(m.config)[k] for m in self.members], jnp.float32) for k in TRACED}
        self.data = first.data._replace(**{field: jnp.stack([getattr(m.data, field) for m in self.members])
                                           for field in ("client_index", "sizes", "weights")})
        self.test = stack([m.test for m in self.members])
        self.states: State | None = None  # set by `start`, once each member's state is its own (fresh or restored)
        self.compile_time_s = 0.0
        self._round = self._evaluate = None

    @property
    def executor(self) -> str:
        return self.template.context.executor

    def start(self) -> None:
        """Stack the members' states (each fresh, or restored from its checkpoint) into the group's."""
        abstract = jax.eval_shape(lambda: stack([m.state for m in self.members]))
        if len(self.members) == 1:  # a run alone: the error says what to change
            memory.require_state_fit(abstract, self.template.context.num_clients)
        elif memory.nbytes(abstract) > (memory.available_bytes() or float("inf")):
            raise GroupTooLarge(f"the state of {len(self.members)} runs")
        self.states = stack([m.state for m in self.members])
        for m in self.members:
            m.state = None  # the group's stacked copy is the one that trains

    def _round_fn(self, built) -> Callable:
        config = built.config

        def one(state, data, values, *inputs):
            return built.with_values(dataclasses.replace(config, **values)).round(state, data, *inputs)

        inputs = len(self.members[0].round_inputs(0))
        return jax.jit(jax.vmap(one, in_axes=(0, DATA_AXES, 0) + (0,) * inputs), donate_argnums=0)

    def _evaluate_fn(self) -> Callable:
        """The runs' evaluations one after another (`lax.map`), not vmapped: under vmap each layer of R models on
        R test sets becomes a batched convolution, which XLA:CPU ran 30 % slower than R evaluations in turn."""
        algorithm, model = self.template.algorithm, self.template.model

        def every(states, data, test, *scored):
            def one(run):
                state, client_index, sizes, weights, test_set, *inputs = run
                own = data._replace(client_index=client_index, sizes=sizes, weights=weights)
                lowers, uppers = algorithm.eval_pairs(state, own, *inputs)
                return evaluate_pairs(model, lowers, uppers, test_set)

            return jax.lax.map(one, (states, data.client_index, data.sizes, data.weights, test, *scored))

        return jax.jit(every)

    def round_inputs(self, round_index: int) -> tuple:
        return tuple(stack(parts) for parts in zip(*(m.round_inputs(round_index) for m in self.members)))

    def eval_inputs_after(self, round_index: int) -> tuple:
        return tuple(stack(parts) for parts in zip(*(m.eval_inputs_after(round_index) for m in self.members)))

    def lower_round(self):
        """The group's round, lowered (not compiled): what `compile` compiles; its text names no run's values."""
        return self._round_fn(self.template).lower(self.states, self.data, self.values, *self.round_inputs(0))

    def compile(self) -> None:
        """Compile the group's round and evaluation once; where --executor auto's choice cannot fit, the loop."""
        if self._round is not None:
            return
        began = time.perf_counter()
        self._round = self.lower_round().compile()
        config = self.template.config
        if config.executor == "auto" and self.executor != "loop" and memory.shortfall(self._round):
            self.template = self.template.with_executor("loop")
            self._round = self.lower_round().compile()
        if len(self.members) == 1:
            memory.require_fit(self._round, self.executor, self.template.context.num_clients)
        elif memory.shortfall(self._round):
            raise GroupTooLarge(f"one round of {len(self.members)} runs")
        self._evaluate = self._evaluate_fn().lower(self.states, self.data, self.test,
                                                   *self.eval_inputs_after(0)).compile()
        self.compile_time_s = time.perf_counter() - began

    def step(self, round_index: int) -> tuple:
        """Dispatch one round of every run and its evaluation; device arrays, not yet fetched."""
        self.compile()
        self.states, metrics = self._round(self.states, self.data, self.values, *self.round_inputs(round_index))
        accuracy = self._evaluate(self.states, self.data, self.test, *self.eval_inputs_after(round_index))
        return metrics, accuracy

    def state_of(self, index: int) -> State:
        """Run `index`'s state, for its checkpoint."""
        return member(self.states, index)

    def rounds(self, start: int, stop: int, keep_going: Callable[[], bool] = lambda: True
               ) -> Iterator[list[RoundRecord]]:
        """Run rounds start..stop-1 of every run; yield each round's records, one per run, as soon as known (the
        next round is dispatched first, as `Simulation.rounds` does)."""
        self.compile()
        for r, (train, accuracy), round_time, wall_time in pipelined(self.step, start, stop, keep_going):
            records = []
            for index, m in enumerate(self.members):
                record = m._record(r, (member(train, index), member(accuracy, index), ({}, {})))
                record["round_time_s"], record["wall_time_s"] = round_time, wall_time
                records.append(record)
            yield records


def _shape_facts(simulation: Simulation) -> tuple:
    """What of a run's built round shapes its program beyond its configuration: the padded index lists, the
    iterations and which clients take part in each (--round-mode epoch)."""
    return (simulation.data.client_index.shape, simulation.context.iterations, simulation.active,
            jax.tree.map(np.shape, simulation.test))
