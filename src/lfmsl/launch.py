"""`lfmsl launch --processes N -- run ARGS`: one run as N processes on this machine, joined by jax.distributed.

Each process is `python -m lfmsl run --distributed ARGS` with the coordinator (a free port on localhost), the
process count and its index in its environment (core/processes.py), and on the CPU `--devices-per-process`
devices of its own. Process 0's output is shown as it comes; the others' is kept, and each line of theirs that
process 0 did not print is shown once at the end, with the process named. Ctrl-C and SIGTERM reach every
process. Where a process ends with an error, the others get processes.LOST_AFTER_S and a few seconds more to end
by themselves, then are stopped; the launcher's exit status is the worst of theirs.

`--own-runs` (a sweep only) gives each process runs of its own instead: the processes are separate sweeps over
the same grid, which share its runs out through the run folders' locks (io/runlock.py), each on its own devices,
with no jax.distributed; once all have ended, the launcher writes the tables.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Sequence

from lfmsl.errors import UsageError

COMMANDS = ("run", "sweep")
GRACE_S = 5.0  # beyond processes.LOST_AFTER_S, before a launcher stops processes left running
# What the runtime prints that says nothing to a user: gloo's connection notes and the frames of a C++ stack
NOISE = re.compile(r"^(\[Gloo\] |\s+@\s+0x|\*\*\* Check failure stack trace|PC: @|\*\*\* SIG)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def process_environment(index: int, processes: int, address: str | None, devices: int | None) -> dict[str, str]:
    """Process `index`'s environment: where the coordinator is, how many processes, which one it is (not for
    processes of their own: `address` None), and on the CPU how many devices it makes."""
    from lfmsl.core.processes import ADDRESS, COUNT, INDEX

    env = dict(os.environ)
    if address is not None:
        env.update({ADDRESS: address, COUNT: str(processes), INDEX: str(index)})
    if devices is not None:
        flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
        env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
    return env


def given_command(arguments: Sequence[str]) -> list[str]:
    """ARGS after `--`: `run ...` or `sweep ...`."""
    arguments = list(arguments)
    if arguments[:1] == ["--"]:
        arguments = arguments[1:]
    if not arguments or arguments[0] not in COMMANDS:
        raise UsageError("lfmsl launch: give the command to run after '--', e.g. lfmsl launch --processes 2 -- run "
                         "--algorithm psl --clients 8")
    return arguments


def command_of(arguments: Sequence[str], own_runs: bool = False) -> list[str]:
    """The lfmsl command every process runs: ARGS after `--`, with --distributed added (with `own_runs`, a sweep
    that leaves the tables to the launcher)."""
    arguments = given_command(arguments)
    if own_runs:
        if arguments[0] != "sweep" or "--distributed" in arguments:
            raise UsageError("lfmsl launch: --own-runs shares out the runs of a sweep: give '-- sweep ARGS' without "
                             "--distributed")
        arguments.insert(1, "--no-tables")
    elif "--distributed" not in arguments:
        arguments.insert(1, "--distributed")
    return [sys.executable, "-m", "lfmsl", *arguments]


def worst(statuses: Sequence[int]) -> int:
    """The exit status that says most: an error over success, a signal's 128 + N for a process killed by one."""
    codes = [128 - s if s < 0 else s for s in statuses]
    return max(codes, key=lambda c: (c != 0, c != 130, c))


def launch(processes: int, devices: int | None, arguments: Sequence[str], lost_after_s: float | None = None,
           own_runs: bool = False, parse: Callable[[Sequence[str]], argparse.Namespace] | None = None) -> int:
    """Start the processes, relay signals, wait, and return the worst exit status. With `own_runs`, the sweep's
    arguments are read with `parse` (the command line's parser) and its grid checked before any process starts,
    and its tables are written after."""
    from lfmsl.core.processes import LOST_AFTER_S

    if processes < 1:
        raise UsageError(f"lfmsl launch: --processes must be a positive number, got {processes}")
    if devices is not None and devices < 1:
        raise UsageError(f"lfmsl launch: --devices-per-process must be a positive number, got {devices}")
    command = command_of(arguments, own_runs)
    sweep = parse(command[3:]) if own_runs else None  # a bad flag or grid: one line, before any process starts
    if sweep is not None:
        from lfmsl.experiments.sweep import check_grid, grid

        check_grid(grid(vars(sweep)))
    address = None if own_runs else f"localhost:{free_port()}"
    logs = [None] + [tempfile.TemporaryFile("w+") for _ in range(processes - 1)]
    children = [subprocess.Popen(command, env=process_environment(i, processes, address, devices), text=True,
                                 stdout=subprocess.PIPE if i == 0 else logs[i],
                                 stderr=subprocess.PIPE if i == 0 else subprocess.STDOUT)
                for i in range(processes)]
    shown: set[str] = set()  # process 0's lines, shown as they come
    echoes = [threading.Thread(target=_echo, args=(stream, into, shown), daemon=True)
              for stream, into in ((children[0].stdout, sys.stdout), (children[0].stderr, sys.stderr))]
    for echo in echoes:
        echo.start()
    relayed = {}

    def relay(signum, _frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        relayed[signum] = signal.signal(signum, relay)
    try:
        # processes of one run stop together; sweeps with runs of their own go on without one that failed
        patience_s = math.inf if own_runs else (LOST_AFTER_S if lost_after_s is None else lost_after_s) + GRACE_S
        statuses = _wait(children, patience_s)
    finally:
        for signum, handler in relayed.items():
            signal.signal(signum, handler)
    for echo in echoes:
        echo.join(timeout=5)
    _show_others(logs, statuses, shown)
    if sweep is not None and all(0 <= status < 128 for status in statuses):  # not stopped by a signal or Ctrl-C
        from lfmsl.experiments.runner import log
        from lfmsl.experiments.sweep import tables_command

        statuses.append(tables_command(sweep, log))
    return worst(statuses)


def _echo(stream, into, shown: set[str]) -> None:
    """Pass process 0's lines on as they come, but the runtime's noise, and remember them."""
    for line in stream:
        if NOISE.match(line):
            continue
        into.write(line)
        into.flush()
        shown.add(line.rstrip())


def _wait(children: list[subprocess.Popen], patience_s: float) -> list[int]:
    """Every child's exit status; once one has failed, those still running after `patience_s` are stopped."""
    failed_at = None
    while any(child.poll() is None for child in children):
        if failed_at is None and any(child.returncode not in (None, 0) for child in children):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > patience_s:
            for child in children:
                if child.poll() is None:
                    child.kill()
        time.sleep(0.1)
    return [child.returncode for child in children]


def _show_others(logs: list, statuses: list[int], seen: set[str]) -> None:
    """What processes 1.. printed and process 0 did not (`seen`): their own errors, once each."""
    for index, log in enumerate(logs[1:], start=1):
        log.seek(0)
        lines = [line.rstrip() for line in log if line.strip() and not NOISE.match(line)]
        log.close()
        errors = [line for line in lines if "error" in line.lower() or "Traceback" in line]
        if statuses[index] != 0 and not errors and lines:
            errors = lines[-1:]
        if statuses[index] < 0:
            errors.append(f"ended by signal {-statuses[index]} ({signal.Signals(-statuses[index]).name})")
        for line in errors:
            if line not in seen:
                seen.add(line)
                print(f"lfmsl launch: process {index}: {line}", file=sys.stderr, flush=True)
