"""Slow devices (`--device-spread S`): each client's own compute speed and link rates, and the
simulated round time that follows from them.

Each client's compute speed, uplink and downlink rate are the latency profile's values times
exp(S z), one z ~ N(0, 1) each, drawn once from the run's seed: log-normal around the profile, with
the profile's value as the median. A round then takes what its participants make it take:

- the parallel algorithms are synchronous: in each iteration the server waits for the last upload,
  and the iteration ends when the last client has its gradient (and, where it overlaps, has
  finished its decoder's pass); LocSplitFed's pipeline runs at its slowest stage;
- sequential SL serves its clients one after another: their times add up, no one waits;
- FedAvg's clients train side by side, the round waiting for the slowest;
- an averaging step ends when the slowest client's upload and download have.
With all factors 1 these are the formulas of latency.py's `timing`.

`--round-deadline SECONDS` leaves out the participants whose round would take longer (as it
would were every participant as fast as it): their work is lost, as on a real system, and the
round lasts until the deadline.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from lfmsl.algorithms import Exchange
from lfmsl.algorithms.participation import round_participants, round_size
from lfmsl.config import Config
from lfmsl.core.batching import client_iterations
from lfmsl.costs import comm
from lfmsl.costs.latency import Stages, stages
from lfmsl.models import SplitModel
from lfmsl.profiles import Profile

_STREAM = 0xDE71  # separates the devices' draw from every other use of the seed


@dataclasses.dataclass(frozen=True)
class Devices:
    """Each client's multiple of the profile's client FLOP/s, uplink and downlink rate [N]."""

    compute: np.ndarray
    uplink: np.ndarray
    downlink: np.ndarray

    def of(self, ids: np.ndarray) -> "Devices":
        return Devices(self.compute[ids], self.uplink[ids], self.downlink[ids])


def draw(seed: int, num_clients: int, spread: float) -> Devices:
    """The run's devices: log-normal factors with log-standard-deviation `spread`, from the seed alone."""
    z = np.random.default_rng([seed, _STREAM]).standard_normal((3, num_clients))
    return Devices(*np.exp(spread * z))


def _iteration(st: Stages, devices: Devices, n: int, slowest, added):
    """One iteration of `n` clients on `devices`: `slowest` and `added` reduce over the clients (np.max,
    np.sum), or keep one value per client (each standing for n clients as fast as it)."""
    if st.schedule == "central":
        return st.central
    if st.schedule == "local":
        return slowest(st.local_model / devices.compute)
    client, local = st.client / devices.compute, st.local_pass / devices.compute
    up, down = st.up / devices.uplink, st.down / devices.downlink
    if st.schedule == "relay":
        return added(client + up + st.server_step + down)
    server = (n + n * st.mixed_per_client) * st.server_step
    if not st.grads_down:  # LocSplitFed's pipeline
        if st.overlap:
            return np.maximum(np.maximum(slowest(client + local), slowest(up)), server)
        return slowest(client + local + up) + server
    uploaded = slowest(client + up)  # the server starts on the last upload
    if st.overlap:
        return np.maximum(slowest(client + local), uploaded + server + slowest(down))
    return uploaded + server + slowest(down + local)


def iteration_seconds(st: Stages, devices: Devices) -> float:
    """One iteration of the clients `devices` (module docstring); 0 where none takes part."""
    n = len(devices.compute)
    return float(_iteration(st, devices, n, np.max, np.sum)) if n else 0.0


def iteration_seconds_each(st: Stages, devices: Devices) -> np.ndarray:
    """Per client [n]: one iteration of n clients all as fast as that one."""
    n = len(devices.compute)
    return np.broadcast_to(_iteration(st, devices, n, lambda x: x, lambda x: n * x), (n,))


def _transfer_each(up: float, down: float, devices: Devices) -> np.ndarray:
    """Per client: `up` bytes-worth of seconds on its uplink and `down` on its downlink."""
    return up / devices.uplink + down / devices.downlink


def _average_each(st: Stages, devices: Devices) -> np.ndarray:
    return _transfer_each(st.average_up, st.average_down, devices)


def _relay_each(st: Stages, devices: Devices) -> np.ndarray:
    return _transfer_each(st.relay_up, st.relay_down, devices)


def average_seconds(st: Stages, devices: Devices) -> float:
    """One averaging step: every client's averaged parts up and back, the slowest setting the pace."""
    return float(np.max(_average_each(st, devices))) if len(devices.compute) else 0.0


def relay_seconds(st: Stages, devices: Devices) -> float:
    """One hand-over of sequential SL's model, on the mean client's links."""
    return float(np.mean(_relay_each(st, devices))) if len(devices.compute) else 0.0


class DeviceRounds:
    """Simulated seconds of each round with every participant on its own device (module docstring).

    `participants(r)` gives round r's ids; `own_iterations` [N] each client's iterations in a round
    (`--round-mode epoch`; None: every client does all of them)."""

    def __init__(self, st: Stages, devices: Devices, iterations: int, averaging_steps, relay_handovers,
                 participants, own_iterations: np.ndarray | None = None, deadline: float | None = None):
        self.stages, self.devices, self.iterations = st, devices, iterations
        self.averaging_steps, self.relay_handovers = averaging_steps, relay_handovers  # round -> count
        self.participants, self.own_iterations, self.deadline = participants, own_iterations, deadline
        self._own_times: dict[int, np.ndarray] = {}  # asked for by the deadline, the round's time and its record

    @classmethod
    def of(cls, config: Config, model: SplitModel, traffic: comm.Traffic, profile: Profile, sent: Exchange,
           iterations: int, sizes: Sequence[int], own_epochs: bool = False) -> "DeviceRounds | None":
        """The rounds of a run whose learners hold `sizes` samples, from its own traffic and profile, where
        `config` (counting the participants only, run_costs.py's `counted`) puts them on devices of their own;
        else None. `own_epochs`: each client does its own epoch (`--round-mode epoch`)."""
        if not config.device_spread and config.round_deadline is None:
            return None
        learners, per_round = len(sizes), round_size(config, len(sizes))
        own = np.array(client_iterations(sizes, config.batch_size)) if own_epochs else None
        return cls(stages(config, model, traffic, profile, sent), draw(config.seed, learners, config.device_spread),
                   iterations, lambda r: comm.averaging_steps(r, traffic.steps_per_round, traffic.avg_every),
                   lambda r: comm.relay_handovers(r, config.clients),
                   lambda r: round_participants(config.seed, r, learners, per_round), own, config.round_deadline)

    def _seconds(self, round_index: int, devices: Devices, own: np.ndarray | None) -> float:
        """The round of clients `devices` (each doing `own` iterations, or all of them)."""
        if own is None:
            steps = self.iterations * iteration_seconds(self.stages, devices)
        else:
            each = (devices.compute, devices.uplink, devices.downlink)
            steps = sum(iteration_seconds(self.stages, Devices(*(a[own > t] for a in each)))
                        for t in range(self.iterations))
        return (steps + self.averaging_steps(round_index) * average_seconds(self.stages, devices)
                + self.relay_handovers(round_index) * relay_seconds(self.stages, devices))

    def _own(self, ids: np.ndarray) -> np.ndarray | None:
        return None if self.own_iterations is None else self.own_iterations[ids]

    def own_times(self, round_index: int) -> np.ndarray:
        """Each participant's round were every participant as fast as it [K] (computed once a round)."""
        if round_index not in self._own_times:
            ids = self.participants(round_index)
            mine = self.devices.of(ids)
            own = self._own(ids)
            steps = (self.iterations if own is None else own) * iteration_seconds_each(self.stages, mine)
            self._own_times[round_index] = (steps + self.averaging_steps(round_index) * _average_each(self.stages, mine)
                                            + self.relay_handovers(round_index) * _relay_each(self.stages, mine))
        return self._own_times[round_index]

    def on_time(self, round_index: int) -> np.ndarray:
        """Which participants make `--round-deadline` [bool, K] (all without one)."""
        times = self.own_times(round_index)
        return np.ones(len(times), bool) if self.deadline is None else times <= self.deadline

    def seconds(self, round_index: int) -> float:
        """The round of the participants that make the deadline; the deadline itself if any miss it."""
        ids = self.participants(round_index)
        kept = self.on_time(round_index)
        own = self._own(ids)
        seconds = self._seconds(round_index, self.devices.of(ids[kept]), None if own is None else own[kept])
        return max(seconds, self.deadline) if not kept.all() else seconds

    def fields(self, round_index: int) -> dict:
        """The record's fields: the slowest participant's time over the median's, and the deadline's misses."""
        times = self.own_times(round_index)
        out = {"slowest_to_median": float(np.max(times) / np.median(times))}
        if self.deadline is not None:
            out["missed_deadline"] = int(np.sum(times > self.deadline))
        return out
