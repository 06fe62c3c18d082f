"""Several processes as one run: `lfmsl launch` against one process with as many devices, one writer, and the
errors every process must stop on at once."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import numpy as np

from cli_runs import TINY, environment, metrics
from lfmsl import launch
from lfmsl.core import processes
from lfmsl.errors import UsageError
from tolerance import SGD, sgd

RUN = [*TINY, "--rounds", "2", "--test-size", "40", "--eval-clients", "0"]


def lfmsl(args, env, timeout=300):
    return subprocess.run([sys.executable, "-m", "lfmsl", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture()
def env(compile_cache, manual_data_dir, tfds_data_dir):
    return {**environment(compile_cache), "LFMSL_MANUAL_DIR": str(manual_data_dir), "JAX_PLATFORMS": "cpu"}


def data(tfds_data_dir, manual_data_dir):
    return ["--data-dir", tfds_data_dir, "--manual-dir", manual_data_dir]


def test_the_worst_status_wins_and_a_signal_counts_as_128_plus_it():
    assert launch.worst([0, 0]) == 0
    assert launch.worst([0, 2]) == 2
    assert launch.worst([130, 0]) == 130
    assert launch.worst([130, 2]) == 2  # an error says more than the Ctrl-C that followed it
    assert launch.worst([0, -signal.SIGKILL]) == 137


def test_the_launched_command_joins_the_others():
    assert launch.command_of(["--", "run", "--clients", "4"])[-4:] == ["run", "--distributed", "--clients", "4"]
    with pytest.raises(UsageError, match="give the command to run after '--'"):
        launch.command_of(["--clients", "4"])
    environment = launch.process_environment(1, 2, "localhost:1234", 2)
    assert (environment[processes.ADDRESS], environment[processes.COUNT], environment[processes.INDEX]) == \
        ("localhost:1234", "2", "1")
    assert "--xla_force_host_platform_device_count=2" in environment["XLA_FLAGS"]


def test_processes_with_runs_of_their_own_are_sweeps_that_leave_the_tables_and_join_nothing(monkeypatch):
    assert launch.command_of(["--", "sweep", "--seed", "0,1"], own_runs=True)[-4:] == \
        ["sweep", "--no-tables", "--seed", "0,1"]
    for refused in (["run", "--clients", "4"], ["sweep", "--distributed", "--seed", "0,1"]):
        with pytest.raises(UsageError, match="--own-runs shares out the runs of a sweep"):
            launch.command_of(refused, own_runs=True)
    for name in (processes.ADDRESS, processes.COUNT, processes.INDEX):
        monkeypatch.delenv(name, raising=False)
    assert not {processes.ADDRESS, processes.COUNT, processes.INDEX} & set(launch.process_environment(1, 2, None, 2))


def test_an_impossible_grid_is_one_line_before_any_process_starts(tmp_path, capsys):
    from lfmsl import cli

    argv = ["launch", "--processes", "2", "--own-runs", "--", "sweep", "--clients", "4", "--clients-per-round", "5",
            "--out", str(tmp_path / "grid")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lfmsl: error:") and "--clients-per-round" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "grid").exists()


@pytest.mark.parametrize("variables, message", [
    ({processes.COUNT: "2", processes.INDEX: "x"}, "set both JAX_NUM_PROCESSES and JAX_PROCESS_ID to whole numbers"),
    ({processes.COUNT: "2", processes.INDEX: "2"}, "JAX_PROCESS_ID=2 is not one of the 2 processes 0 to 1"),
    ({processes.COUNT: "2", processes.INDEX: "1"}, "not JAX_COORDINATOR_ADDRESS"),
])
def test_a_bad_process_environment_is_one_line(monkeypatch, variables, message):
    monkeypatch.delenv(processes.ADDRESS, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UsageError, match=message):
        processes._from_environment()


@pytest.mark.parametrize("index, message", [
    ("1", "no coordinator answers at"),  # process 0 never started
    ("0", "the 2 processes of the run did not all join within 2 s"),  # process 0 waits for one that never comes
])
def test_processes_that_do_not_all_join_are_one_line_and_status_2_within_seconds(env, tmp_path, index, message):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]  # nobody listens there once closed
    env = {**env, processes.ADDRESS: f"localhost:{port}", processes.COUNT: "2", processes.INDEX: index,
           "LFMSL_JOIN_TIMEOUT_S": "2"}
    began = time.monotonic()
    done = lfmsl(["run", "--distributed", "--algorithm", "psl", *RUN, "--out", tmp_path / "run"], env, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and message in lines[0], done.stderr
    assert time.monotonic() - began < 20
    assert not (tmp_path / "run").exists()


def test_two_processes_run_with_every_supported_jax(env, tmp_path, tfds_data_dir, manual_data_dir):
    """Not slow, so that the oldest jax runs it too (its jax.distributed and multihost_utils differ: lfmsl passed
    arguments it does not know, and read a broadcast's bytes from the wider integers it hands back)."""
    done = lfmsl(["launch", "--processes", 2, "--", "run", "--algorithm", "psl", *RUN,
                  *data(tfds_data_dir, manual_data_dir), "--out", tmp_path / "run"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(metrics(tmp_path / "run")) == 2


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["psl", "locfedmix", "sflv2"])
def test_two_processes_of_two_devices_give_the_one_process_four_device_run(algorithm, env, tmp_path, tfds_data_dir,
                                                                          manual_data_dir):
    args = ["--algorithm", algorithm, *RUN, "--optimizer", SGD["optimizer"], "--lr", SGD["lr"],
            *data(tfds_data_dir, manual_data_dir)]
    four = {**env, "XLA_FLAGS": f"{env['XLA_FLAGS']} --xla_force_host_platform_device_count=4"}
    alone = lfmsl(["run", *args, "--out", tmp_path / "alone"], four)
    assert alone.returncode == 0, alone.stderr[-3000:]
    together = lfmsl(["launch", "--processes", 2, "--devices-per-process", 2, "--", "run", *args,
                      "--out", tmp_path / "together"], env)
    assert together.returncode == 0, together.stderr[-3000:]
    # gloo's ring all-reduce adds the devices' partial sums in another order than one process does (docs/
    # DETERMINISM.md): within float rounding, 2 rounds of 2 SGD steps of batch 8
    one, two = metrics(tmp_path / "alone"), metrics(tmp_path / "together")
    assert len(one) == len(two) == 2
    for a, b in zip(one, two):
        assert {k: v for k, v in a.items() if not isinstance(v, float)} == \
            {k: v for k, v in b.items() if not isinstance(v, float)}
        for key in ("train_loss", "test_accuracy", "test_loss", "client_drift"):
            np.testing.assert_allclose(b[key], a[key], **sgd(steps=4, reduction=8 * 28 * 28), err_msg=key)
    # one writer: the folder holds one run's files, as the one-process run's does
    listing = lambda run: sorted(p.name for p in run.iterdir())
    assert listing(tmp_path / "together") == listing(tmp_path / "alone")
    assert "process 1" not in together.stderr  # process 1 had nothing to say that process 0 did not


@pytest.mark.slow
def test_clients_that_do_not_divide_over_every_device_stop_every_process_with_one_line(env, tmp_path, tfds_data_dir,
                                                                                      manual_data_dir):
    began = time.monotonic()
    done = lfmsl(["launch", "--processes", 2, "--devices-per-process", 2, "--", "run", "--algorithm", "psl", *RUN,
                  "--clients", 6, *data(tfds_data_dir, manual_data_dir), "--out", tmp_path / "run"], env)
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert done.returncode == 2 and len(errors) == 1, done.stderr
    assert "--clients 6 cannot be split evenly over 4 devices" in errors[0]
    assert time.monotonic() - began < 60


@pytest.mark.slow
def test_processes_started_with_other_flags_stop_at_once(env, tmp_path, tfds_data_dir, manual_data_dir):
    port = launch.free_port()
    common = ["run", "--distributed", "--algorithm", "psl", *RUN, *data(tfds_data_dir, manual_data_dir), "--out",
              tmp_path / "run"]
    started = [subprocess.Popen([sys.executable, "-m", "lfmsl", *map(str, common), "--seed", seed],
                                env={**launch.process_environment(i, 2, f"localhost:{port}", 2), **{
                                    k: v for k, v in env.items() if k.startswith(("JAX_COMP", "LFMSL", "PYTHONPATH"))}},
                                stderr=subprocess.PIPE, text=True)
               for i, seed in enumerate(["0", "1"])]
    outputs = [p.communicate(timeout=120)[1] for p in started]
    for p, err in zip(started, outputs):
        assert p.returncode == 2, err
        assert "started with different configurations" in err.strip().splitlines()[-1]


@pytest.mark.slow
def test_a_killed_process_stops_the_other_within_seconds_and_the_run_resumes(env, tmp_path, tfds_data_dir,
                                                                             manual_data_dir):
    args = ["--algorithm", "psl", *TINY, "--rounds", "10", "--test-size", "40", "--eval-clients", "0",
            "--checkpoint-every", "1", *data(tfds_data_dir, manual_data_dir)]
    out = tmp_path / "run"
    launcher = subprocess.Popen([sys.executable, "-m", "lfmsl", "launch", "--processes", "2",
                                 "--devices-per-process", "2", "--", "run", *map(str, args), "--out", str(out)],
                                env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while (out / "metrics.jsonl").exists() is False or len((out / "metrics.jsonl").read_text().splitlines()) < 3:
        assert launcher.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    children = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split()
    victim = next(int(pid) for pid in children if _process_id(int(pid)) == "1")
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    err = launcher.communicate(timeout=120)[1]
    stopped_after = time.monotonic() - killed
    assert launcher.returncode != 0 and stopped_after < processes.LOST_AFTER_S + launch.GRACE_S + 10, err
    resumed = lfmsl(["launch", "--processes", 2, "--devices-per-process", 2, "--", "run", "--resume", out,
                     *data(tfds_data_dir, manual_data_dir)], env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole = lfmsl(["launch", "--processes", 2, "--devices-per-process", 2, "--", "run", *args,
                   "--out", tmp_path / "whole"], env)
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert metrics(out) == metrics(tmp_path / "whole")


def _process_id(pid: int) -> str | None:
    """JAX_PROCESS_ID in a running process's environment."""
    try:
        variables = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        return None
    found = [v.split(b"=", 1)[1].decode() for v in variables if v.startswith(processes.INDEX.encode() + b"=")]
    return found[0] if found else None


@pytest.mark.slow
def test_a_two_process_run_resumes_in_one_process_of_another_device_count(env, tmp_path, tfds_data_dir,
                                                                          manual_data_dir):
    """The checkpoint written by two processes of 2 devices is laid out anew on the mesh of one process of 4 (and
    then of 2): the rounds after it are the two-process run's, within float rounding."""
    args = ["--algorithm", "psl", *RUN, "--optimizer", SGD["optimizer"], "--lr", SGD["lr"],
            *data(tfds_data_dir, manual_data_dir)]
    two = lambda out, rounds: lfmsl(["launch", "--processes", 2, "--devices-per-process", 2, "--", "run", *args,
                                     "--rounds", rounds, "--out", out], env)
    devices = lambda count: {**env, "XLA_FLAGS": f"{env['XLA_FLAGS']} --xla_force_host_platform_device_count={count}"}
    assert two(tmp_path / "moved", 1).returncode == 0
    for count, rounds in ((4, 2), (2, 3)):
        resumed = lfmsl(["run", "--resume", tmp_path / "moved", "--rounds", rounds], devices(count))
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert two(tmp_path / "whole", 3).returncode == 0
    for a, b in zip(metrics(tmp_path / "whole"), metrics(tmp_path / "moved"), strict=True):
        for key in ("train_loss", "test_accuracy", "test_loss"):
            np.testing.assert_allclose(b[key], a[key], **sgd(steps=6, reduction=8 * 28 * 28), err_msg=key)


@pytest.mark.slow
def test_processes_with_runs_of_their_own_share_a_sweep_and_give_its_runs_and_tables(env, tmp_path, tfds_data_dir,
                                                                                     manual_data_dir):
    """Each process a sweep over the same grid: every run once, as one process alone runs it, and whole tables."""
    run = [arg for arg in RUN if arg != "--no-progress"]  # a sweep's runs show no progress bar by default
    grid = ["sweep", "--algorithm", "psl", "--seed", "0,1", *run, *data(tfds_data_dir, manual_data_dir)]
    shared = lfmsl(["launch", "--processes", 2, "--own-runs", "--", *grid, "--out", tmp_path / "shared"], env)
    assert shared.returncode == 0, shared.stderr[-3000:]
    alone = lfmsl([*grid, "--out", tmp_path / "alone"], env)
    assert alone.returncode == 0, alone.stderr[-3000:]
    folders = lambda sweep: sorted(p.name for p in (tmp_path / sweep).iterdir() if (p / "config.json").is_file())
    runs = folders("alone")
    assert len(runs) == 2 and runs == folders("shared")
    for run in runs:
        assert metrics(tmp_path / "shared" / run) == metrics(tmp_path / "alone" / run)
    assert "| psl | 2 |" in shared.stdout and (tmp_path / "shared" / "results.csv").is_file()
