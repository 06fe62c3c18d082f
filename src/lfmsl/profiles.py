"""Simulated devices and links: named profiles of compute speed and link rate for the latency model."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Profile:
    """Device speeds (FLOP/s) and per-client link rates (Mbit/s)."""

    client_flops: float
    server_flops: float
    uplink_mbps: float
    downlink_mbps: float


# Named profiles [default]; illustrative settings, not measurements of real devices.
PROFILES = {
    "default": Profile(client_flops=10e9, server_flops=1e12, uplink_mbps=100.0, downlink_mbps=100.0),
    "iot": Profile(client_flops=1e9, server_flops=1e12, uplink_mbps=10.0, downlink_mbps=50.0),
    "edge": Profile(client_flops=100e9, server_flops=10e12, uplink_mbps=1000.0, downlink_mbps=1000.0),
}
