"""A simulation: data on the device, one algorithm, and its rounds.

The round and the evaluation are compiled ahead of time, once each, whatever the number of
rounds. Round r+1 is dispatched before round r's metrics are fetched, so the host never
stalls the device.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from lfmsl import algorithms, datasets

from lfmsl.core import memory
from lfmsl.algorithms.base import Algorithm, State
from lfmsl.core.batching import ClientData, active_per_iteration, client_iterations, iterations_per_round, make_client_data
from lfmsl.algorithms import participation, validate
from lfmsl.algorithms.checks import participants_per_round
from lfmsl.config import Config
from lfmsl.io.data import Dataset
from lfmsl.errors import UsageError
from lfmsl.core.evaluate import TestData, evaluate_pairs, make_test_data
from lfmsl.core.executors import resolve
from lfmsl.costs import comm, devices
from lfmsl.costs.latency import RunCosts, counted, stages
from lfmsl.models import default_model_for, get_model
from lfmsl.core.partition import partition, stratified_subset
from lfmsl.core.sharding import Placement
from lfmsl.experiments.leakage import Leakage

RoundRecord = dict[str, float]


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
                f"--clients {config.clients} x --samples-per-client {config.samples_per_client} = {wanted} samples, but the "
                f"training set has {len(labels)}; lower one of them"
            )
        pool = np.sort(stratified_subset(labels, wanted, config.seed))
    if config.train_size is not None:
        if config.train_size > len(labels):
            raise UsageError(f"--train-size {config.train_size} is larger than the training set ({len(labels)} samples)")
        pool = np.sort(stratified_subset(labels, config.train_size, config.seed))
    if config.clients > len(pool):
        raise UsageError(
            f"--clients {config.clients} is more than the {len(pool)} training samples; use fewer clients or a larger --train-size"
        )
    parts = partition(labels[pool], config.clients, config.partition, config.seed)
    return [pool[p] for p in parts]


def check_batch_size(batch_size: int, sizes: list[int]) -> None:
    """Refuse a batch larger than every client's data (each batch would repeat samples); name the
    clients smaller than a batch, as a skewed partition makes some."""
    largest = max(sizes)
    if batch_size > largest:
        raise UsageError(
            f"--batch-size {batch_size} is more than any client holds (at most {largest} samples), so every batch would repeat "
            f"samples; use --batch-size {largest} or less, or give the clients more data (--samples-per-client, --train-size, fewer --clients)"
        )
    smaller = sum(size < batch_size for size in sizes)
    if smaller:
        print(f"lfmsl: {smaller} of {len(sizes)} clients hold fewer than --batch-size {batch_size} samples; their batches repeat samples",
              file=sys.stderr)


def eval_client_ids(config: Config, num_clients: int) -> np.ndarray:
    """Evenly spread clients whose own models are scored where clients keep their own."""
    count = num_clients if config.eval_clients == 0 else min(config.eval_clients, num_clients)
    return np.unique(np.linspace(0, num_clients - 1, count).round().astype(np.int32))


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
        model = get_model(config.model or shape.default_model, shape.image_shape, shape.num_classes, config.conv, config.cut)
        learners = 1 if algorithms.exchange(config).schedule == "central" else config.clients
        context = algorithms.context(config, model, num_clients=learners, iterations=1,
                                     executor=resolve(config.executor, num_clients=learners))
        try:
            memory.require_state_fit(jax.eval_shape(algorithms.build(config, context).init, jax.random.key(0)), learners)
        except UsageError as error:
            raise UsageError(f"the grid's {config.algorithm} run with {config.clients} clients cannot fit: {error}") from None


class Simulation:
    """Builds everything a run needs from a configuration and a loaded dataset."""

    def __init__(self, config: Config, dataset: Dataset):
        self.config = validate(config)
        self.model = get_model(config.model or default_model_for(config.dataset), dataset.image_shape, dataset.num_classes, config.conv, config.cut)
        self.parts = client_partition(config, dataset.y_train)
        sent = algorithms.exchange(config)
        # A central learner (centralized training) sees the union of the clients' data.
        learners = [np.sort(np.concatenate(self.parts))] if sent.schedule == "central" else self.parts
        check_batch_size(config.batch_size, [len(p) for p in learners])
        # K participants per round (--clients-per-round); all N unless fewer are drawn.
        self.per_round = min(participants_per_round(config), len(learners))
        self.sampling = self.per_round < len(learners)
        # Clients split over all devices where there are several (sharding.py).
        self.placement = Placement(len(learners), split=sent.splits_clients, participants=self.per_round)
        self.data: ClientData = self.placement.data(make_client_data(dataset.x_train, dataset.y_train, learners))
        test = np.arange(len(dataset.y_test)) if config.test_size is None else stratified_subset(dataset.y_test, min(config.test_size, len(dataset.y_test)), config.seed)
        self.test: TestData = self.placement.replicate(make_test_data(dataset.x_test[test], dataset.y_test[test]))
        self.context = algorithms.context(
            config,
            self.model,
            num_clients=len(learners),
            iterations=iterations_per_round([len(p) for p in learners], config.batch_size),
            executor=resolve(config.executor, num_clients=self.per_round),  # the clients that run at once
        )
        init_key, self.run_key = jax.random.split(jax.random.key(config.seed))
        self.algorithm = self._build()
        # Clients taking part in each iteration, where each does its own epoch; None: all in every one.
        self.active = active_per_iteration([len(p) for p in learners], config.batch_size) if config.round_mode == "epoch" and len(learners) > 1 else None
        # Static: bytes and simulated time, of the round's participants only.
        participants_only = counted(config)
        self.costs = RunCosts(participants_only, self.model, self.context.iterations, self.active)
        self.costs.device_rounds = self._device_rounds(self.costs, learners)
        ids = eval_client_ids(config, len(learners)) if self.algorithm.personal else np.zeros(1, np.int32)
        self.eval_ids = self.placement.replicate(jnp.asarray(ids))
        memory.require_state_fit(jax.eval_shape(self.algorithm.init, init_key), len(learners))  # before it is built
        self.state: State = self.placement.init_state(self.algorithm.init, init_key)
        # --privacy-every: what the server could rebuild of the evaluated clients' inputs (leakage.py)
        self.leakage = None if config.privacy_every is None else Leakage(
            config, self.model, self.algorithm, self.parts, len(dataset.y_train), eval_client_ids(config, len(learners)))
        self.privacy_images: dict[str, np.ndarray] = {}  # the last measurement's probes and reconstructions
        self._leakage = None
        self.compile_time_s = 0.0
        self._survivors: dict[int, np.ndarray] = {}
        self._round = None
        self._evaluate = None

    @property
    def fails(self) -> bool:
        """Whether participants can drop out of a round: --dropout, or --round-deadline."""
        return bool(self.config.dropout) or self.config.round_deadline is not None

    def _device_rounds(self, costs: RunCosts, learners: list[np.ndarray]) -> devices.DeviceRounds | None:
        """Each round's simulated time with every client on its own device (--device-spread, --round-deadline),
        from the run's own traffic and profile."""
        config = self.config
        if not config.device_spread and config.round_deadline is None:
            return None
        traffic, iterations = costs.traffic, self.context.iterations
        own = np.array(client_iterations([len(p) for p in learners], config.batch_size)) if self.active is not None else None
        return devices.DeviceRounds(
            stages(costs.config, self.model, traffic, costs.profile, costs.exchange), devices.draw(config.seed, len(learners), config.device_spread),
            iterations, lambda r: comm.averaging_steps(r, traffic.steps_per_round, traffic.avg_every),
            lambda r: comm.relay_handovers(r, costs.config.clients), self.participant_ids, own, config.round_deadline)

    def participant_ids(self, round_index: int) -> np.ndarray:
        """Round `round_index`'s participants (all clients unless --clients-per-round draws fewer)."""
        if not self.sampling:
            return np.arange(self.context.num_clients)
        return participation.participants(self.config.seed, max(round_index, 0), self.context.num_clients, self.per_round)

    def _build(self) -> Algorithm:
        """The algorithm; where K < N clients take part in a round, its round built for K run on the
        participants of the N clients (participation.py)."""
        full = algorithms.build(self.config, self.context)
        if not self.sampling:
            return participation.with_failures(full) if self.fails else full
        part = algorithms.build(self.config, dataclasses.replace(self.context, num_clients=self.per_round))
        return participation.sampled(full, part, self.run_key)

    def round_key(self, round_index: int) -> jax.Array:
        """Round r's randomness depends on (seed, r) alone, so any round can be recomputed."""
        return jax.random.fold_in(self.run_key, round_index)

    def participants(self, round_index: int) -> jax.Array:
        return self.placement.replicate(jnp.asarray(self.participant_ids(round_index)))

    def survivors(self, round_index: int) -> np.ndarray | None:
        """Which of round `round_index`'s participants neither fail (--dropout) nor miss the deadline
        (--round-deadline); None where none can."""
        if not self.fails:
            return None
        if round_index not in self._survivors:  # asked again for the rounds before each round (last_run_before)
            alive = participation.survivors(self.config.seed, round_index, self.per_round, self.config.dropout)
            if self.config.round_deadline is not None:
                alive &= self.costs.device_rounds.on_time(round_index)
            self._survivors[round_index] = alive
        return self._survivors[round_index].copy()

    def lost(self, round_index: int) -> bool:
        """Whether every participant of the round fails: the round then changes nothing and is not run."""
        alive = self.survivors(round_index)
        return alive is not None and not alive.any()

    def last_run_before(self, round_index: int) -> int:
        """The latest round before `round_index` that was run (-1: none, every model is still the initial one)."""
        previous = round_index - 1
        while previous >= 0 and self.lost(previous):
            previous -= 1
        return previous

    def _drawn(self, round_index: int) -> tuple:
        """Round `round_index`'s participants (round 0's for -1: all hold the initial model) and, with
        --dropout, which of them survive (all for -1)."""
        ids = self.participants(round_index)
        if not self.fails:
            return (ids,)
        alive = np.ones(self.per_round, bool) if round_index < 0 else self.survivors(round_index)
        return ids, self.placement.replicate(jnp.asarray(alive))

    def round_inputs(self, round_index: int) -> tuple:
        """The round's arguments after the state and data: its key; where K < N its participants and
        those of the last round run (whose average the averaged parts start from); with --dropout
        which of them survive."""
        key = self.round_key(round_index)
        if not self.sampling:
            alive = self.survivors(round_index)
            return (key,) if alive is None else (key, self.placement.replicate(jnp.asarray(alive)))
        (ids, *alive), (previous, *previous_alive) = self._drawn(round_index), self._drawn(self.last_run_before(round_index))
        return (key, ids, previous, *alive, *previous_alive)

    def eval_inputs_after(self, round_index: int) -> tuple:
        """What the evaluation after round `round_index` scores, after the state and data: where K < N
        clients are drawn and models are averaged, the average of the last round run's participants
        (its survivors with --dropout); else the models of `eval_ids`."""
        if not (self.sampling and not self.algorithm.personal):
            return (self.eval_ids,)
        return self._drawn(round_index if not self.lost(round_index) else self.last_run_before(round_index))

    def compile(self) -> None:
        """Compile the round and the evaluation once, ahead of time, and time it."""
        if self._round is not None:
            return
        start = time.perf_counter()
        self._round = self._compile_round()
        if self.config.executor == "auto" and self.context.executor != "loop" and memory.shortfall(self._round):
            # auto's table chose by speed; the loop keeps one client's activations at a time.
            self.context = dataclasses.replace(self.context, executor="loop")
            self.algorithm = self._build()
            self._round = self._compile_round()
        memory.require_fit(self._round, self.context.executor, self.context.num_clients)

        def evaluate(state, data, test, *scored):
            lowers, uppers = self.algorithm.eval_pairs(state, data, *scored)
            return evaluate_pairs(self.model, lowers, uppers, test)

        with self.placement.tracing():
            self._evaluate = self.placement.jit_replicated(evaluate).lower(self.state, self.data, self.test, *self.eval_inputs_after(0)).compile()
            if self.leakage is not None:
                self._leakage = self.placement.jit_replicated(self.leakage).lower(self.state, self.data).compile()
        self.compile_time_s = time.perf_counter() - start

    def _compile_round(self):
        with self.placement.tracing():
            return self.placement.jit_round(self.algorithm.round).lower(self.state, self.data, *self.round_inputs(0)).compile()

    def step(self, round_index: int) -> tuple[dict, tuple, tuple]:
        """Dispatch one round, its evaluation and, where it is measured, its leakage (before the next round donates
        the state); returns device arrays, not yet fetched."""
        self.compile()
        metrics = {}  # a lost round (every participant failed) trains nothing
        if not self.lost(round_index):
            self.state, metrics = self._round(self.state, self.data, *self.round_inputs(round_index))
        accuracy = self._evaluate(self.state, self.data, self.test, *self.eval_inputs_after(round_index))
        measured = self.leakage is not None and round_index + 1 in self.leakage.rounds
        leakage = self._leakage(self.state, self.data) if measured else ({}, {})
        return metrics, accuracy, leakage

    def rounds(self, start: int, stop: int, keep_going: Callable[[], bool] = lambda: True) -> Iterator[RoundRecord]:
        """Run rounds start..stop-1 and yield each one's record as soon as it is known.

        `keep_going()` is asked before each round is dispatched; once it says no, the rounds
        already dispatched finish and the generator ends with `state` after the last one yielded.
        """
        self.compile()
        began = last = time.perf_counter()
        pending = None
        for r in range(start, stop + 1):
            dispatched = self.step(r) if r < stop and keep_going() else None
            if pending is not None:
                record = self._record(pending[0], jax.device_get(pending[1]))
                now = time.perf_counter()
                record["round_time_s"], record["wall_time_s"] = now - last, now - began
                last = now
                yield record
            if dispatched is None:
                return
            pending = (r, dispatched)

    def _record(self, round_index: int, fetched: tuple) -> RoundRecord:
        train, (accuracy, loss), (leakage, images) = fetched
        record: RoundRecord = {"round": round_index + 1}
        record["test_accuracy"] = float(np.mean(accuracy))
        record["test_loss"] = float(np.mean(loss))
        if self.algorithm.personal and len(accuracy) > 1:
            record["test_accuracy_std"] = float(np.std(accuracy))
            record["test_accuracy_min"] = float(np.min(accuracy))
            record["test_accuracy_max"] = float(np.max(accuracy))
        record.update({k: float(v) for k, v in sorted(train.items())})
        record.update({k: float(v) for k, v in sorted(leakage.items())})
        if images:
            self.privacy_images = {k: np.asarray(v) for k, v in images.items()}
        if self.sampling or self.fails:
            record["participants"] = self.per_round
        if self.fails:
            record["dropped"] = int(np.sum(~self.survivors(round_index)))
        record.update(self.costs.record_fields(round_index))
        return record
