"""A run's round, built from a configuration and a dataset: its model, the clients' data on the device, who
takes part in each round, the algorithm and its compiled round.

`Simulation` runs what this builds, and the timing scripts (scripts/bench.py, scripts/profile_round.py) time
it, so what they measure is the round a run compiles.
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import numpy as np

from lfmsl import algorithms, datasets
from lfmsl.algorithms import participation
from lfmsl.algorithms.base import Algorithm, Context, State
from lfmsl.config import Config
from lfmsl.core import memory
from lfmsl.core.batching import ClientData, active_per_iteration, iterations_per_round, make_client_data
from lfmsl.core.executors import resolve
from lfmsl.core.partition import partition, stratified_subset
from lfmsl.core.sharding import Placement
from lfmsl.costs.run_costs import RunCosts
from lfmsl.errors import UsageError
from lfmsl.io.data import Dataset
from lfmsl.models import SplitModel, default_model_for, get_model


def client_partition(config: Config, labels: np.ndarray) -> list[np.ndarray]:
    """Each client's training indices; the same for every algorithm with the same seed.

    The pool split among the clients is the whole training set, a class-stratified subset of
    `--train-size` samples, or one of `--clients` x `--samples-per-client` samples.
    """
    pool = np.arange(len(labels))
    if config.samples_per_client is not None:
        wanted = config.clients * config.samples_per_client
        if wanted > len(labels):
            raise UsageError(
                f"--clients {config.clients} x --samples-per-client {config.samples_per_client} = {wanted} samples, "
                f"but the training set has {len(labels)}; lower one of them"
            )
        pool = np.sort(stratified_subset(labels, wanted, config.seed))
    if config.train_size is not None:
        if config.train_size > len(labels):
            raise UsageError(f"--train-size {config.train_size} is larger than the training set "
                             f"({len(labels)} samples)")
        pool = np.sort(stratified_subset(labels, config.train_size, config.seed))
    if config.clients > len(pool):
        raise UsageError(
            f"--clients {config.clients} is more than the {len(pool)} training samples; use fewer clients or a "
            "larger --train-size"
        )
    client_indices = partition(labels[pool], config.clients, config.partition, config.seed)
    return [pool[p] for p in client_indices]


def check_batch_size(batch_size: int, sizes: list[int]) -> None:
    """Refuse a batch larger than every client's data (each batch would repeat samples); name the
    clients smaller than a batch, as a skewed partition makes some."""
    largest = max(sizes)
    if batch_size > largest:
        raise UsageError(
            f"--batch-size {batch_size} is more than any client holds (at most {largest} samples), so every batch "
            f"would repeat samples; use --batch-size {largest} or less, or give the clients more data "
            "(--samples-per-client, --train-size, fewer --clients)"
        )
    smaller = sum(size < batch_size for size in sizes)
    if smaller:
        print(f"lfmsl: {smaller} of {len(sizes)} clients hold fewer than --batch-size {batch_size} samples; their "
              "batches repeat samples", file=sys.stderr)


def build_algorithm(config: Config, context: Context, schedule: participation.Schedule, key: jax.Array) -> Algorithm:
    """The algorithm; where K < N clients take part in a round, its round built for K run on the
    participants of the N clients (participation.py). `key`: any key of the run's kind (only shapes are read)."""
    full = algorithms.build(config, context)
    if not schedule.sampling:
        return participation.with_failures(full) if schedule.fails else full
    part = algorithms.build(config, dataclasses.replace(context, num_clients=schedule.per_round))
    return participation.sampled(full, part, key)


@dataclasses.dataclass(frozen=True)
class BuiltRound:
    """Everything a run's round is made of (`build_round`); `compile` turns it into the round a run dispatches."""

    config: Config
    model: SplitModel
    client_indices: list[np.ndarray]  # each client's training indices
    active: tuple[int, ...] | None  # clients taking part in each iteration where each does its own epoch; None: all
    costs: RunCosts  # bytes and simulated time of the round's participants
    schedule: participation.Schedule
    placement: Placement
    data: ClientData
    context: Context
    algorithm: Algorithm
    init_key: jax.Array
    run_key: jax.Array

    def with_executor(self, executor: str) -> "BuiltRound":
        """The same round run by another executor (the algorithm built anew)."""
        context = dataclasses.replace(self.context, executor=executor)
        algorithm = build_algorithm(self.config, context, self.schedule, self.run_key)
        return dataclasses.replace(self, context=context, algorithm=algorithm)

    def with_values(self, config: Config) -> Algorithm:
        """The algorithm built from `config`, whose value fields (`grouped.VALUES`) may be traced arrays: a group
        of runs builds its algorithm inside its program, so that those values are inputs, not constants."""
        context = algorithms.context(config, self.model, self.context.num_clients, self.context.iterations,
                                     self.context.executor)
        return build_algorithm(config, context, self.schedule, self.run_key)

    def round_key(self, round_index: int) -> jax.Array:
        """Round r's randomness depends on (seed, r) alone, so any round can be recomputed."""
        return jax.random.fold_in(self.run_key, round_index)

    def round_inputs(self, round_index: int) -> tuple:
        """The round's arguments after the state and data: its key, then the schedule's (participation.py)."""
        return (self.round_key(round_index), *(self.placement.replicate(jax.numpy.asarray(a))
                                               for a in self.schedule.round_arguments(round_index)))

    def init_state(self) -> State:
        """The initial state, placed on the devices."""
        return self.placement.init_state(self.algorithm.init, self.init_key)

    def compile(self, state: State):
        """The round compiled ahead of time for `state`'s shapes; it donates the state it is given."""
        with self.placement.tracing():
            lowered = self.placement.jit_round(self.algorithm.round).lower(state, self.data, *self.round_inputs(0))
            return lowered.compile()


def model_for(config: Config, image_shape: tuple[int, int, int], num_classes: int) -> SplitModel:
    """The run's split model: --model (else the dataset's default) cut at --cut, its products in
    --matmul-precision."""
    return get_model(config.model or default_model_for(config.dataset), image_shape, num_classes, config.conv,
                     config.cut, config.matmul_precision)


def require_state_fits(configs: list[Config]) -> None:
    """Refuse, before a sweep's first run, a grid whose largest run's state cannot fit in memory: per algorithm,
    dataset, model, cut and optimiser, the run with the most clients (the state grows with the client count,
    and nothing else in a grid changes its size). A run refused two hours into a night's sweep is a lost night."""
    largest: dict[tuple, Config] = {}
    for config in configs:
        family = (config.algorithm, config.dataset, config.model, config.cut, config.conv, config.optimizer)
        if family not in largest or config.clients > largest[family].clients:
            largest[family] = config
    for config in largest.values():
        shape = datasets.spec(config.dataset)
        model = model_for(config, shape.image_shape, shape.num_classes)
        learners = 1 if algorithms.exchange(config).schedule == "central" else config.clients
        context = algorithms.context(config, model, learners, iterations=1,
                                     executor=resolve(config.executor, num_clients=learners))
        try:
            memory.require_state_fit(jax.eval_shape(algorithms.build(config, context).init, jax.random.key(0)),
                                     learners)
        except UsageError as error:
            raise UsageError(f"the grid's {config.algorithm} run with {config.clients} clients cannot fit: "
                             f"{error}") from None


def build_round(config: Config, dataset: Dataset) -> BuiltRound:
    """The round of a run of `config` on `dataset` (validated beforehand: `lfmsl.algorithms.validate`)."""
    model = model_for(config, dataset.image_shape, dataset.num_classes)
    client_indices = client_partition(config, dataset.y_train)
    sent = algorithms.exchange(config)
    # A central learner (centralized training) sees the union of the clients' data.
    learners = [np.sort(np.concatenate(client_indices))] if sent.schedule == "central" else client_indices
    sizes = [len(p) for p in learners]
    check_batch_size(config.batch_size, sizes)
    own_epochs = config.round_mode == "epoch" and len(learners) > 1
    active = active_per_iteration(sizes, config.batch_size) if own_epochs else None
    costs = RunCosts.of(config, model, sizes, active)
    schedule = participation.Schedule.of(config, len(learners), costs.on_time)
    # Clients split over all devices where there are several (sharding.py).
    placement = Placement(len(learners), split=sent.splits_clients, participants=schedule.per_round)
    data = placement.data(make_client_data(dataset.x_train, dataset.y_train, learners))
    context = algorithms.context(config, model, num_clients=len(learners),
                                 iterations=iterations_per_round(sizes, config.batch_size),
                                 # the clients that run at once
                                 executor=resolve(config.executor, num_clients=schedule.per_round))
    init_key, run_key = jax.random.split(jax.random.key(config.seed))
    return BuiltRound(config, model, client_indices, active, costs, schedule, placement, data, context,
                      build_algorithm(config, context, schedule, run_key), init_key, run_key)

