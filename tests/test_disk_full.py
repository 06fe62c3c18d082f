"""A full disk is one line and exit status 5 wherever it strikes, and nothing finished is lost: once there is space
again, --resume continues. On a small tmpfs where this machine allows mounting one, else by faking the OS error."""

import errno
import os
import subprocess
import sys

import pytest

from cli_runs import TINY, environment, run
from lfmsl import cli
from lfmsl.errors import DiskFull, disk_full


def test_the_disk_being_full_is_recognised_through_the_libraries_that_wrap_it():
    assert disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert disk_full(ValueError('RESOURCE_EXHAUSTED: Error writing "x/0" in OCDBT database at local file "/d/"'))
    wrapped = RuntimeError("save failed")
    wrapped.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert disk_full(wrapped)
    assert not disk_full(OSError(errno.EACCES, "Permission denied")) and not disk_full(ValueError("RESOURCE_EXHAUSTED: out of memory"))


@pytest.fixture
def small_disk(tmp_path):
    """A 600 KiB tmpfs (a run's checkpoint does not fit), made larger by `grow()`; skipped where mounting is refused."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("this machine does not let the tests mount a small tmpfs")
    try:
        yield mount, lambda: subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
def test_a_disk_filling_up_during_a_checkpoint_is_one_line_and_resume_continues_once_there_is_space(small_disk, tiny_data_dir,
                                                                                                        compile_cache):
    """Before: 274 to 763 lines of tracebacks from orbax's threads and the event loop it closed, exit status 1."""
    mount, grow = small_disk
    out, env = mount / "run", environment(compile_cache)
    full = run(["--data-dir", tiny_data_dir, *TINY, "--rounds", "3", "--out", out], env)
    lines = full.stderr.strip().splitlines()
    assert full.returncode == DiskFull.exit_code and "Traceback" not in full.stderr, full.stderr[-3000:]
    assert lines[-1].startswith("lfmsl: error: no space left on the disk of") and f"lfmsl run --resume {out}" in lines[-1]
    assert sum(line.startswith("lfmsl: error") for line in lines) == 1 and len(lines) <= 6  # the run's own lines, then the error
    assert (out / "metrics.jsonl").read_text() == ""  # the rounds no checkpoint holds are recomputed by the resume
    grow()
    resumed = run(["--resume", out], env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3 and (out / "summary.json").is_file()


def test_a_disk_full_at_the_start_is_one_line_and_exit_status_5(tmp_path, monkeypatch, capsys):
    """Faked where the run lock writes its pid, the first write of a run (before: an OSError traceback); the folder
    the attempt created is removed."""
    from lfmsl.io import runlock

    fdopen = runlock.os.fdopen

    class Full:  # the lock file of a full disk: it opens, but its first write does not reach the disk
        def __init__(self, handle):
            self.handle = handle

        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.handle, name)

    monkeypatch.setattr(runlock.os, "fdopen", lambda *args: Full(fdopen(*args)))
    out = tmp_path / "run"
    code = cli.main(["run", "--train-size", "64", "--clients", "2", "--rounds", "1", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 5 and len(err) == 1 and err[0].startswith("lfmsl: error: no space left on the disk of"), err
    assert "run the same command again" in err[0] and not out.exists()


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.slow
@pytest.mark.parametrize("where", ["metrics", "plot", "tensorboard"])
def test_a_disk_filling_up_while_a_run_writes_is_one_line_and_exit_status_5(where, tiny_data_dir, tmp_path, monkeypatch, capsys):
    """Faked at each of a run's writes after its configuration: one line saying how to continue, no traceback."""
    from lfmsl.io import outputs, rundir, tensorboard

    target = {"metrics": (rundir.RunDir, "append_metrics"), "plot": (outputs, "plot_accuracy"),
              "tensorboard": (tensorboard.TensorBoardLog, "add")}[where]
    monkeypatch.setattr(*target, no_space)
    out = tmp_path / "run"
    code = cli.main(["run", "--data-dir", str(tiny_data_dir), *TINY, "--rounds", "1", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 5 and err[-1].startswith("lfmsl: error: no space left on the disk of") and "Traceback" not in "\n".join(err)
    assert f"lfmsl run --resume {out}" in err[-1] and (out / "config.json").is_file()


def test_a_disk_full_when_a_sweep_writes_its_tables_is_one_line_and_exit_status_5(tmp_path, monkeypatch, capsys):
    from lfmsl.experiments import sweep

    monkeypatch.setattr(sweep, "run_sweep", lambda configs, out, load, *args: [])
    monkeypatch.setattr(sweep, "write_tables", no_space)
    code = cli.main(["sweep", "--algorithm", "psl", "--clients", "2", "--rounds", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 5 and len(err) == 1 and err[0].startswith("lfmsl: error: no space left on the disk"), err
