"""Simulated latency: the time a round would take on real devices and links.

The model is the one in docs/ALGORITHMS.md [default; the paper's own is not available]. For
the parallel algorithms one iteration takes

    T = B*F_c/f_c + B*(q + l)/R_up + (N*B + M)*F_s/f_s + B*q/R_down

F_c and F_s are forward+backward FLOPs per sample of the client side (lower segment, plus its
decoder or auxiliary head where the algorithm has one) and of the server segment, counted as
BACKWARD_FACTOR = 3 times the forward FLOPs that `models.flops_per_sample` reads from XLA's
cost analysis. q is the smashed data per sample and l the label, in bits; M = N*n_s*B mixed
samples where the server mixes. Per algorithm:
- LocFedMix-SL: the client's decoder pass (forward and backward) runs while the client waits
  for the server's answer (upload, server step, download), as the specification allows:
  T = B*F_c/f_c + max(B*F_dec/f_c, upload + server + download). `--no-overlap` adds it serially.
- LocSplitFed: no download and no waiting; clients, uplink and server work as a pipeline, so
  an iteration takes as long as its slowest stage. `--no-overlap` sums the stages instead.
- SFL-V2: the server serves the clients one after another, sum_i B*F_s/f_s (under a pure
  throughput model this equals the batched server time of PSL).
- Sequential SL: the single-client time summed over all clients, plus the relay: each
  hand-over moves the client model up to the server and down to the next client.
- Averaging adds one upload and one download of every client's averaged parts (in parallel
  over clients) at each averaging step. SFL-V1's server copies stay at the server: no link.
- FedAvg: the full model trains on the client; centralized: on the server, no links.
Every client runs at the profile's speeds; with `--device-spread` each has its own (devices.py).
This simulated time is kept apart from the simulator's own wall-clock time (`wall_time_s`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

from lfmsl.costs import comm
from lfmsl.algorithms import Exchange, exchange
from lfmsl.config import Config
from lfmsl.datasets import spec
from lfmsl.models import SplitModel, default_model_for, flops_per_sample, get_model
from lfmsl.profiles import PROFILES, Profile

BACKWARD_FACTOR = 3.0  # forward + backward = 3 x forward (backward ~ 2 x forward)
BITS_PER_BYTE = 8


def profile_for(config: Config) -> Profile:
    """The named profile with any value the configuration sets overriding it."""
    base = PROFILES[config.latency_profile]
    overrides = {f.name: getattr(config, f.name) for f in dataclasses.fields(Profile)
                 if getattr(config, f.name) is not None}
    return dataclasses.replace(base, **overrides)


def model_for(config: Config) -> SplitModel:
    """The run's split model, built from the configuration alone (no data needed)."""
    shape, classes = spec(config.dataset).image_shape, spec(config.dataset).num_classes
    return get_model(config.model or default_model_for(config.dataset), shape, classes, config.conv, config.cut)


@functools.lru_cache(maxsize=None)
def forward_flops(model: SplitModel) -> dict[str, float]:
    """Forward FLOPs per sample of each part (compiled once per model).

    Counted on the reference implementation (XLA's own convolutions), so the simulated devices'
    work is the model's, not that of the formulation the simulator happens to compute it with.
    """
    return flops_per_sample(get_model(model.name, model.input_shape, model.num_classes, conv_impl="xla", cut=model.cut))


def _link_seconds(num_bytes: float, mbps: float) -> float:
    return num_bytes * BITS_PER_BYTE / (mbps * 1e6)


@dataclasses.dataclass(frozen=True)
class Timing:
    """Simulated seconds of one iteration, one averaging step and one relay hand-over."""

    per_iteration: float
    per_average: float
    per_relay: float


@dataclasses.dataclass(frozen=True)
class Stages:
    """Simulated seconds of each stage of one iteration, for one client at the profile's speeds:
    what the latency model combines (`timing`, and per client with `--device-spread`, devices.py)."""

    schedule: str  # the Exchange's: parallel, relay, local or central
    central: float  # the whole model's pass on the server (centralized)
    local_model: float  # the whole model's pass on a client (FedAvg)
    client: float  # the lower segment's forward and backward pass
    local_pass: float  # the decoder's or auxiliary head's pass (0 if none)
    up: float  # smashed data and labels up
    down: float  # gradients down
    server_step: float  # the server's pass on one client's batch
    mixed_per_client: int
    grads_down: bool
    overlap: bool
    average_up: float  # one averaging step: the client's averaged parts up
    average_down: float  # and down
    relay_up: float  # one hand-over (sequential SL): the client model up
    relay_down: float  # and down to the next client


def stages(config: Config, model: SplitModel, traffic: comm.Traffic, profile: Profile,
           sent: Exchange | None = None) -> Stages:
    """The stage times of what `config.algorithm` exchanges (see the module docstring)."""
    sent = exchange(config) if sent is None else sent
    flops = forward_flops(model)
    clients, b = config.clients, config.batch_size
    full = BACKWARD_FACTOR * (flops["client"] + flops["server"])
    per_client = lambda *categories: sum(traffic.per_iteration[c] for c in categories) / clients
    averaged = lambda *categories: sum(traffic.per_average[c] for c in categories) / clients
    return Stages(
        schedule=sent.schedule,
        central=b * full / profile.server_flops,
        local_model=b * full / profile.client_flops,
        client=b * BACKWARD_FACTOR * flops["client"] / profile.client_flops,
        local_pass=b * BACKWARD_FACTOR * flops[sent.local] / profile.client_flops if sent.local else 0.0,
        up=_link_seconds(per_client("smashed_up", "labels_up"), profile.uplink_mbps),
        down=_link_seconds(per_client("grads_down"), profile.downlink_mbps),
        server_step=b * BACKWARD_FACTOR * flops["server"] / profile.server_flops,
        mixed_per_client=sent.mixed_per_client,
        grads_down=sent.grads_down,
        overlap=config.overlap,
        average_up=_link_seconds(averaged("client_weights_up", "aux_weights_up"), profile.uplink_mbps),
        average_down=_link_seconds(averaged("client_weights_down", "aux_weights_down"), profile.downlink_mbps),
        relay_up=_link_seconds(traffic.relay_bytes / 2, profile.uplink_mbps),
        relay_down=_link_seconds(traffic.relay_bytes / 2, profile.downlink_mbps),
    )


def timing(config: Config, model: SplitModel, traffic: comm.Traffic, profile: Profile, active: int | None = None,
           sent: Exchange | None = None) -> Timing:
    """The latency model of what `config.algorithm` exchanges (see the module docstring), for an
    iteration in which `active` clients take part (default: all; fewer in `--round-mode epoch`)."""
    st = stages(config, model, traffic, profile, sent)
    n = config.clients if active is None else active
    if st.schedule == "central":
        return Timing(st.central, 0.0, 0.0)
    per_average = st.average_up + st.average_down
    if st.schedule == "local":
        return Timing(st.local_model, per_average, 0.0)
    client, local_pass, up, down, server_step = st.client, st.local_pass, st.up, st.down, st.server_step
    if st.schedule == "relay":  # one client at a time, each through the server alone
        return Timing(n * (client + up + server_step + down), 0.0, st.relay_up + st.relay_down)
    mixed = n * st.mixed_per_client
    server = (n + mixed) * server_step  # SFL-V2's one-after-another sum is the same total
    if not st.grads_down:  # LocSplitFed: no download, no waiting: a pipeline of its three stages
        pipeline = max(client + local_pass, up, server) if st.overlap else client + local_pass + up + server
        return Timing(pipeline, per_average, 0.0)
    wait = up + server + down  # for the server's answer; the decoder's pass fits in it where it overlaps
    return Timing(client + (max(local_pass, wait) if st.overlap else local_pass + wait), per_average, 0.0)


def summary_fields(history: Sequence[dict], target: float | None) -> dict:
    """Total cost of a run and, with a target accuracy, what it took to reach it."""
    if not history:
        return {}
    last = history[-1]
    out = {"sim_latency_s": last["sim_latency_s"], "comm_bytes": last["comm_bytes"], "target_accuracy": target}
    reached = next((r for r in history if target is not None and r["test_accuracy"] >= target), None)
    out["rounds_to_target"] = reached["round"] if reached else None
    out["sim_latency_to_target_s"] = reached["sim_latency_s"] if reached else None
    out["wall_time_to_target_s"] = reached.get("wall_time_s") if reached else None
    return out
