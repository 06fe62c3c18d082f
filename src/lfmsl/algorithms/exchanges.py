"""What an algorithm sends over the clients' links: the one description of an algorithm that the ledger,
the latency model and the threat model read, so none of them needs to know the algorithm itself."""

from __future__ import annotations

import dataclasses

SCHEDULES = ("parallel", "relay", "local", "central")


@dataclasses.dataclass(frozen=True)
class Exchange:
    """What an algorithm sends over the clients' links, and how its server works.

    schedule: "parallel" (every client each iteration, through the server), "relay" (one client
    at a time, the client model handed on: sequential SL), "local" (whole models trained on the
    clients, only averaging crosses the links: FedAvg) or "central" (one learner at the server).
    averaged: the model parts ("client", "server", "decoder", "aux") every client sends up and gets
    back at each averaging step, every `avg_every` iterations (None: once per round).
    """

    schedule: str = "parallel"
    grads_down: bool = True  # split-layer gradients, server -> clients
    local: str | None = None  # the client's extra part, computed every iteration: "decoder" | "aux"
    averaged: tuple[str, ...] = ()
    avg_every: int | None = None
    server_copies: bool = False  # per-client server copies averaged at the server (SFL-V1): no link
    mixed_per_client: int = 0  # mixed samples per client sample the server also trains on (n_s)
    sequential_server: bool = False  # one server step per client batch (SFL-V2)

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")
        unknown = [p for p in self.averaged if p not in ("client", "server", "decoder", "aux")]
        if unknown or (self.local is not None and self.local not in ("decoder", "aux")):
            raise ValueError(f"unknown model parts in {self}")

    @property
    def splits_clients(self) -> bool:
        """Whether the clients train side by side (so they can be split over devices)."""
        return self.schedule in ("parallel", "local")
