"""TensorBoard scalars of a run, drawn from the same records as metrics.jsonl (which stays the record).

`<run>/tensorboard/rounds/` holds every numeric field of each round's record at step = round; nested
counts become `comm_breakdown/smashed_up` and so on. `<run>/tensorboard/simulated_latency/` holds the
accuracy and loss fields again, tagged `vs_latency_ms/...`, at step = the simulated latency so far in
milliseconds: TensorBoard's x axis is an integer step, so that is how a second axis is drawn. Two
folders, because TensorBoard treats a step that goes back within one event file as a restart.

Events are written synchronously (tensorboardX's record writer, no background thread), flushed every
round, so a signal or a crash loses no round that metrics.jsonl holds. On resume the folder is rebuilt
from the checkpoint's history, so a round that is recomputed appears once.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Iterator, Sequence

ROUNDS = "rounds"
LATENCY = "simulated_latency"
LATENCY_PREFIX = "vs_latency_ms/"
LATENCY_METRICS = ("test_accuracy", "test_loss", "train_loss")
SKIPPED = ("round",)  # the step itself


def scalars(record: dict, prefix: str = "") -> Iterator[tuple[str, float]]:
    """(tag, value) for every number in a round's record, nested dicts flattened with '/'."""
    for name, value in record.items():
        if name in SKIPPED and not prefix:
            continue
        if isinstance(value, dict):
            yield from scalars(value, f"{prefix}{name}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{name}", float(value)


def latency_step(record: dict) -> int:
    """The simulated latency so far, in whole milliseconds (0 if it is not finite)."""
    latency = record["sim_latency_s"]
    return int(round(1000 * latency)) if math.isfinite(latency) else 0


class TensorBoardLog:
    """The event files of one session of a run (created afresh, holding `history`, by the constructor)."""

    def __init__(self, directory: str | Path, history: Sequence[dict] = ()):
        from tensorboardX import RecordWriter
        from tensorboardX.proto.event_pb2 import Event

        self.directory = Path(directory)
        shutil.rmtree(self.directory, ignore_errors=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.lfmsl"
        self._writers = {}
        for stream in (ROUNDS, LATENCY):
            (self.directory / stream).mkdir(parents=True)
            self._writers[stream] = RecordWriter(str(self.directory / stream / name))
            self._write(stream, Event(wall_time=time.time(), file_version="brain.Event:2"))
        for record in history:
            self.add(record, flush=False)
        self.flush()

    def add(self, record: dict, flush: bool = True) -> None:
        """One round's scalars on both axes."""
        values = list(scalars(record))
        self._add(ROUNDS, int(record["round"]), values)
        latency = [(LATENCY_PREFIX + tag, value) for tag, value in values if tag in LATENCY_METRICS]
        if "sim_latency_s" in record and latency:
            self._add(LATENCY, latency_step(record), latency)
        if flush:
            self.flush()

    def _add(self, stream: str, step: int, values: list[tuple[str, float]]) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary

        summary = Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, value in values])
        self._write(stream, Event(wall_time=time.time(), step=step, summary=summary))

    def _write(self, stream: str, event) -> None:
        self._writers[stream].write(event.SerializeToString())

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
