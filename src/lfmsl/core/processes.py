"""Several processes as one run (`jax.distributed`): joining them, bounding how long a lost one can hold the
others, which process writes, and checking that all of them were started alike.

One process per host (or, on one machine, per group of devices: `lfmsl launch`) runs the same command; JAX's
runtime connects them, and the clients mesh (sharding.py) spans every process's devices. Where to find the others
comes from the environment: `JAX_COORDINATOR_ADDRESS` (host:port of process 0), `JAX_NUM_PROCESSES` and
`JAX_PROCESS_ID`, or, where those are not set, what jax detects on a cluster (SLURM, Cloud TPU, ...).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import socket
import sys
import threading
import time
from typing import Callable, TypeVar

from lfmsl.errors import UsageError, first_line

T = TypeVar("T")
ADDRESS, COUNT, INDEX = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"
# How long a process waits for the others to join, and after how long without a sign of life (or, on the CPU,
# inside one collective) a process counts as lost; then every other one stops with an error instead of waiting.
JOIN_TIMEOUT_S = int(os.environ.get("LFMSL_JOIN_TIMEOUT_S", "60"))
LOST_AFTER_S = int(os.environ.get("LFMSL_LOST_AFTER_S", "10"))
JOIN_MARGIN_S = 10  # jax's own join timeout comes this much after lfmsl's, which ends the process in one line


def _from_environment() -> dict:
    """jax.distributed.initialize's arguments from lfmsl's environment variables; {} where they are not set."""
    values = {}
    if os.environ.get(COUNT) or os.environ.get(INDEX):
        try:
            values = {"num_processes": int(os.environ[COUNT]), "process_id": int(os.environ[INDEX])}
        except (KeyError, ValueError):
            raise UsageError(f"--distributed: set both {COUNT} and {INDEX} to whole numbers (got "
                             f"{COUNT}={os.environ.get(COUNT)!r}, {INDEX}={os.environ.get(INDEX)!r})") from None
        if not 0 <= values["process_id"] < values["num_processes"]:
            raise UsageError(f"--distributed: {INDEX}={values['process_id']} is not one of the "
                             f"{values['num_processes']} processes 0 to {values['num_processes'] - 1}")
        if not os.environ.get(ADDRESS):
            raise UsageError(f"--distributed: {COUNT} and {INDEX} are set, but not {ADDRESS} (host:port of process 0)")
    return values


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Refuse, in one line, a coordinator that cannot be reached: jax's own wait ends in an abort of the process."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise UsageError(f"--distributed: {ADDRESS}={address!r} is not host:port")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host or "localhost", int(port)), timeout=2):
                return
        except OSError as error:
            if time.monotonic() > deadline:
                raise UsageError(f"--distributed: no coordinator answers at {address} after {timeout_s:.0f} s "
                                 f"({error.strerror or error}); start process 0 first, or check {ADDRESS}") from None
            time.sleep(0.2)


def _not_joined(processes: int | None) -> None:
    """The watchdog's line where the processes did not all join in time (process 0 waits for the others in
    jax.distributed.initialize, which would abort the process); then exit status 2 at once."""
    count = f"the {processes} processes" if processes else "the processes"
    print(f"lfmsl: error: --distributed: {count} of the run did not all join within {JOIN_TIMEOUT_S} s "
          f"(LFMSL_JOIN_TIMEOUT_S); start each of them with the same {ADDRESS} and {COUNT}, each with its own "
          f"{INDEX}", file=sys.stderr, flush=True)
    os._exit(2)


def initialize() -> None:
    """Join the other processes of the run, before JAX touches a device. A process that stops answering for
    LOST_AFTER_S stops the others; on the CPU so does a collective that waits that long (a process alive but stuck:
    XLA's flag, known from jaxlib 0.10 on)."""
    import jax
    import jaxlib

    explicit = _from_environment()
    flags = os.environ.get("XLA_FLAGS", "")
    knows_timeout = tuple(map(int, jaxlib.__version__.split(".")[:2])) >= (0, 10)
    if "xla_cpu_collective_timeout_seconds" not in flags and knows_timeout:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_collective_timeout_seconds={LOST_AFTER_S}".strip()
    # SIGINT and SIGTERM are lfmsl's to handle (stopping.py): jax's preemption service would swallow SIGTERM
    with contextlib.suppress(AttributeError, KeyError):
        jax.config.update("jax_enable_preemption_service", False)
    if explicit and explicit["process_id"] != 0:
        _wait_for_coordinator(os.environ[ADDRESS], JOIN_TIMEOUT_S)
    watchdog = threading.Timer(JOIN_TIMEOUT_S, _not_joined, args=(explicit.get("num_processes"),))
    watchdog.daemon = True
    watchdog.start()
    # older jax (0.6.1) has no such arguments: its heartbeat then notices a silent process after 100 s (a killed one's
    # collectives fail at once either way)
    known = inspect.signature(jax.distributed.initialize).parameters
    timeouts = {name: LOST_AFTER_S for name in ("heartbeat_timeout_seconds", "shutdown_timeout_seconds")
                if name in known}
    try:  # jax's own timeout, later than the watchdog's, aborts the process with a C++ stack
        jax.distributed.initialize(initialization_timeout=JOIN_TIMEOUT_S + JOIN_MARGIN_S, **timeouts, **explicit)
    except (RuntimeError, ValueError) as error:
        raise UsageError(f"--distributed: jax.distributed.initialize() failed ({error}); start one process per host "
                         f"with {ADDRESS}, {COUNT} and {INDEX} set, or the cluster's own environment (docs/SCALING.md)"
                         ) from None
    finally:
        watchdog.cancel()
    from lfmsl.stopping import StopRequests

    StopRequests.shared = any_process


def any_process(asked: bool) -> bool:
    """Whether any process says yes (a stop asked of one of them): a small collective every process makes."""
    import numpy as np
    from jax.experimental import multihost_utils

    return bool(np.any(np.asarray(multihost_utils.process_allgather(np.int32(asked)))))


LOST_EXIT = 6  # the exit status of a process that lost another process of its run


def lost_contact(error: BaseException) -> str | None:
    """The one line to say, where `error` is JAX's runtime reporting that another process of the run is gone (its
    collectives or the coordination service fail); None for any other error."""
    text = str(error)
    markers = ("Gloo", "coordination service", "heartbeat", "Connection reset by peer", "Socket closed")
    if count() > 1 and type(error).__name__ in ("JaxRuntimeError", "XlaRuntimeError") and any(
            marker in text for marker in markers):
        return f"lost contact with another process of the run ({first_line(error, 160)})"
    return None


def count() -> int:
    import jax

    return jax.process_count()


def writes() -> bool:
    """Whether this process writes the run's folder: process 0 alone, so the others write nothing there."""
    import jax

    return jax.process_index() == 0


def agree(what: str, text: str) -> None:
    """Check that every process has the same `text` (its configuration, say); a UsageError on every process
    where they differ, so that processes started with other flags stop at once rather than compute apart."""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return
    digest = np.frombuffer(hashlib.sha256(text.encode()).digest()[:8], np.uint32)
    every = np.asarray(multihost_utils.process_allgather(digest))
    differing = [i for i, row in enumerate(every) if not np.array_equal(row, every[0])]
    if differing:
        raise UsageError(f"the processes were started with different {what}: process 0's differs from process "
                         f"{', '.join(map(str, differing))}'s; start every process with the same command")


def decided_by_first(decide: Callable[[], T]) -> T:
    """What process 0's `decide()` returns (a JSON value), on every process: the others do not call it but follow
    it, and where it raises a UsageError (a folder that holds another run, say) every process raises it, so that
    all of them stop at once with the same line instead of computing on without process 0."""
    if count() == 1:
        return decide()
    import json

    import numpy as np
    from jax.experimental import multihost_utils

    raised, text = None, ""
    if writes():
        try:
            text = json.dumps({"value": decide()})
        except UsageError as error:
            raised, text = error, json.dumps({"error": str(error)})
    payload = np.frombuffer(text.encode(), np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.int32(payload.size)))
    payload = np.asarray(multihost_utils.broadcast_one_to_all(  # older jax hands it back as wider integers
        payload if writes() else np.zeros(size, np.uint8))).astype(np.uint8)
    if raised is not None:
        raise raised
    outcome = json.loads(bytes(payload).decode())
    if "error" in outcome:
        raise UsageError(outcome["error"])
    return outcome["value"]
