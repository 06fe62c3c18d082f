"""A run's costs, round by round: the bytes of the communication ledger (comm.py) and the simulated seconds
of the latency model (latency.py), or of each participant's own device (devices.py).

Everything is built from the configuration and the learners' sizes, so a run only asks for a round's
record; nothing here touches the accelerator.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from lfmsl.algorithms import exchange
from lfmsl.config import Config
from lfmsl.core.batching import iterations_per_round
from lfmsl.costs import comm
from lfmsl.costs.devices import DeviceRounds
from lfmsl.costs.latency import model_for, profile_for, timing
from lfmsl.models import SplitModel


class RunCosts:
    """Bytes and simulated seconds of every round of one run, computed once from shapes.

    `active` gives the clients taking part in each iteration of a round (`--round-mode epoch`);
    by default every client takes part in every iteration. `sizes`, the learners' samples, puts each
    participant on a device of its own where the configuration asks for it (--device-spread,
    --round-deadline: `device_rounds`); None, or neither option: every round takes the profile's time."""

    def __init__(self, config: Config, model: SplitModel, iterations: int, active: Sequence[int] | None = None,
                 sizes: Sequence[int] | None = None):
        self.config = config
        self.active = None if active is None else tuple(active)
        self.exchange = exchange(config)
        self.traffic = comm.traffic(config, model, iterations, self.exchange)
        self.profile = profile_for(config)
        self.timing = timing(config, model, self.traffic, self.profile, sent=self.exchange)
        if self.active is None:
            self.iterations_seconds = iterations * self.timing.per_iteration
        else:
            per_count = {a: timing(config, model, self.traffic, self.profile, a, self.exchange).per_iteration
                         for a in set(self.active)}
            self.iterations_seconds = math.fsum(per_count[a] for a in self.active)
        self.device_rounds = None if sizes is None else DeviceRounds.of(
            config, model, self.traffic, self.profile, self.exchange, iterations, sizes,
            own_epochs=self.active is not None)
        self._rounds: list[tuple[dict[str, int], float]] = []

    @classmethod
    def of(cls, config: Config, model: SplitModel, sizes: Sequence[int],
           active: Sequence[int] | None = None) -> "RunCosts":
        """The costs of a run whose learners hold `sizes` samples, counting the participants of each round only."""
        return cls(counted(config), model, iterations_per_round(sizes, config.batch_size), active, sizes)

    def on_time(self, round_index: int) -> np.ndarray:
        """Which of round `round_index`'s participants make --round-deadline [bool, K] (all where none is set)."""
        return self.device_rounds.on_time(round_index)

    def round(self, round_index: int) -> tuple[dict[str, int], float]:
        """Bytes by category and simulated seconds of round `round_index` (from 0)."""
        t, config = self.traffic, self.config
        sent = comm.round_bytes(t, config, round_index, self.active)
        if self.device_rounds is not None:
            return sent, self.device_rounds.seconds(round_index)
        seconds = (self.iterations_seconds
                   + comm.averaging_steps(round_index, t.steps_per_round, t.avg_every) * self.timing.per_average
                   + comm.relay_handovers(round_index, config.clients) * self.timing.per_relay)
        return sent, seconds

    def record_fields(self, round_index: int) -> dict:
        """The fields a round's record gets: this round's and the cumulative cost."""
        while len(self._rounds) <= round_index:
            self._rounds.append(self.round(len(self._rounds)))
        done = self._rounds[: round_index + 1]
        sent, seconds = done[-1]
        cumulative = {k: sum(r[0][k] for r in done) for k in comm.CATEGORIES}
        fields = {
            "comm_bytes": comm.link_bytes(cumulative),  # SFL-V1's server copies stay at the server
            "comm_round_bytes": comm.link_bytes(sent),
            "comm_breakdown": sent,
            "comm_breakdown_cumulative": cumulative,
            "sim_round_latency_s": seconds,
            "sim_latency_s": math.fsum(r[1] for r in done),
        }
        if self.device_rounds is not None:
            fields.update(self.device_rounds.fields(round_index))
        return fields


def counted(config: Config) -> Config:
    """The configuration whose clients the ledger and the latency model count: the K drawn per round
    where --clients-per-round draws fewer than all."""
    per_round = config.clients_per_round
    if per_round is None or per_round >= config.clients:
        return config
    return dataclasses.replace(config, clients=per_round)


def annotate(history: Sequence[dict], config: Config, iterations: int,
             active: Sequence[int] | None = None) -> list[dict]:
    """Records with the cost fields added (for runs made before the ledger existed).

    Runs on devices of their own (--device-spread, --round-deadline) keep the fields they recorded:
    their round times follow each round's participants, which the run itself knew."""
    if config.device_spread or config.round_deadline is not None:
        return list(history)
    costs = RunCosts(counted(config), model_for(config), iterations, active)
    return [{**record, **costs.record_fields(record["round"] - 1)} for record in history]
