"""Many runs, one program: a run trained in a group gives what it gives alone, and a sweep's groups lose nothing."""

import dataclasses
import json
import shutil

import jax
import numpy as np
import pytest

from lfmsl.algorithms import names
from lfmsl.config import Config
from lfmsl.errors import UsageError
from lfmsl.experiments import sweep
from lfmsl.experiments.grouped import GroupSimulation, program_of
from lfmsl.experiments.run_options import RunOptions
from lfmsl.experiments.simulation import Simulation
from synthetic import tiny_dataset
from tolerance import SGD, sgd

PIXELS = 28 * 28
BATCH = 8
TIMING = ("round_time_s", "wall_time_s")


def floats(record: dict) -> dict:
    return {k: v for k, v in record.items() if isinstance(v, float) and k not in TIMING}


def assert_records_close(got: dict, want: dict, tolerance: dict) -> None:
    """Two records of one round: the same keys, the same test accuracy, every other number within `tolerance`."""
    assert got.keys() == want.keys()
    assert got["test_accuracy"] == want["test_accuracy"]
    for key, value in floats(want).items():
        np.testing.assert_allclose(got[key], value, err_msg=key, **tolerance)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", names())
def test_a_run_in_a_group_gives_what_it_gives_alone(algorithm):
    """The second run of a group differs from the first in every value (seed, rates, mixup alpha, local weight),
    so a value taken from the group's first run, or baked into the program, shows up here."""
    dataset = tiny_dataset(train=60, test=40)
    first = Config(algorithm=algorithm, clients=3, rounds=2, batch_size=BATCH, **SGD)
    # (sequential SL's seed draws its relay order, a constant of its program: its groups share their seed)
    second = dataclasses.replace(first, seed=0 if algorithm == "sl" else 1, lr=0.1, mix_alpha=0.5, loc_weight=0.5)
    group = GroupSimulation([first, second], dataset)
    group.start()
    together = [records[1] for records in group.rounds(0, 2)]
    alone = Simulation(second, dataset)
    records = list(alone.rounds(0, 2))
    # The runs axis changes how XLA batches the convolutions and products, so the two programs round apart
    # (docs/DETERMINISM.md): SGD keeps that rounding (tolerance.py), 2 rounds of 3 iterations at most.
    tolerance = sgd(steps=6, reduction=BATCH * PIXELS, lr=0.1)
    for got, want in zip(together, records):
        assert_records_close(got, want, tolerance)
    for got, want in zip(jax.tree.leaves(group.state_of(1)), jax.tree.leaves(alone.state)):
        if np.asarray(want).dtype.kind == "f":
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), **tolerance)
        else:
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize("algorithm", ["psl", "locfedmix"])
def test_groups_that_differ_only_in_values_lower_to_one_program(algorithm):
    """No seed, rate, alpha or weight is a constant of the program: two groups of other values, one program text."""
    dataset = tiny_dataset(train=60, test=40)
    base = Config(algorithm=algorithm, clients=3, rounds=2, batch_size=BATCH)

    def text(*values: dict) -> str:
        group = GroupSimulation([dataclasses.replace(base, **v) for v in values], dataset)
        group.start()
        return group.lower_round().as_text()

    one = text(dict(seed=0), dict(seed=1, lr=3e-3))
    other = text(dict(seed=5, lr=0.2, mix_alpha=0.3), dict(seed=7, client_lr=1e-4, loc_weight=0.0))
    assert one == other


def test_a_sweep_groups_the_runs_that_differ_only_in_values():
    runs = [sweep.Run(config, None) for config in [
        Config(algorithm="psl", seed=0), Config(algorithm="psl", seed=1, lr=0.1), Config(algorithm="locfedmix"),
        Config(algorithm="psl", seed=2, clients=20), Config(algorithm="psl", seed=3),
        Config(algorithm="psl", seed=4, privacy_every=1), Config(algorithm="sl", seed=0), Config(algorithm="sl", seed=1)]]
    groups = [[runs.index(run) for run in group] for group in sweep.programs(runs, most=100)]
    # psl seeds 0, 1, 3 share a program; other clients, another algorithm, --privacy-every and SL's relay order
    # drawn from its seed each make a program of their own
    assert groups == [[0, 1, 4], [2], [3], [5], [6], [7]]
    assert [[runs.index(run) for run in group] for group in sweep.programs(runs, most=2)][:2] == [[0, 1], [4]]
    assert all(len(group) == 1 for group in sweep.programs(runs, most=1))
    assert len(sweep.programs(runs)) == (len(runs) if jax.default_backend() == "cpu" else 6)  # CPU: each alone
    assert program_of(runs[0].config) == program_of(runs[1].config) != program_of(runs[6].config)


def records_of(path) -> list[dict]:
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_grouped_sweep_gives_its_runs_results_and_resumes_and_stops_each_run_alone(tmp_path, capsys):
    load = lambda name: tiny_dataset(train=60, test=40)
    base = Config(algorithm="psl", clients=2, rounds=4, batch_size=16, eval_clients=1, **SGD)
    configs = [dataclasses.replace(base, seed=3, lr=1e6)]  # its loss explodes: it stops, the others go on
    configs += [dataclasses.replace(base, seed=s) for s in (0, 1, 2)]
    logged = []
    options = RunOptions(progress=False, checkpoint_every=1, runs_per_program=4)
    grouped = sweep.run_sweep(configs, tmp_path / "grouped", load, options, log=logged.append)
    alone = sweep.run_sweep(configs, tmp_path / "alone", load, dataclasses.replace(options, runs_per_program=1),
                            log=lambda message: None)
    compiles = capsys.readouterr().err.count("compiled in")
    assert compiles == 1 + 4  # one program for the four runs, and one each for them alone
    assert [run.exit_code for run in grouped] == [run.exit_code for run in alone] == [3, 0, 0, 0]
    assert "exploded" in grouped[0].skipped and grouped[0].summary is None
    tolerance = sgd(steps=4 * 2, reduction=16 * PIXELS)
    for together, single in zip(grouped[1:], alone[1:]):
        assert together.summary["rounds_completed"] == 4
        for got, want in zip(records_of(together.path), records_of(single.path), strict=True):
            assert_records_close(got, want, tolerance)
    # Killed apart: seed 1 after its round-3 checkpoint, seed 2 in round 1, before any. Each resumes from where it
    # stopped (two groups) and recomputes what was lost as before.
    before = {run.path: records_of(run.path) for run in grouped}
    (grouped[2].path / "summary.json").unlink()
    shutil.rmtree(grouped[2].path / "checkpoints" / "4")
    for lost in ("summary.json", "metrics.jsonl", "checkpoints"):
        shutil.rmtree(grouped[3].path / lost) if lost == "checkpoints" else (grouped[3].path / lost).unlink()
    logged.clear()
    again = sweep.run_sweep(configs, tmp_path / "grouped", load, options, log=logged.append)
    assert capsys.readouterr().err.count("compiled in") == 2  # one group from round 3, one from the start
    assert [run.skipped is None for run in again] == [False, True, True, True], logged
    assert [run.summary["resumed_after_round"] for run in again[2:]] == [3, 0]
    for run in again[1:]:
        for got, want in zip(records_of(run.path), before[run.path], strict=True):
            assert_records_close(got, want, tolerance)
    assert again[1].summary == grouped[1].summary  # finished: found, not run


@pytest.mark.slow
def test_lfmsl_run_takes_a_list_of_configurations_and_gives_a_list_of_outcomes(tmp_path):
    """The Python API groups as a sweep does: the same program, so the same numbers bit for bit, and a run that
    diverges is its error in the list while the others finish."""
    import lfmsl
    from lfmsl.errors import Diverged

    dataset = tiny_dataset(train=60, test=40)
    base = Config(algorithm="psl", clients=2, rounds=2, batch_size=16, eval_clients=1, **SGD)
    configs = [base, dataclasses.replace(base, seed=1), dataclasses.replace(base, seed=2, lr=1e6)]
    options = RunOptions(progress=False, runs_per_program=3)
    first = lfmsl.run(configs, out=tmp_path / "a", options=options, dataset=dataset)
    second = lfmsl.run(configs, out=[tmp_path / "b" / str(i) for i in range(3)], options=options, dataset=dataset)
    assert isinstance(first[2], Diverged) and isinstance(second[2], Diverged)
    for one, other in zip(first[:2], second[:2]):
        assert one.path.parent == tmp_path / "a" and len(one.history) == 2
        assert [{k: v for k, v in r.items() if k not in TIMING} for r in one.history] == [
            {k: v for k, v in r.items() if k not in TIMING} for r in other.history]
    assert first[0].history[-1]["test_loss"] != first[1].history[-1]["test_loss"]  # two seeds, two runs
    with pytest.raises(UsageError, match="one distinct folder per configuration"):
        lfmsl.run(configs, out=[tmp_path / "c"] * 3, options=options, dataset=dataset)


def test_a_large_groups_round_is_one_short_line(capsys):
    from types import SimpleNamespace

    from lfmsl.experiments import group_runner

    records = [{"round": 3, "test_accuracy": 0.5 + 0.01 * i, "train_loss": 1.0 - 0.1 * i, "round_time_s": 2.0}
               for i in range(6)]
    members = [SimpleNamespace(outcome=None, history=[r]) for r in records]
    members[5].outcome, members[5].history = "diverged", []  # stopped in an earlier round
    group_runner._show(members, records, 10)
    line = capsys.readouterr().err.strip()
    assert line == "round 3/10: 5 runs: acc 50.00 to 54.00% loss 0.6000 to 1.0000, 1 stopped (2.0 s)"
    group_runner._show(members[:2], records[:2], 10)
    assert capsys.readouterr().err.strip() == "round 3/10: acc 50.00% loss 1.0000 | acc 51.00% loss 0.9000 (2.0 s)"


def test_runs_whose_partitions_differ_in_shape_run_as_separate_programs():
    """A non-IID partition draws other client sizes for each seed: such runs cannot share a program, and a
    group of them says which can (a sweep then runs each set as its own program, group_runner.py)."""
    from lfmsl.experiments.grouped import ShapesDiffer

    dataset = tiny_dataset(train=120, test=40)
    configs = [Config(algorithm="psl", clients=3, rounds=1, batch_size=BATCH, partition="dirichlet:0.3", seed=seed)
               for seed in range(3)]
    with pytest.raises(ShapesDiffer) as differ:
        GroupSimulation(configs, dataset)
    assert sorted(i for group in differ.value.groups for i in group) == [0, 1, 2]
    assert len(differ.value.groups) > 1
    shapes = lambda c: Simulation(c, dataset).data.client_index.shape
    for group in differ.value.groups:
        assert len({shapes(configs[i]) for i in group}) == 1
