"""One writer per run folder: a second writer stops at once naming the first; a killed one frees it."""

import fcntl
import os
import signal
import subprocess
import sys
import threading

import pytest

from cli_runs import SRC
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
