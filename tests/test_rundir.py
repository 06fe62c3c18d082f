"""RunDir: the one reader and writer of a run folder, and the one answer to "is this run finished,
and is it the same run as this configuration"."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from lfmsl.config import Config
from lfmsl.errors import UsageError
from lfmsl.io.rundir import DamagedRun, RunDir

CONFIG = Config(algorithm="psl", clients=2, rounds=2)
RESULTS = Path(__file__).resolve().parents[1] / "results"


def make_run(path: Path, rounds_done: int, summary: bool = True, config: Config = CONFIG) -> RunDir:
    """A run folder written by hand: `rounds_done` rounds of metrics and, if asked, the summary."""
    folder = RunDir(path).create()
    folder.write_config(config, {"manual_dir": None, "data_dir": None})
    folder.write_metrics([{"round": r, "test_accuracy": 0.1 * r} for r in range(1, rounds_done + 1)])
    if summary:
        folder.write_summary({"config": config.to_dict(), "rounds_completed": rounds_done})
    return folder


def test_a_folder_without_a_run_is_not_finished(tmp_path):
    folder = RunDir(tmp_path / "fresh")
    assert folder.config() is None and folder.summary() is None and folder.metrics() == []
    assert folder.finished(CONFIG) is None and folder.finished() is None


def test_a_stopped_run_is_not_finished_and_a_finished_one_is(tmp_path):
    stopped = make_run(tmp_path / "stopped", 1, summary=False)
    assert stopped.finished(CONFIG) is None
    done = make_run(tmp_path / "done", 2)
    assert done.finished(CONFIG) == done.summary() == {"config": CONFIG.to_dict(), "rounds_completed": 2}
    assert done.finished() == done.summary()  # for reading: the run's own rounds
    assert done.finished(dataclasses.replace(CONFIG, rounds=3)) is None  # more rounds extend it
    with pytest.raises(UsageError, match="has done 2 rounds already; ask for --rounds 2 or more"):
        done.finished(dataclasses.replace(CONFIG, rounds=1))


def test_the_same_run_is_the_same_configuration_up_to_its_rounds(tmp_path):
    folder = make_run(tmp_path / "run", 2)
    folder.check_same_run(dataclasses.replace(CONFIG, rounds=5))
    other = dataclasses.replace(CONFIG, clients=3, lr=0.01)
    with pytest.raises(UsageError, match=r"another configuration: --clients 3 \(the run has 2\); --lr 0.01 \(the run has 0.001\)\. "):
        folder.finished(other)
    RunDir(tmp_path / "empty").check_same_run(other)  # no run there: nothing to differ from


DAMAGE = {
    "summary truncated": lambda f: f.summary_path.write_text(f.summary_path.read_text()[:20]),
    "summary without rounds": lambda f: f.summary_path.write_text(json.dumps({"config": CONFIG.to_dict()})),
    "metrics line torn": lambda f: f.metrics_path.write_text(f.metrics_path.read_text()[:-10]),
    "metrics lost a round": lambda f: f.metrics_path.write_text(f.metrics_path.read_text().splitlines(keepends=True)[0]),
}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("checkpointed", [False, True])
def test_a_damaged_run_is_named_or_counts_as_not_finished(tmp_path, damage, checkpointed):
    folder = make_run(tmp_path / "run", 2)
    DAMAGE[damage](folder)
    if checkpointed:
        (folder.checkpoints / "2").mkdir(parents=True)
    with pytest.raises(DamagedRun, match="is damaged"):
        folder.finished()  # a reader: named, never dropped in silence
    logs = []
    if not checkpointed:  # running it again from round 1 would overwrite its rounds in silence: refused, saying how
        with pytest.raises(DamagedRun, match="is damaged.*no checkpoint is left to rebuild it from; to run it again from round 1, remove"):
            folder.finished(CONFIG, logs.append)
        return
    assert folder.finished(CONFIG, logs.append) is None  # a writer: running it again repairs it
    (line,) = logs
    assert "is damaged" in line and line.endswith("it will be repaired by rebuilding the run from its last checkpoint")


def test_a_torn_configuration_is_a_usage_error(tmp_path):
    folder = make_run(tmp_path / "run", 2)
    folder.config_path.write_text('{"algorithm": "ps')
    with pytest.raises(UsageError, match="config.json is not a configuration lfmsl can read"):
        folder.finished(CONFIG)


def test_create_refuses_a_folder_that_holds_a_run(tmp_path):
    make_run(tmp_path / "run", 1, summary=False)
    with pytest.raises(UsageError, match="already holds config.json, metrics.jsonl of a run; continue that run with --resume"):
        RunDir(tmp_path / "run").create()
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    RunDir(tmp_path / "empty").create()  # an empty checkpoints folder is nothing
    (tmp_path / "aside" / "checkpoints.unreadable" / "3-20260101-000000").mkdir(parents=True)
    with pytest.raises(UsageError, match="holds checkpoints.unreadable of a run but no config.json, so that run cannot be resumed"):
        RunDir(tmp_path / "aside").create()


def test_new_names_a_fresh_folder_and_find_lists_finished_runs(tmp_path):
    first = RunDir.new(tmp_path, "psl", "mnist")
    assert first.path.name.startswith("psl-mnist-") and not first.path.exists()
    first.path.mkdir()
    assert RunDir.new(tmp_path, "psl", "mnist").path != first.path
    b, a = make_run(tmp_path / "sweep" / "b", 2), make_run(tmp_path / "sweep" / "a", 2)
    make_run(tmp_path / "sweep" / "stopped", 1, summary=False)
    assert [f.path for f in RunDir.find(tmp_path / "sweep")] == [a.path, b.path]
    assert [f.path for f in RunDir.find(a.path)] == [a.path]


def test_a_summary_of_another_lfmsl_version_reads(tmp_path):
    folder = make_run(tmp_path / "run", 2)
    summary = folder.summary()
    summary["config"]["option_of_a_later_version"] = 1
    del summary["config"]["overlap"]  # one added since: its default
    folder.write_summary(summary)
    assert RunDir.summary_config(folder.finished()) == CONFIG


def test_a_run_folder_written_before_rundir_reads_and_counts_as_finished(tmp_path):
    """The study's committed runs, written by an earlier lfmsl."""
    runs = RunDir.find(RESULTS / "reproduce" / "runs") if (RESULTS / "reproduce" / "runs").is_dir() else []
    if not runs:
        pytest.skip("no committed runs")
    copy = RunDir(shutil.copytree(runs[0].path, tmp_path / "run"))
    summary = copy.finished()
    config = RunDir.summary_config(summary)
    assert summary["rounds_completed"] == config.rounds == len(copy.metrics())
    assert copy.config() == config and copy.finished(config) == summary
