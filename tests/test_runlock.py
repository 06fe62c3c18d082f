"""One writer per run folder: a second writer stops at once naming the first; a killed one frees it."""

import csv
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from cli_runs import SRC, TINY, environment, metrics, start
from lfmsl import cli
from lfmsl.experiments import sweep
from lfmsl.config import Config
from lfmsl.io.runlock import LOCK_FILE, RunBusy, RunLock
from synthetic import tiny_dataset


def test_a_second_writer_stops_at_once_naming_the_first(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("lfmsl.io.data.load_dataset", lambda *a, **k: pytest.fail("the second writer loaded data"))
    out = tmp_path / "run"
    with RunLock(out):
        code = cli.main(["run", "--out", str(out), "--clients", "2", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"in use by another lfmsl process (pid {os.getpid()})" in err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing written: the folder is still fresh
    with RunLock(out):  # released on leaving
        pass


@pytest.mark.parametrize("left", ["", "   4194305\n"], ids=["empty", "an ended holder's pid"])
def test_a_refused_writer_names_a_holder_that_is_still_writing_its_pid(tmp_path, left):
    """Before: the holder emptied the file, then wrote its pid, and a writer refused in between said 'pid unknown'."""
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).write_text(left)  # what a holder that has just taken the lock has not yet overwritten
    with open(out / LOCK_FILE, "r+") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        writes = threading.Timer(0.2, lambda: (holder.seek(0), holder.write(f"{os.getpid():>10}\n"), holder.truncate(), holder.flush()))
        writes.start()
        with pytest.raises(RunBusy, match=rf"\(pid {os.getpid()}\)"):
            RunLock(out).__enter__()
        writes.join()
    with RunLock(out):
        assert (out / LOCK_FILE).read_text() == f"{os.getpid():>10}\n"  # overwritten in place, one fixed-width write


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from lfmsl.io.runlock import RunLock; "
                               f"lock = RunLock({str(out)!r}).__enter__(); print('held', flush=True); time.sleep(60)"],
                              env=dict(os.environ, PYTHONPATH=str(SRC)), stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunBusy, match=f"pid {holder.pid}"):
        RunLock(out).__enter__()
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    with RunLock(out):
        pass


@pytest.mark.slow
def test_two_sweeps_share_a_grid(tmp_path):
    """A run held by another sweep is skipped, the others run; the next sweep finds all finished."""
    configs = [Config(algorithm="psl", clients=2, rounds=1, batch_size=16, eval_clients=1, seed=s) for s in (0, 1)]
    held = tmp_path / sweep.run_name(configs[0])
    logs = []
    with RunLock(held):
        runs = sweep.run_sweep(configs, tmp_path, lambda name: tiny_dataset(), log=logs.append)
    assert runs[0].summary is None and runs[1].summary["rounds_completed"] == 1
    assert any("skipped" in line and "in use by another lfmsl process" in line for line in logs)
    again = sweep.run_sweep(configs, tmp_path, lambda name: tiny_dataset(), log=logs.append)
    assert all(r.summary["rounds_completed"] == 1 for r in again)


def test_a_sweep_ending_while_another_runs_part_of_its_grid_says_so_and_the_last_writes_every_row(tiny_data_dir, tmp_path, capsys):
    """Before: the tables on disk were whichever sweep wrote last (2 of 3 rows) and both exited 0."""
    argv = ["sweep", "--algorithm", "psl", "--clients", "2", "--rounds", "1", "--batch-size", "16", "--eval-clients", "1",
            "--train-size", "64", "--seed", "0,1", "--data-dir", str(tiny_data_dir), "--out", str(tmp_path)]
    held = tmp_path / sweep.run_name(Config(algorithm="psl", clients=2, rounds=1, batch_size=16, eval_clients=1, train_size=64, seed=0))
    with RunLock(held):  # another sweep is running seed 0's run
        assert cli.main([*argv, "--no-tables"]) == 0  # one of several sweeps that leave the tables to the launcher
        assert not (tmp_path / "results.csv").exists()
        assert cli.main(argv) == sweep.INCOMPLETE
    err = capsys.readouterr().err
    assert "1 of 2 runs are still running in another process" in err and "Traceback" not in err
    seeds = lambda: [row["seeds"] for row in csv.DictReader((tmp_path / "results.csv").open())]
    assert seeds() == ["1"]  # the one finished run
    assert cli.main(argv) == 0  # the other ended (its lock released): this one runs what is left
    assert seeds() == ["2"]  # one configuration, over both seeds


def finish(process: subprocess.Popen, log) -> tuple[int, str]:
    return process.wait(timeout=300), log.read_text()


@pytest.mark.slow
def test_two_runs_on_one_out_and_two_resumes_of_one_run_at_once_leave_one_writer_each(reference_run, tiny_data_dir, compile_cache, tmp_path):
    """Before: two runs on one --out wrote two 'round 1' lines and mixed their configurations; two --resume of one
    stopped run wrote rounds 1,2,3,4,4,5,5; all exited 0. All four processes here start at once."""
    env = environment(compile_cache)
    stopped = shutil.copytree(reference_run, tmp_path / "stopped")
    (stopped / "summary.json").unlink()
    shutil.rmtree(stopped / "checkpoints" / "5")  # as if stopped after round 4
    fresh = tmp_path / "fresh"
    pairs = {fresh: [["--data-dir", tiny_data_dir, *TINY, "--rounds", "5", "--out", fresh]] * 2, stopped: [["--resume", stopped]] * 2}
    started = {folder: [(start(args, env, tmp_path / f"{folder.name}{i}.log"), tmp_path / f"{folder.name}{i}.log")
                        for i, args in enumerate(argvs)] for folder, argvs in pairs.items()}
    for folder, processes in started.items():
        ended = [(process, *finish(process, log)) for process, log in processes]
        (winner, code, err), = [e for e in ended if e[1] == 0] or [(None, None, str(ended))]
        (loser, lost, refusal), = [e for e in ended if e[1] != 0] or [(None, None, str(ended))]
        assert winner is not None and lost == 2, ended
        assert refusal == f"lfmsl: error: {folder} is in use by another lfmsl process (pid {winner.pid}); wait for it to end, or choose another --out\n"
        assert metrics(folder) == metrics(reference_run)  # one run's rounds, each once


def sweep_argv(*args) -> list[str]:
    return [sys.executable, "-m", "lfmsl", "sweep", *map(str, args)]


@pytest.mark.slow
def test_two_sweeps_share_a_grid_and_a_sweep_stopped_by_ctrl_c_continues(reference_run, tiny_data_dir, compile_cache, tmp_path):
    """Two `lfmsl sweep` over one grid at once, the first stopped by SIGINT as soon as a round is done
    (before: a segfault once), then the same command again: every run done once, none corrupted.
    The grid is `reference_run`'s configuration over seeds, so its programs come from the compile cache."""
    from cli_runs import count_rounds
    from lfmsl.io.rundir import RunDir

    env = environment(compile_cache)
    out = tmp_path / "grid"
    argv = sweep_argv("--data-dir", tiny_data_dir, *[a for a in TINY if a != "--no-progress"], "--rounds", "2",
                 "--seed", "0,1,2", "--out", out)
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    first, second = (subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w")) for log in logs)
    deadline = time.monotonic() + 300
    while not any(count_rounds(run) for run in out.glob("locfedmix_*")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=300) == 130, logs[0].read_text()
    assert second.wait(timeout=300) == 0, logs[1].read_text()
    stopped = logs[0].read_text()
    assert "Traceback" not in stopped + logs[1].read_text()
    assert stopped.splitlines()[-1].startswith("lfmsl: stopped by SIGINT") and "the same lfmsl sweep command continues" in stopped, stopped

    leftover = out / ".results.csv.q1w2.tmp"  # a table write killed two hours ago
    leftover.write_text("seeds,fin")
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert not leftover.exists() and "| 3 |" in (out / "results.md").read_text()  # one row over the three seeds
    runs = {int(run.name.split("_s")[1].split("_")[0]): run for run in out.glob("locfedmix_*")}
    assert sorted(runs) == [0, 1, 2]
    for seed, run in runs.items():  # each whole, of its own seed, its rounds once
        summary = RunDir(run).summary()
        assert summary["rounds_completed"] == 2 and summary["config"]["seed"] == RunDir(run).config().seed == seed
    done = sum(text.count("lfmsl: done.") for text in (stopped, logs[1].read_text(), again.stderr))
    assert done == 3, "each run is computed to its end once, by one of the sweeps"
