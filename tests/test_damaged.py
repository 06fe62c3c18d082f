"""A finished run whose metrics.jsonl or summary.json is truncated or unreadable is rebuilt from
its last checkpoint by `--resume` and by a sweep; one beyond repair is named, never dropped in
silence, and never a traceback."""

import json
import shutil

import pytest

from cli_runs import metrics
from lfmsl import cli
from lfmsl.experiments import sweep
from lfmsl.config import Config
from lfmsl.io.rundir import DamagedRun, RunDir
from synthetic import tiny_dataset

pytestmark = pytest.mark.slow  # compiles training rounds: not in the fast part (.ci/python312)


def copy_run(source, target):
    shutil.copytree(source, target)
    return target


def truncate(path, keep: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])  # a write cut short: the last line half there


DAMAGE = {
    "summary truncated": lambda run: truncate(run / "summary.json"),
    "summary emptied": lambda run: (run / "summary.json").write_text(""),
    "metrics truncated": lambda run: truncate(run / "metrics.jsonl"),
    "metrics lost rounds": lambda run: (run / "metrics.jsonl").write_text(
        "".join((run / "metrics.jsonl").read_text().splitlines(keepends=True)[:2])),
    "metrics binary garbage": lambda run: (run / "metrics.jsonl").write_bytes(b"\x00\xff" * 50),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_resume_rebuilds_a_damaged_finished_run_from_its_checkpoint(reference_run, tmp_path, capsys, damage):
    out = copy_run(reference_run, tmp_path / "run")
    DAMAGE[damage](out)
    with pytest.raises(DamagedRun):
        RunDir(out).summary()

    assert cli.main(["run", "--resume", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "is damaged" in err and "rebuilding the run from its last checkpoint" in err and "Traceback" not in err
    assert "resuming after round 5" in err  # nothing recomputed
    assert metrics(out) == metrics(reference_run)
    summary = RunDir(out).summary()
    before = json.loads((reference_run / "summary.json").read_text())
    for key in ("final_test_accuracy", "best_test_accuracy", "comm_bytes", "sim_latency_s", "rounds_completed", "config"):
        assert summary[key] == before[key]


def sweep_folder(reference_run, tmp_path) -> Config:
    """The reference run as the one run of a sweep in `tmp_path`."""
    config = RunDir(reference_run).config()
    copy_run(reference_run, tmp_path / sweep.run_name(config))
    return config


def test_a_sweep_repairs_a_damaged_run_and_puts_it_in_the_table(reference_run, tiny_data_dir, tmp_path):
    from lfmsl.io.data import load_dataset

    config = sweep_folder(reference_run, tmp_path)
    out = tmp_path / sweep.run_name(config)
    DAMAGE["metrics truncated"](out)
    logs = []
    (run,) = sweep.run_sweep([config], tmp_path, lambda name: load_dataset(name, data_dir=tiny_data_dir), log=logs.append)
    assert any("is damaged" in line and "will be repaired" in line for line in logs), logs
    assert run.summary is not None and metrics(out) == metrics(reference_run)
    assert sweep.left_out([run]) is None


def test_a_sweep_names_a_run_beyond_repair_skips_it_and_fails_after_the_others(reference_run, tiny_data_dir, tmp_path, capsys):
    config = sweep_folder(reference_run, tmp_path)
    out = tmp_path / sweep.run_name(config)
    DAMAGE["summary truncated"](out)
    (out / "config.json").write_text('{"algorithm": "locfed')  # the configuration itself is torn
    shutil.rmtree(out / "checkpoints")
    logs = []
    (run,) = sweep.run_sweep([config], tmp_path, lambda name: tiny_dataset(), log=logs.append)
    assert run.summary is None and run.exit_code == 2
    assert any(line.startswith(f"lfmsl sweep: {out.name} failed:") and "config.json" in line for line in logs), logs
    missing = sweep.left_out([run])
    assert missing.startswith("1 of 1 runs are not in the tables") and out.name in missing

    argv = ["sweep", "--out", str(tmp_path), "--data-dir", str(tiny_data_dir), *(f"--{k.replace('_', '-')}={v}" for k, v in config.to_dict().items()
                                                if isinstance(v, (int, float, str)) and not isinstance(v, bool) and v != getattr(Config(), k))]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "1 of 1 runs are not in the tables" in err and out.name in err
