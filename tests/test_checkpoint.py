"""Checkpoints and resume: a run that is killed, stopped or damaged continues to the same result.

Every end-to-end test compares each non-timing field of every round with an uninterrupted run
(`reference_run`: locfedmix, 4 clients, 6 rounds, tiny data): they must be exactly equal.
"""

import dataclasses
import json
import os
import shutil
import signal

import jax.numpy as jnp
import numpy as np
import pytest

from cli_runs import TINY, count_rounds, environment, expected_tensorboard_scalars, metrics, run, start, tensorboard_scalars, wait_for_rounds
from lfmsl import cli
from lfmsl.io import checkpoint
from lfmsl.config import Config
from lfmsl.errors import Diverged, UsageError
from lfmsl.io.rundir import RunDir
from lfmsl.experiments.run_options import RunOptions
from lfmsl.experiments import runner
from lfmsl.experiments.runner import _run_rounds
from lfmsl.stopping import StopRequests


def copy_run(source, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(source, target)
    return target


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_metrics(reference_run, tiny_data_dir, compile_cache, tmp_path):
    env = environment(compile_cache)
    out = tmp_path / "killed"
    process = start(["--data-dir", tiny_data_dir, *TINY, "--rounds", "5", "--checkpoint-every", "1", "--out", out], env, tmp_path / "log")
    reached = wait_for_rounds(process, out, 2)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, (tmp_path / "log").read_text()
    assert 2 <= reached < 5
    left = sorted(os.listdir(out / "checkpoints"))
    print(f"killed after {count_rounds(out)} rounds; checkpoints left: {left}")

    resumed = run(["--resume", out], env)  # the data folder is remembered
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after round" in resumed.stderr
    assert metrics(out) == metrics(reference_run)
    wall = [r["wall_time_s"] for r in metrics(out, timing=True)]
    assert wall == sorted(wall), "simulator time continues from the checkpoint"
    assert tensorboard_scalars(out) == expected_tensorboard_scalars(out), "each round once in TensorBoard, rebuilt on resume"


@pytest.mark.slow
def test_sigterm_saves_the_last_round_exits_143_and_more_rounds_extend_the_run(reference_run, tiny_data_dir, compile_cache, tmp_path):
    env = environment(compile_cache)
    out = tmp_path / "stopped"
    log = tmp_path / "log"
    process = start(["--data-dir", tiny_data_dir, *TINY, "--rounds", "4", "--checkpoint-every", "5", "--out", out], env, log)
    wait_for_rounds(process, out, 1)  # rounds 2 and 3 are already dispatched then
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 143, log.read_text()
    stderr = log.read_text()
    done = count_rounds(out)
    assert f"stopped by SIGTERM after round {done} of 4" in stderr and f"--resume {out}" in stderr
    assert "Traceback" not in stderr
    assert done < 4 and checkpoint.Checkpoints(out).steps() == [done]  # saved although not a multiple of 5

    resumed = run(["--resume", out, "--rounds", "5"], env)  # and extended from 4 to 5 rounds
    assert resumed.returncode == 0, resumed.stderr
    assert metrics(out) == metrics(reference_run)
    assert json.loads((out / "config.json").read_text())["rounds"] == 5


@pytest.mark.slow
def test_damaged_newest_checkpoint_falls_back_to_the_one_before(reference_run, compile_cache, tmp_path):
    out = copy_run(reference_run, tmp_path)
    (out / "summary.json").unlink()  # as if killed after the last checkpoint, before the summary
    assert checkpoint.Checkpoints(out).steps() == [4, 5]
    for data in (out / "checkpoints" / "5" / "state").rglob("manifest.ocdbt"):
        data.write_bytes(b"")  # a torn write
    (out / "checkpoints" / "6.orbax-checkpoint-tmp").mkdir()  # what a save killed midway leaves

    resumed = run(["--resume", out], environment(compile_cache))
    assert resumed.returncode == 0, resumed.stderr
    assert "checkpoints/5 is incomplete or damaged" in resumed.stderr
    assert "resuming after round 4" in resumed.stderr
    # one line says so: not a traceback for each of orbax's reads that were still running (dozens, before)
    noise = ("Traceback", "never retrieved", "Exception ignored")
    assert not any(text in resumed.stderr for text in noise), resumed.stderr
    assert metrics(out) == metrics(reference_run)
    assert len(list((out / "checkpoints.unreadable").glob("5-*"))) == 1  # moved aside, not deleted


@pytest.mark.slow
def test_a_finished_run_is_not_redone_nor_shortened(reference_run, tmp_path, capsys):
    out = copy_run(reference_run, tmp_path)
    assert cli.main(["run", "--resume", str(out)]) == 0  # returns before loading any data
    assert "already finished its 5 rounds" in capsys.readouterr().err
    assert cli.main(["run", "--resume", str(out), "--rounds", "3"]) == 2
    assert "has done 5 rounds already" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_with_another_configuration_is_refused_with_the_differences(reference_run, tmp_path, capsys):
    out = copy_run(reference_run, tmp_path)
    before = (out / "metrics.jsonl").read_text()
    code = cli.main(["run", "--resume", str(out), "--clients", "5", "--lr", "0.01", "--algorithm", "locfedmix"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("lfmsl: error:")
    assert "--clients 5 (the run has 4)" in err and "--lr 0.01 (the run has 0.001)" in err
    assert "--algorithm" not in err  # given, but the same as the run's
    assert (out / "metrics.jsonl").read_text() == before


@pytest.mark.slow
def test_a_config_json_edited_by_hand_is_not_resumed_under_the_new_values(reference_run, tmp_path, capsys):
    """The checkpoints keep the configuration they were computed under; an edited config.json (the learning rate)
    is refused in one line naming the change, and nothing is run or rewritten."""
    out = copy_run(reference_run, tmp_path)
    (out / "summary.json").unlink()  # unfinished, so resuming would run rounds
    stored = json.loads((out / "config.json").read_text())
    stored["lr"] = 0.002
    (out / "config.json").write_text(json.dumps(stored))
    before = (out / "metrics.jsonl").read_text()
    code = cli.main(["run", "--resume", str(out), "--rounds", "6"])  # the data folder is the run's own (data_sources.json)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("lfmsl: error:") and "lr 0.001 -> 0.002" in err[-1], err
    assert sum(line.startswith("lfmsl: error") for line in err) == 1 and "Traceback" not in "\n".join(err)
    assert (out / "metrics.jsonl").read_text() == before


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--resume", "{tmp}/nothing"], "holds no run to resume"),
        (["run", "--resume", "{run}", "--out", "{tmp}/elsewhere"], "leave out --out"),
        (["run", "--out", "{run}"], "already holds config.json, metrics.jsonl, summary.json, checkpoints of a run"),
    ],
)
def test_resume_mistakes_are_one_line_errors(reference_run, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, run=reference_run) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err


class FakeSimulation:
    """Rounds with given training losses, and a tiny state, to test the round loop alone."""

    def __init__(self, losses, rounds):
        self.config = Config(rounds=rounds, lr=0.5)
        self.state = {"w": jnp.zeros(3)}
        self.run_key = __import__("jax").random.key(0)
        self.losses = losses

    def rounds(self, start, stop, keep_going=lambda: True):
        for r in range(start, stop):
            if not keep_going():
                return
            self.state = {"w": self.state["w"] + 1}
            yield {"round": r + 1, "test_accuracy": 0.5, "test_loss": 1.0, "train_loss": self.losses[r], "round_time_s": 0.1, "wall_time_s": 0.1 * (r + 1 - start)}


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, bad):
    simulation = FakeSimulation([2.0, 1.5, 1.2, bad, 1.0, 0.9], rounds=6)
    store = checkpoint.Checkpoints(tmp_path)
    with pytest.raises(Diverged) as caught, StopRequests() as stop:
        _run_rounds(simulation, store, RunDir(tmp_path), [], 2, stop, None)
    message = str(caught.value)
    assert f"the training loss became {bad} in round 4" in message
    assert "--lr 0.5" in message and "last good checkpoint (round 2)" in message and "\n" not in message
    assert store.steps() == [2]  # round 3 was fine but is not saved; no state after round 4 is
    assert [r["round"] for r in metrics(tmp_path)] == [1, 2, 3]
    restored = store.latest({"w": jnp.zeros(3)})
    assert restored.rounds_done == 2 and np.array_equal(restored.state["w"], np.full(3, 2.0))
    assert [r["train_loss"] for r in restored.history] == [2.0, 1.5]


@pytest.mark.parametrize("losses, round_, ratio", [([2.0, 1.5, 250.0, 1.0], 3, "125 times round 1's 2"), ([1500.0, 1.0, 1.0, 1.0], 1, None),
                                                  ([20.0, 15.0, 1200.0, 1.0], 3, "60 times")])
def test_a_loss_that_explodes_while_finite_stops_the_run_unless_allowed(tmp_path, losses, round_, ratio):
    with pytest.raises(Diverged) as caught, StopRequests() as stop:
        _run_rounds(FakeSimulation(losses, rounds=4), checkpoint.Checkpoints(tmp_path / "a"), RunDir(tmp_path), [], 1, stop, None)
    message = str(caught.value)
    assert f"exploded to {losses[round_ - 1]:.3g} in round {round_}" in message and "--allow-divergence" in message
    assert ratio is None or ratio in message
    assert caught.value.exit_code == 3
    with StopRequests() as stop:
        history = _run_rounds(FakeSimulation(losses, rounds=4), checkpoint.Checkpoints(tmp_path / "b"), RunDir(tmp_path / "b"), [], 1, stop, None,
                              allow_divergence=True)
    assert [r["train_loss"] for r in history] == losses


@pytest.mark.slow
def test_a_huge_learning_rate_ends_with_exit_3_not_done(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["run", "--data-dir", str(tiny_data_dir), *TINY, "--rounds", "3", "--lr", "1e6", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "lfmsl: error: the training loss" in err and "--lr 1000000.0" in err and "Traceback" not in err and "done." not in err
    assert not (out / "summary.json").exists()


def test_stop_request_ends_the_loop_after_the_round_in_flight_and_saves_it(tmp_path):
    simulation = FakeSimulation([1.0] * 6, rounds=6)
    store = checkpoint.Checkpoints(tmp_path)
    previous = signal.getsignal(signal.SIGTERM)
    with StopRequests() as stop:
        original = simulation.rounds

        def rounds(start, stop_round, keep_going):
            for record in original(start, stop_round, keep_going):
                if record["round"] == 3:
                    os.kill(os.getpid(), signal.SIGTERM)
                yield record

        simulation.rounds = rounds
        history = _run_rounds(simulation, store, RunDir(tmp_path), [], 5, stop, None)
    assert stop.signal_name == "SIGTERM" and len(history) == 3
    assert store.steps() == [3]
    assert signal.getsignal(signal.SIGTERM) == previous  # the handler is put back


@pytest.mark.slow
def test_run_lets_a_sweep_skip_finished_runs_and_refuses_other_configurations(reference_run, tmp_path, no_work):
    out = copy_run(reference_run, tmp_path)
    config = RunDir(out).config()
    # Finished: returned without any work.
    summary = runner.run(config, out, resume=True, options=RunOptions(progress=False)).summary
    assert summary["rounds_completed"] == 5 and summary["config"] == config.to_dict()
    with pytest.raises(UsageError, match=r"another configuration: --clients 8 \(the run has 4\)\. "):
        runner.run(dataclasses.replace(config, clients=8), out, resume=True)
    with pytest.raises(UsageError, match="already holds config.json, metrics.jsonl, summary.json, checkpoints of a run"):
        runner.run(config, out, resume=False)


@pytest.fixture
def no_work(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("data was loaded")

    monkeypatch.setattr("lfmsl.io.data.load_dataset", refuse)


@pytest.mark.slow
def test_a_fresh_run_into_a_folder_with_another_runs_checkpoints_is_refused(reference_run, tmp_path, capsys):
    """Before: it restored the other run's state and 'resumed' it under new options, or deleted its checkpoints."""
    out = tmp_path / "foreign"
    shutil.copytree(reference_run / "checkpoints", out / "checkpoints")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    code = cli.main(["run", "--out", str(out), "--clients", "5", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "holds checkpoints of a run but no config.json" in err and "another --out" in err
    assert f"--resume {out}" not in err  # it could not be resumed (test_every_suggestion_..._leads_on_never_back)
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.name != ".lfmsl.lock") == before  # nothing touched


class Reached(Exception):
    """The command got past every check of its options and folder, to loading the data."""


def attempt(argv, monkeypatch, capsys) -> str | None:
    """None if `lfmsl run argv` is accepted (it gets as far as loading data), else its one-line error."""
    monkeypatch.setattr("lfmsl.io.data.load_dataset", lambda *a, **k: (_ for _ in ()).throw(Reached()))
    capsys.readouterr()
    try:
        code = cli.main(["run", *map(str, argv), "--no-progress"])
    except Reached:
        return None
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def suggested(message: str, folder, elsewhere) -> list[tuple]:
    """The commands an error message sends the user to: --resume/--out of `folder`, another --out, removing `folder`."""
    found = [(flag, folder) for flag in ("--resume", "--out") if f"{flag} {folder} " in message + " " or f"{flag} {folder};" in message]
    if "another --out" in message:
        found.append(("--out", elsewhere))
    if f"remove {folder} " in message:
        found.append(("remove", folder))
    return found


@pytest.mark.parametrize("held", ["checkpoints only", "config.json only"])
def test_every_suggestion_for_a_folder_of_run_files_leads_on_never_back(tmp_path, monkeypatch, capsys, held):
    """Before: a folder of another run's checkpoints (no config.json) was refused with 'continue that run with
    --resume DIR', and --resume DIR with 'start one with --out DIR': a circle."""
    folder, elsewhere = tmp_path / "held", tmp_path / "elsewhere"
    if held == "checkpoints only":
        (folder / "checkpoints" / "2").mkdir(parents=True)
    else:
        RunDir(folder).create().write_config(Config(clients=2), {})
    kept = tmp_path / "kept"
    shutil.copytree(folder, kept)
    tried, todo, accepted = [], [("--out", folder), ("--resume", folder)], 0  # the plain start, and the user trying --resume anyway
    while todo:
        step = todo.pop(0)
        assert step not in tried, f"the suggestions lead back to {step}: {tried}"
        tried.append(step)
        if step[0] == "remove":
            shutil.rmtree(folder)
            step = ("--out", folder)
        message = attempt(step, monkeypatch, capsys)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(kept, folder)  # the next suggestion starts from the same folder
        if message is None:
            accepted += 1
            continue
        if held == "checkpoints only":
            assert "cannot be resumed" in message and f"--resume {folder}" not in message and f"--out {folder}" not in message
        todo += [s for s in suggested(message, folder, elsewhere) if s not in tried and s not in todo]
    assert accepted >= 1 and len(tried) >= 3, tried


def test_a_checkpoint_of_other_shapes_is_a_one_line_refusal_that_moves_nothing(tmp_path):
    """Before: orbax's 'tree structures do not match' counted as damage, every valid checkpoint was moved aside,
    and the next --resume started the run again from round 1."""
    store = checkpoint.Checkpoints(tmp_path)
    state = {"w": jnp.zeros(3), "b": {"c": jnp.ones((2, 2))}}
    store.save(1, state, __import__("jax").random.key(0), [{"round": 1}], 0.0)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    store = checkpoint.Checkpoints(tmp_path)  # as a resumed process opens them
    for like, difference in [
        ({"w": jnp.zeros(4), "b": {"c": jnp.ones((2, 2))}}, "w has shape (3,) where this run has (4,)"),
        ({"w": jnp.zeros(3, jnp.int32), "b": {"c": jnp.ones((2, 2))}}, "w has dtype float32 where this run has int32"),
        ({"v": jnp.zeros(3), "b": {"c": jnp.ones((2, 2))}}, "it lacks v; it holds w, which this run does not have"),
    ]:
        with pytest.raises(UsageError) as refused:
            store.latest(like)
        message = str(refused.value)
        assert difference in message and "does not fit this run" in message and "left in place" in message and "\n" not in message
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing moved, nothing deleted
    assert store.latest(state).rounds_done == 1


@pytest.mark.slow
def test_a_resume_with_checkpoints_of_another_model_is_refused_and_moves_nothing(reference_run, tiny_data_dir, tmp_path, capsys):
    out = copy_run(reference_run, tmp_path)
    (out / "summary.json").unlink()
    folder = RunDir(out)
    folder.write_config(dataclasses.replace(folder.config(), clients=5), folder.sources())  # the checkpoints hold 4 clients
    before = sorted(p.relative_to(out) for p in (out / "checkpoints").rglob("*"))
    code = cli.main(["run", "--resume", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert err.splitlines()[-1].startswith("lfmsl: error: the checkpoint") and "does not fit this run" in err and "has shape (4," in err
    assert sorted(p.relative_to(out) for p in (out / "checkpoints").rglob("*")) == before
    assert not (out / "checkpoints.unreadable").exists() and metrics(out) == metrics(reference_run)


@pytest.mark.slow
def test_a_resume_with_no_readable_checkpoint_never_starts_again_over_what_is_there(reference_run, tiny_data_dir, tmp_path, capsys,
                                                                                    monkeypatch):
    """Before: when every checkpoint was unreadable (or gone), the next --resume silently began again at round 1
    and rewrote metrics.jsonl."""
    out = copy_run(reference_run, tmp_path)
    (out / "summary.json").unlink()
    for manifest in (out / "checkpoints").rglob("manifest.ocdbt"):
        manifest.write_bytes(b"")  # both checkpoints torn
    code = cli.main(["run", "--resume", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert "no checkpoint in" in err.splitlines()[-1] and "each was moved into checkpoints.unreadable/" in err
    assert len(list((out / "checkpoints.unreadable").iterdir())) == 2  # moved aside, not deleted

    monkeypatch.setattr("lfmsl.io.data.load_dataset", lambda *a, **k: pytest.fail("it went on to load data"))
    code = cli.main(["run", "--resume", str(out), "--no-progress"])  # again: refused, before any work
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "holds 5 rounds in metrics.jsonl and 2 checkpoints moved into checkpoints.unreadable/" in err
    assert "remove metrics.jsonl and checkpoints.unreadable" in err and metrics(out) == metrics(reference_run)

    shutil.rmtree(out / "checkpoints.unreadable")  # a run whose checkpoints are gone: the same refusal, for its metrics
    assert cli.main(["run", "--resume", str(out), "--no-progress"]) == 2
    assert "holds 5 rounds in metrics.jsonl but no checkpoint" in capsys.readouterr().err
    (out / "metrics.jsonl").unlink()  # following the advice, the run starts again
    assert attempt(["--resume", out], monkeypatch, capsys) is None


def test_the_noise_of_a_failed_restore_is_dropped_and_nothing_else(tmp_path, monkeypatch):
    """A torn checkpoint's leftover reads (posts to orbax's closed event loop, failed reads nobody awaited) are
    dropped; any other unraisable error, and asyncio's report of any other task, still reach the user."""
    import logging
    import sys
    import types

    seen = []
    monkeypatch.setattr("sys.unraisablehook", seen.append)
    asyncio_log = logging.getLogger("asyncio")
    monkeypatch.setattr(asyncio_log, "filters", [])  # restored afterwards, as the hook is
    checkpoint._quiet_reads_left_running(tmp_path / "checkpoints")
    checkpoint._quiet_reads_left_running(tmp_path / "checkpoints")  # a second restore adds nothing
    unraisable = lambda error: types.SimpleNamespace(exc_value=error, object=None)
    sys.unraisablehook(unraisable(RuntimeError("Event loop is closed")))
    other = unraisable(RuntimeError("something else"))
    sys.unraisablehook(other)
    assert seen == [other]

    def passes(message: str) -> bool:
        return asyncio_log.filter(logging.LogRecord("asyncio", logging.ERROR, __file__, 0, message, None, None))

    read = f'Task exception was never retrieved\nfuture: <Task exception=ValueError(\'local file "{tmp_path}/checkpoints/5/state/"\')>'
    assert not passes(read)
    assert passes(read.replace("checkpoints", "elsewhere"))  # a task of something else
    future = f'Future exception was never retrieved\nfuture: <Future finished exception=ValueError(\'local file "{tmp_path}/checkpoints/5/state/"\')>'
    assert not passes(future)  # tensorstore's reads come as bare futures too (1 resume in 10 or so)
    assert passes(future.replace("checkpoints", "elsewhere"))
    assert passes("Exception in callback: whatever")
    assert sum(isinstance(f, checkpoint.UnawaitedReadsOf) for f in asyncio_log.filters) == 1


def _written_by(thread_writes: list[tuple[str, str]], stream) -> None:
    """Write each (thread, text) in this order, 'main' from this thread and 'worker' from one other thread."""
    import queue
    import threading

    jobs, done = queue.Queue(), queue.Queue()

    def worker():
        while (text := jobs.get()) is not None:
            stream.write(text)
            done.put(True)

    thread = threading.Thread(target=worker)
    thread.start()
    for who, text in thread_writes:
        if who == "main":
            stream.write(text)
        else:
            jobs.put(text)
            done.get()
    jobs.put(None)
    thread.join()


def test_a_closed_loop_traceback_is_dropped_even_with_the_error_line_written_in_its_middle():
    """CI saw the main thread's one line land between a tensorstore thread's traceback lines: the old filter
    took the error line for the traceback's last line, printed the traceback and then its tail."""
    import io

    out = io.StringIO()
    stream = checkpoint.DropClosedLoopTracebacks(out)
    error = "lfmsl: error: no space left on the disk of /x/run (RESOURCE_EXHAUSTED: …); nothing finished is lost\n"
    _written_by([("worker", "Traceback (most recent call last):\n"),
                 ("worker", '  File "asyncio/base_events.py", line 806, in call_soon_threadsafe\n'),
                 ("main", error),
                 ("worker", "    self._check_closed()\n"),
                 ("worker", "    raise RuntimeError('Event loop is closed')\n"),
                 ("worker", "RuntimeError: Event loop is closed\n"),
                 ("main", "round 2/3: acc 41.00%")], stream)
    stream.flush()
    assert out.getvalue() == error + "round 2/3: acc 41.00%"
    other = "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: a real error\n"
    stream.write(other)
    assert out.getvalue().endswith(other)  # every other traceback passes whole
