"""One run folder, read and written in one place.

A run folder holds `config.json` (the configuration, written before any work) and
`data_sources.json` (the data folders, reused on resume), `metrics.jsonl` (one line per round,
appended as each round ends), `checkpoints/` (see `lfmsl.io.checkpoint`; any that failed to read
are moved into `checkpoints.unreadable/`), and, once the run has done all its rounds,
`summary.json` and `accuracy.png` (and `privacy.png` with --privacy-every); `tensorboard/` holds the metrics again as
TensorBoard scalars (see `lfmsl.io.tensorboard`). Whether a run is finished and whether it
is the same run as a configuration are decided here only (`RunDir.finished`).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from lfmsl.io.atomic import write_text
from lfmsl.config import Config
from lfmsl.errors import UsageError

if TYPE_CHECKING:
    from lfmsl.io.tensorboard import TensorBoardLog

CONFIG_FILE = "config.json"
SOURCES_FILE = "data_sources.json"  # --manual-dir and --data-dir, reused by --resume unless given again
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
PLOT_FILE = "accuracy.png"
PRIVACY_PLOT_FILE = "privacy.png"  # with --privacy-every: the probes and what each attack rebuilt of them
PRIVACY_IMAGES_FILE = "privacy_images.npz"  # the same images as 8-bit arrays, for a study's figures
TENSORBOARD_DIR = "tensorboard"  # derived from the metrics, rebuilt on resume
CHECKPOINT_DIR = "checkpoints"
UNREADABLE_DIR = "checkpoints.unreadable"  # checkpoints that failed to read, moved aside (lfmsl.io.checkpoint)
RUN_FILES = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, CHECKPOINT_DIR, UNREADABLE_DIR)  # what makes a folder a run's
RESUMABLE = ("rounds",)  # options that may differ when a run is resumed (more rounds extend it)


class DamagedRun(UsageError):
    """A run's summary.json or metrics.jsonl does not read back whole (a truncated or edited file)."""


class RunDir:
    """The files of the run in `path` (which need not exist yet)."""

    writes = True  # False for `Observed`: a process of a distributed run other than process 0

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def observed(self) -> "Observed":
        """This folder as a process that reads it and leaves the writing to another (process 0)."""
        return Observed(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @classmethod
    def new(cls, base: str | Path, algorithm: str, dataset: str) -> "RunDir":
        """A fresh folder name such as runs/locfedmix-fashion_mnist-20261124-101500 (not created)."""
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path, suffix = Path(base) / f"{algorithm}-{dataset}-{stamp}", 1
        while path.exists():
            suffix += 1
            path = Path(base) / f"{algorithm}-{dataset}-{stamp}-{suffix}"
        return cls(path)

    @classmethod
    def find(cls, path: str | Path) -> list["RunDir"]:
        """The run in `path` if it has a summary, else those of its subfolders that have one (a sweep's folder)."""
        folder = cls(path)
        if folder.summary_path.exists():
            return [folder]
        return [cls(p) for p in sorted(Path(path).iterdir()) if cls(p).summary_path.exists()]

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def plot_path(self) -> Path:
        return self.path / PLOT_FILE

    @property
    def privacy_plot_path(self) -> Path:
        return self.path / PRIVACY_PLOT_FILE

    def discard_unstarted(self) -> None:
        """Remove this folder if no run started in it (no config.json: refused before any work), with what the
        attempt left (its lock, an empty checkpoints folder)."""
        import shutil

        if self.path.is_dir() and not (self.path / CONFIG_FILE).exists() and not (self.path / METRICS_FILE).exists():
            shutil.rmtree(self.path, ignore_errors=True)

    def write_privacy_images(self, images: dict) -> None:
        """The last leakage measurement's images (each in [0, 1]) as 8-bit arrays, written atomically."""
        import io

        import numpy as np

        from lfmsl.io.atomic import write_bytes

        buffer = io.BytesIO()
        np.savez_compressed(buffer, **{name: np.round(np.clip(v, 0, 1) * 255).astype(np.uint8)
                                       for name, v in images.items()})
        write_bytes(self.path / PRIVACY_IMAGES_FILE, buffer.getvalue())

    def privacy_images(self) -> dict | None:
        """The images `write_privacy_images` wrote, back in [0, 1]; None where there are none."""
        import numpy as np

        path = self.path / PRIVACY_IMAGES_FILE
        if not path.is_file():
            return None
        with np.load(path) as stored:
            return {name: stored[name].astype(np.float32) / 255 for name in stored.files}

    @property
    def tensorboard_path(self) -> Path:
        return self.path / TENSORBOARD_DIR

    @property
    def checkpoints(self) -> Path:
        """The folder of the run's orbax checkpoints (`checkpoint.Checkpoints` manages it)."""
        return self.path / CHECKPOINT_DIR

    def create(self) -> "RunDir":
        """Create the folder for a fresh run; refuse one that holds anything of a run (a fresh run
        never restores, extends or overwrites what another run left)."""
        found = self.run_files()
        if found and self.config_path.exists():
            raise UsageError(f"{self.path} already holds {', '.join(found)} of a run; continue that run with "
                             f"--resume {self.path} if it is this one, or choose another --out")
        if found:
            raise self.not_resumable(found)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".lfmsl-write-test"
            probe.touch()
            probe.unlink()
        except OSError as error:
            raise _unwritable(self.path, error) from None
        return self

    def run_files(self) -> list[str]:
        """The files of a run that the folder holds (an empty folder is nothing)."""
        holds = lambda entry: any(entry.iterdir()) if entry.is_dir() else entry.exists()
        return [name for name in RUN_FILES if holds(self.path / name)]

    def not_resumable(self, found: Sequence[str]) -> UsageError:
        """The refusal for a folder that holds `found` of a run but no config.json: neither a fresh
        run nor --resume can use it, so the only ways on are another folder or removing this one."""
        return UsageError(f"{self.path} holds {', '.join(found)} of a run but no {CONFIG_FILE}, so that run cannot "
                          f"be resumed; choose another --out for a new run, or remove {self.path} to start one there")

    # config.json and data_sources.json ------------------------------------------------------
    def config(self) -> Config | None:
        """The configuration the run was started with, or None if the folder holds no run."""
        if not self.config_path.is_file():
            return None
        try:
            return Config.from_dict(json.loads(self.config_path.read_text()))
        except (ValueError, TypeError) as error:
            raise UsageError(f"{self.config_path} is not a configuration lfmsl can read ({error}); "
                             f"remove {self.path} to run it again (a sweep then does), or start a new run with "
                             "another --out") from None

    def write_config(self, config: Config, sources: dict[str, str | Path | None]) -> None:
        """Record the configuration and where the data came from, so the run can be resumed and checked."""
        try:
            _write_json(self.config_path, config.to_dict())
            _write_json(self.path / SOURCES_FILE,
                        {k: None if v is None else str(Path(v).absolute()) for k, v in sources.items()})
        except OSError as error:
            raise _unwritable(self.path, error) from None

    def sources(self) -> dict[str, str | None]:
        """The data folders the run was started with ({} if not recorded)."""
        try:
            return json.loads((self.path / SOURCES_FILE).read_text())
        except (OSError, ValueError):
            return {}

    # metrics.jsonl ---------------------------------------------------------------------------
    def metrics(self) -> list[dict]:
        """Every round's record ([] when there is no metrics.jsonl); DamagedRun names a bad line."""
        if not self.metrics_path.exists():
            return []
        records = []
        for number, line in enumerate(self.metrics_path.read_text(errors="replace").splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    raise DamagedRun(f"{self.metrics_path} is damaged: line {number} is not a whole JSON "
                                     "record") from None
        return records

    def append_metrics(self, record: dict) -> None:
        """Append one round's record; flushed at once so a crash loses nothing already done."""
        with open(self.metrics_path, "a") as stream:
            stream.write(json.dumps(record) + "\n")

    def keep_metrics(self, rounds: int) -> None:
        """Cut metrics.jsonl back to its first `rounds` lines in place (a truncation needs no free space: a disk that
        filled up while saving a checkpoint leaves the lines after the last checkpoint, which a resume recomputes)."""
        if not self.metrics_path.is_file():
            return
        with open(self.metrics_path, "rb+") as stream:
            for _ in range(rounds):
                if not stream.readline():
                    return
            stream.truncate()

    def write_metrics(self, history: Sequence[dict]) -> None:
        """Replace metrics.jsonl by these records (on resume: the checkpoint's history)."""
        write_text(self.metrics_path, "".join(json.dumps(record) + "\n" for record in history))

    def tensorboard(self, history: Sequence[dict]) -> "TensorBoardLog":
        """The TensorBoard event files, written afresh with `history`; `add` each new round."""
        from lfmsl.io.tensorboard import TensorBoardLog

        try:
            return TensorBoardLog(self.tensorboard_path, history)
        except OSError as error:
            raise _unwritable(self.path, error) from None

    # summary.json ----------------------------------------------------------------------------
    def summary(self) -> dict | None:
        """The summary, checked against the metrics; None if there is no summary.json. DamagedRun
        says what does not read back whole, so that the run is repaired or named, never dropped in silence."""
        if not self.summary_path.exists():
            return None
        try:
            summary = json.loads(self.summary_path.read_text())
        except (OSError, ValueError):
            raise DamagedRun(f"{self.summary_path} is damaged: it is not whole JSON") from None
        done = summary.get("rounds_completed") if isinstance(summary, dict) else None
        if not isinstance(done, int) or not isinstance(summary.get("config"), dict):
            raise DamagedRun(f"{self.summary_path} is damaged: it lacks the configuration or the rounds completed")
        rounds = [record.get("round") for record in self.metrics()]
        if rounds != list(range(1, done + 1)):
            raise DamagedRun(f"{self.metrics_path} is damaged: it holds rounds {_span(rounds)} "
                             f"where summary.json says 1 to {done}")
        return summary

    def write_summary(self, summary: dict) -> None:
        _write_json(self.summary_path, summary)

    def drop_summary(self) -> None:
        """A run that is resumed or extended is not finished until it writes its summary again."""
        self.summary_path.unlink(missing_ok=True)

    @staticmethod
    def summary_config(summary: dict) -> Config:
        """The configuration in a summary; keys that this lfmsl does not know (another version's) are left out."""
        return Config.from_dict({k: v for k, v in summary["config"].items() if k in Config.__dataclass_fields__})

    # the two questions -------------------------------------------------------------------------
    def check_same_run(self, config: Config) -> None:
        """Refuse `config` if the folder holds a run of another configuration (`rounds` may differ)."""
        stored = self.config()
        old = {} if stored is None else stored.to_dict()
        changed = [f"--{name.replace('_', '-')} {value} (the run has {old[name]})"
                   for name, value in config.to_dict().items()
                   if name in old and name not in RESUMABLE and value != old[name]]
        if changed:
            raise UsageError(f"{self.path} holds a run with another configuration: {'; '.join(changed)}. "
                             "Leave those options out to continue it as it was, or choose another --out for a new run")

    def finished(self, config: Config | None = None, log: Callable[[str], None] | None = None) -> dict | None:
        """The summary if the run here has done all its rounds, else None (no run, or rounds left).

        With `config` (about to run it here), the folder must hold no run or a run of `config`, up
        to its rounds (UsageError otherwise, and when it has done more rounds than `config` asks);
        without, the run's own rounds count. A file that does not read back whole raises DamagedRun,
        or with `log`, where a checkpoint is left, is logged and the run counts as not finished:
        running it again rebuilds it from that checkpoint.
        """
        if config is not None:
            self.check_same_run(config)
            if self.config() is None:
                return None
        try:
            summary = self.summary()
        except DamagedRun as damage:
            if log is None:
                raise
            if not self.has_checkpoints():  # running it again from round 1 would be a silent restart
                raise DamagedRun(f"{damage}, and no checkpoint is left to rebuild it from; "
                                 f"{self.start_again_advice()}") from None
            log(f"{damage}; it will be repaired by rebuilding the run from its last checkpoint")
            return None
        if summary is None:
            return None
        done, rounds = summary["rounds_completed"], (config or self.summary_config(summary)).rounds
        self.check_rounds(done, rounds)
        return summary if done == rounds else None

    def check_rounds(self, done: int, rounds: int) -> None:
        """Refuse to shorten a run: `rounds` asked for when `done` are done already."""
        if done > rounds:
            raise UsageError(f"the run in {self.path} has done {done} rounds already; ask for --rounds {done} or more")

    def has_checkpoints(self) -> bool:
        return any(step.name.isdigit() for step in self.checkpoints.glob("*"))

    @property
    def unreadable(self) -> Path:
        """Where checkpoints that failed to read are moved aside, never deleted."""
        return self.path / UNREADABLE_DIR

    def check_nothing_lost_by_restarting(self) -> None:
        """Before a resumed run that has no checkpoint to continue from starts again at round 1:
        refuse, saying what is there, if the folder holds rounds in metrics.jsonl or checkpoints
        moved aside as unreadable (starting again would overwrite or orphan them)."""
        kept = []
        try:
            lines = sum(1 for line in self.metrics_path.read_text(errors="replace").splitlines() if line.strip())
        except FileNotFoundError:
            lines = 0
        if lines:
            kept.append(f"{lines} round{'s' if lines > 1 else ''} in {METRICS_FILE}")
        aside = sorted(self.unreadable.iterdir()) if self.unreadable.is_dir() else []
        if aside:
            kept.append(f"{len(aside)} checkpoint{'s' if len(aside) > 1 else ''} moved into {UNREADABLE_DIR}/ because "
                        f"{'they' if len(aside) > 1 else 'it'} could not be read")
        if kept:
            raise UsageError(f"{self.path} holds {' and '.join(kept)} but no checkpoint to continue the run from, "
                             f"so resuming would start it again from round 1; {self.start_again_advice()}")

    def start_again_advice(self) -> str:
        remove = [name for name in (METRICS_FILE, SUMMARY_FILE, UNREADABLE_DIR) if (self.path / name).exists()]
        return (f"to run it again from round 1, remove {' and '.join(remove)} from {self.path} and resume again; "
                "or choose another --out for a new run")


class _NoLog:
    """The TensorBoard log of a process that writes none."""

    def add(self, record: dict, flush: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


class Observed(RunDir):
    """The run folder as the processes of a distributed run other than process 0 see it: they read what is there
    (a run to resume, its configuration and summary) and write nothing; process 0 writes every file. Orbax's
    checkpoints are the exception: every process saves its own shards of the state (checkpoint.py)."""

    writes = False

    def create(self) -> "RunDir":
        return self

    def discard_unstarted(self) -> None:
        pass

    def write_privacy_images(self, images: dict) -> None:
        pass

    def write_config(self, config: Config, sources: dict[str, str | Path | None]) -> None:
        pass

    def append_metrics(self, record: dict) -> None:
        pass

    def keep_metrics(self, rounds: int) -> None:
        pass

    def write_metrics(self, history: Sequence[dict]) -> None:
        pass

    def tensorboard(self, history: Sequence[dict]) -> _NoLog:
        return _NoLog()

    def write_summary(self, summary: dict) -> None:
        pass

    def drop_summary(self) -> None:
        pass


def _write_json(path: Path, payload: dict) -> None:
    write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def _span(rounds: list) -> str:
    return "none" if not rounds else f"{rounds[0]} to {rounds[-1]} ({len(rounds)} lines)"


def _unwritable(path: Path, error: OSError) -> UsageError:
    return UsageError(f"cannot write to the output folder {path}: {error.strerror}; choose another --out")
