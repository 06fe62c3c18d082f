"""How a run is carried out, as opposed to what it simulates (`Config`): one typed object that
`lfmsl.run` takes from the command line, the sweep, the scripts and the notebook alike.

None of these change a run's results, so none is part of its configuration (config.json); each
is declared once here with its command-line help, like the `Config` fields.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lfmsl.config import POSITIVE_INT, option
from lfmsl.errors import UsageError

IO = "input and output"
DEFAULT_CHECKPOINT_EVERY = 1  # rounds: a save costs well under 1% of a CPU round (docs/DETERMINISM.md)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Everything `lfmsl.run` needs besides the configuration, the folder and the data."""

    checkpoint_every: int = option(
        DEFAULT_CHECKPOINT_EVERY, IO, metavar="K", kind=POSITIVE_INT,
        help="save the whole state every K rounds, at the end, and on Ctrl-C or SIGTERM")
    manual_dir: str | Path | None = option(
        None, IO, metavar="DIR", default_help="$LFMSL_MANUAL_DIR",
        help="folder with one subfolder per dataset of its original files, for tfds without internet")
    data_dir: str | Path | None = option(
        None, IO, metavar="DIR", default_help="$LFMSL_DATA_DIR or ~/tensorflow_datasets", help="tfds data folder")
    progress: bool = option(True, IO, help="no progress bar (one line per round instead)")
    allow_divergence: bool = option(
        False, IO,
        help=("go on when the training loss explodes while staying finite (above 1e3, or 100 times round 1's); by "
              "default the run stops there with exit status 3, as on a NaN loss, which always stops"))
    runs_per_program: int | None = option(
        None, IO, metavar="K", kind=POSITIVE_INT, default_help="as many as fit on a GPU or TPU, 1 on a CPU",
        help=("a sweep trains at most K runs that differ only in --seed, --lr, --client-lr, --server-lr, --mix-alpha "
              "or --loc-weight as one program (docs/PERFORMANCE.md#many-runs-one-program); 1: each run alone"))
    profile: str | Path | None = option(
        None, IO, metavar="DIR",
        help=("write a jax.profiler trace of the run's second round to DIR (each process's to DIR/process-K), for "
              "TensorBoard's profile tab, Perfetto or scripts/profile_round.py --trace DIR"))
    how_to_continue: str | None = None  # ends an interrupted run's message; None: `lfmsl run --resume` of its folder

    def load_dataset(self, name: str):
        """The dataset `name`, from the data folders these options name."""
        from lfmsl.io.data import load_dataset

        return load_dataset(name, manual_dir=self.manual_dir, data_dir=self.data_dir)

    def __post_init__(self):
        if not POSITIVE_INT.accepts(self.checkpoint_every):
            raise UsageError(f"--checkpoint-every must be a positive number of rounds, got {self.checkpoint_every}")
        if self.runs_per_program is not None and not POSITIVE_INT.accepts(self.runs_per_program):
            raise UsageError(f"--runs-per-program must be a positive number of runs, got {self.runs_per_program}")
