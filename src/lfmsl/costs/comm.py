"""The communication ledger: bytes each round moves, by category, from static shapes alone.

Nothing here touches the device: the counts follow from the configuration, the model's
shapes and the number of iterations per round, so they cost nothing while a run trains.
Values are float32 (4 bytes) and labels int32 (4 bytes).

Categories (bytes summed over all clients):
- ``smashed_up``: smashed data, clients -> server, every iteration;
- ``labels_up``: the labels that go with it;
- ``grads_down``: split-layer gradients, server -> clients (none in LocSplitFed);
- ``client_weights_up`` / ``client_weights_down``: lower segments (full models in FedAvg)
  sent for averaging and the average sent back, at every averaging step;
- ``aux_weights_up`` / ``aux_weights_down``: LocFedMix-SL's decoders or LocSplitFed's
  auxiliary classifiers, averaged with the lower segments;
- ``server_copies``: SplitFed V1's per-client server copies gathered and sent back for
  averaging: server-internal, so kept in the breakdown but out of the link totals
  (``comm_bytes``) and the link time;
- ``relay``: sequential SL's hand-over of the client model from one client to the next, through
  the server: one upload and one download per hand-over.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

import jax

from lfmsl.algorithms import Exchange, exchange
from lfmsl.config import Config
from lfmsl.models import SplitModel, count_params, init_params

BYTES_PER_VALUE = 4  # float32
BYTES_PER_LABEL = 4  # int32
CATEGORIES = (
    "smashed_up", "labels_up", "grads_down", "client_weights_up", "client_weights_down",
    "aux_weights_up", "aux_weights_down", "server_copies", "relay",
)
SERVER_INTERNAL = ("server_copies",)  # never crosses a client's link
LINK_CATEGORIES = tuple(c for c in CATEGORIES if c not in SERVER_INTERNAL)


def link_bytes(by_category: dict[str, int]) -> int:
    """The bytes that cross the clients' links: every category but the server-internal ones."""
    return sum(by_category[c] for c in LINK_CATEGORIES)


@functools.lru_cache(maxsize=None)
def part_sizes(model: SplitModel) -> dict[str, int]:
    """Parameters of each part (client, server, decoder, aux), from shapes only."""
    shapes = jax.eval_shape(lambda: init_params(model, jax.random.key(0)))
    return {name: count_params(tree) for name, tree in shapes.items()}


@dataclasses.dataclass(frozen=True)
class Traffic:
    """What a run exchanges, per iteration and per averaging step, in bytes."""

    per_iteration: dict[str, int]  # every client's exchange in one iteration, summed over clients
    per_average: dict[str, int]  # one averaging step, summed over clients
    relay_bytes: int  # one hand-over of the client model (sequential SL): its upload plus its download
    steps_per_round: int  # values of the iteration counter that a round goes through
    avg_every: int | None  # T_c in iterations; None: no averaging


def averaging_steps(round_index: int, steps_per_round: int, avg_every: int | None) -> int:
    """Averaging steps in round r: steps s of the round with (s + 1) % T_c == 0, as the code does."""
    if avg_every is None:
        return 0
    return (round_index + 1) * steps_per_round // avg_every - round_index * steps_per_round // avg_every


def relay_handovers(round_index: int, num_clients: int) -> int:
    """N - 1 hand-overs inside a round, plus the one from the previous round's last client."""
    if num_clients < 2:
        return 0
    return num_clients - 1 + (1 if round_index > 0 else 0)


def traffic(config: Config, model: SplitModel, iterations: int, sent: Exchange | None = None) -> Traffic:
    """The bytes of what `config.algorithm` exchanges (its registry entry's `Exchange`)."""
    sent = exchange(config) if sent is None else sent
    n, b = config.clients, config.batch_size
    sizes = part_sizes(model)
    zero = dict.fromkeys(CATEGORIES, 0)
    per_iteration, per_average = dict(zero), dict(zero)
    if sent.schedule == "central":
        return Traffic(per_iteration, per_average, 0, iterations, None)
    if sent.schedule != "local":  # smashed data and labels up, gradients down, every iteration
        smashed = math.prod(model.smashed_shape) * BYTES_PER_VALUE * b
        per_iteration["smashed_up"] = n * smashed
        per_iteration["labels_up"] = n * b * BYTES_PER_LABEL
        per_iteration["grads_down"] = n * smashed if sent.grads_down else 0
    if sent.schedule == "relay":  # the same exchange, one client after another, and never averaged
        relay = 2 * sizes["client"] * BYTES_PER_VALUE  # up to the server, down to the next client
        return Traffic(per_iteration, per_average, relay, iterations, None)
    if not sent.averaged:
        return Traffic(per_iteration, per_average, 0, iterations, None)
    model_bytes = n * sum(sizes[p] for p in sent.averaged if p in ("client", "server")) * BYTES_PER_VALUE
    local_bytes = n * sum(sizes[p] for p in sent.averaged if p in ("decoder", "aux")) * BYTES_PER_VALUE
    per_average.update(client_weights_up=model_bytes, client_weights_down=model_bytes, aux_weights_up=local_bytes,
                       aux_weights_down=local_bytes)
    if sent.server_copies:
        per_average["server_copies"] = 2 * n * sizes["server"] * BYTES_PER_VALUE
    return Traffic(per_iteration, per_average, 0, iterations, sent.avg_every or iterations)


def round_bytes(t: Traffic, config: Config, round_index: int, active: Sequence[int] | None = None) -> dict[str, int]:
    """Bytes of round `round_index` (from 0) by category. `active`: the clients taking part in each
    iteration (`--round-mode epoch`); by default all of them in every iteration."""
    iterations = t.steps_per_round
    averages = averaging_steps(round_index, iterations, t.avg_every)
    client_steps = iterations * config.clients if active is None else sum(active)  # one client's batch each
    out = {k: t.per_iteration[k] // config.clients * client_steps + averages * t.per_average[k] for k in CATEGORIES}
    out["relay"] = relay_handovers(round_index, config.clients) * t.relay_bytes
    return out
