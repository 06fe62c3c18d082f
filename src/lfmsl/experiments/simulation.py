"""A simulation: data on the device, one algorithm, and its rounds.

The round and the evaluation are compiled ahead of time, once each, whatever the number of
rounds. Round r+1 is dispatched before round r's metrics are fetched, so the host never
stalls the device.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from lfmsl.algorithms.base import State
from lfmsl.config import Config
from lfmsl.core import memory
from lfmsl.core.evaluate import TestData, evaluate_pairs, make_test_data
from lfmsl.core.partition import stratified_subset
from lfmsl.experiments.leakage import Leakage
from lfmsl.experiments.round_builder import BuiltRound, build_round
from lfmsl.io.data import Dataset

RoundRecord = dict[str, float]


def eval_client_ids(config: Config, num_clients: int) -> np.ndarray:
    """Evenly spread clients whose own models are scored where clients keep their own."""
    count = num_clients if config.eval_clients == 0 else min(config.eval_clients, num_clients)
    return np.unique(np.linspace(0, num_clients - 1, count).round().astype(np.int32))


class Simulation:
    """Runs the round that `build_round` makes from a configuration and a loaded dataset, with its evaluation.
    The configuration is one that `validate` accepted: `lfmsl.run` checks it, once, before any data is read."""

    def __init__(self, config: Config, dataset: Dataset):
        self.config = config
        built = build_round(config, dataset)
        self._use(built)
        self.client_indices, self.active = built.client_indices, built.active
        self.costs, self.run_key = built.costs, built.run_key
        self.model, self.schedule, self.placement, self.data = built.model, built.schedule, built.placement, built.data
        test = np.arange(len(dataset.y_test)) if config.test_size is None else stratified_subset(
            dataset.y_test, min(config.test_size, len(dataset.y_test)), config.seed)
        self.test: TestData = self.placement.replicate(make_test_data(dataset.x_test[test], dataset.y_test[test]))
        learners = self.context.num_clients
        ids = eval_client_ids(config, learners) if self.algorithm.personal else np.zeros(1, np.int32)
        self.eval_ids = self.placement.replicate(jnp.asarray(ids))
        memory.require_state_fit(jax.eval_shape(self.algorithm.init, built.init_key), learners)  # before it is built
        self.state: State = built.init_state()
        # --privacy-every: what the server could rebuild of the evaluated clients' inputs (leakage.py)
        self.leakage = None if config.privacy_every is None else Leakage(
            config, self.model, self.algorithm, self.client_indices, len(dataset.y_train),
            eval_client_ids(config, learners))
        self.privacy_images: dict[str, np.ndarray] = {}  # the last measurement's probes and reconstructions
        self._leakage = None
        self.compile_time_s = 0.0
        self._round = None
        self._evaluate = None

    def _use(self, built: BuiltRound) -> None:
        """Run `built`'s round from now on (compile may rebuild it for another executor)."""
        self.built, self.context, self.algorithm = built, built.context, built.algorithm

    def round_key(self, round_index: int) -> jax.Array:
        """Round r's randomness depends on (seed, r) alone, so any round can be recomputed."""
        return self.built.round_key(round_index)

    def round_inputs(self, round_index: int) -> tuple:
        """The round's arguments after the state and data: its key; where K < N its participants and
        those of the last round run (whose average the averaged parts start from); with --dropout
        which of them survive."""
        return self.built.round_inputs(round_index)

    def eval_inputs_after(self, round_index: int) -> tuple:
        """What the evaluation after round `round_index` scores, after the state and data: where K < N
        clients are drawn and models are averaged, the average of the last round run's participants
        (its survivors with --dropout); else the models of `eval_ids`."""
        if not (self.schedule.sampling and not self.algorithm.personal):
            return (self.eval_ids,)
        return tuple(self.placement.replicate(jnp.asarray(a)) for a in self.schedule.scored(round_index))

    def compile(self) -> None:
        """Compile the round and the evaluation once, ahead of time, and time it."""
        if self._round is not None:
            return
        start = time.perf_counter()
        self._round = self.built.compile(self.state)
        if self.config.executor == "auto" and self.context.executor != "loop" and memory.shortfall(self._round):
            # auto's table chose by speed; the loop keeps one client's activations at a time.
            self._use(self.built.with_executor("loop"))
            self._round = self.built.compile(self.state)
        memory.require_fit(self._round, self.context.executor, self.context.num_clients)

        def evaluate(state, data, test, *scored):
            lowers, uppers = self.algorithm.eval_pairs(state, data, *scored)
            return evaluate_pairs(self.model, lowers, uppers, test)

        with self.placement.tracing():
            scored = self.eval_inputs_after(0)
            lowered = self.placement.jit_replicated(evaluate).lower(self.state, self.data, self.test, *scored)
            self._evaluate = lowered.compile()
            if self.leakage is not None:
                self._leakage = self.placement.jit_replicated(self.leakage).lower(self.state, self.data).compile()
        self.compile_time_s = time.perf_counter() - start

    def step(self, round_index: int) -> tuple[dict, tuple, tuple]:
        """Dispatch one round, its evaluation and, where it is measured, its leakage (before the next round donates
        the state); returns device arrays, not yet fetched."""
        self.compile()
        metrics = {}  # a lost round (every participant failed) trains nothing
        if not self.schedule.lost(round_index):
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
        for r, fetched, round_time, wall_time in pipelined(self.step, start, stop, keep_going):
            record = self._record(r, fetched)
            record["round_time_s"], record["wall_time_s"] = round_time, wall_time
            yield record

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
        if self.schedule.sampling or self.schedule.fails:
            record["participants"] = self.schedule.per_round
        if self.schedule.fails:
            record["dropped"] = int(np.sum(~self.schedule.survivors(round_index)))
        record.update(self.costs.record_fields(round_index))
        return record


def pipelined(step: Callable[[int], object], start: int, stop: int, keep_going: Callable[[], bool]
              ) -> Iterator[tuple[int, object, float, float]]:
    """Rounds start..stop-1 of `step` (which dispatches a round and returns its device outputs), each dispatched
    before the one before it is fetched, so the device computes while the host writes: yields each round's index,
    fetched outputs, its time and the time since `start`."""
    began = last = time.perf_counter()
    pending = None
    for r in range(start, stop + 1):
        dispatched = step(r) if r < stop and keep_going() else None
        if pending is not None:
            fetched = jax.device_get(pending[1])
            now = time.perf_counter()
            yield pending[0], fetched, now - last, now - began
            last = now
        if dispatched is None:
            return
        pending = (r, dispatched)
