"""`lfmsl run --profile DIR`: a jax.profiler trace of one round, to see where its time goes (TensorBoard's
profile tab, Perfetto, or `scripts/profile_round.py --trace DIR`).

The round traced is the session's second: the first after the compile and its warm-up. It runs as a checkpoint
segment of its own, so the trace holds that round's work and nothing of a checkpoint's save. Each process of a
distributed run writes its own trace, in DIR/process-K. The traced round's `round_time_s` includes the tracer's
overhead.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import ContextManager


class RoundProfile:
    """Which round to trace, given the rounds done when the session started, and the trace around it; with no
    `folder` (no --profile), none."""

    def __init__(self, folder: str | Path | None, session_start: int):
        self.folder = None if folder is None else Path(folder)
        self.round = session_start + 1  # rounds done before the traced one

    def segment_end(self, done: int, end: int) -> int:
        """`end`, moved so that the traced round is a segment of its own."""
        if self.folder is None or done > self.round:
            return end
        return min(end, self.round + 1 if done == self.round else self.round)

    def around(self, done: int) -> ContextManager:
        """The trace, where the segment starting after `done` rounds is the traced round."""
        if self.folder is None or done != self.round:
            return contextlib.nullcontext()
        import jax

        from lfmsl.core import processes

        folder = self.folder / f"process-{jax.process_index()}" if processes.count() > 1 else self.folder
        return jax.profiler.trace(str(folder), create_perfetto_trace=True)
