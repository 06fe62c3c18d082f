"""The reproduction study: samples per client, the statistics that decide, and the quick study end to end."""

import dataclasses
import math

import numpy as np
import pytest

from lfmsl.experiments import study

from lfmsl.reporting import stats
from lfmsl.algorithms import validate
from lfmsl.config import Config
from lfmsl.errors import UsageError
from lfmsl.experiments.round_builder import client_partition


def skewed_labels(seed=0):
    """1,000 labels of 5 classes in unequal proportions (400, 300, 150, 100, 50), shuffled."""
    labels = np.repeat(np.arange(5), [400, 300, 150, 100, 50])
    return np.random.default_rng(seed).permutation(labels)


def test_each_client_holds_k_samples_of_a_stratified_draw():
    labels = skewed_labels()
    client_indices = client_partition(Config(clients=4, samples_per_client=50), labels)
    assert [len(p) for p in client_indices] == [50] * 4
    union = np.concatenate(client_indices)
    assert len(np.unique(union)) == 200  # disjoint
    counts = np.bincount(labels[union], minlength=5)
    expected = np.array([400, 300, 150, 100, 50]) * 200 / 1000  # the full set's class shares
    assert np.all(np.abs(counts - expected) <= 1)


def test_more_clients_bring_more_data_and_the_draw_depends_on_the_seed():
    labels = skewed_labels()
    small = np.concatenate(client_partition(Config(clients=2, samples_per_client=30, seed=3), labels))
    large = np.concatenate(client_partition(Config(clients=10, samples_per_client=30, seed=3), labels))
    other = np.concatenate(client_partition(Config(clients=2, samples_per_client=30, seed=4), labels))
    assert (len(small), len(large)) == (60, 300)
    assert set(small) != set(other)


def test_samples_per_client_with_a_dirichlet_partition_covers_the_draw():
    labels = skewed_labels()
    client_indices = client_partition(Config(clients=5, samples_per_client=40, partition="dirichlet:0.3"), labels)
    assert sum(map(len, client_indices)) == 200 and min(map(len, client_indices)) >= 1
    assert len({len(p) for p in client_indices}) > 1  # sizes vary under label skew


@pytest.mark.parametrize("values, message", [
    (dict(samples_per_client=0), "--samples-per-client must be a positive integer"),
    (dict(samples_per_client=10, train_size=100), "not both"),
])
def test_bad_samples_per_client_is_refused_without_data(values, message):
    with pytest.raises(UsageError, match=message):
        validate(Config(**values))


def test_more_samples_than_the_training_set_is_refused():
    with pytest.raises(UsageError, match="11 x --samples-per-client 100 = 1100 samples, but the training set has 1000"):
        client_partition(Config(clients=11, samples_per_client=100), skewed_labels())


def test_the_sweep_takes_a_list_of_samples_per_client():
    from lfmsl.cli import build_parser
    from lfmsl.experiments.sweep import grid

    args = build_parser().parse_args(["sweep", "--out", "x", "--clients", "10,20", "--samples-per-client", "100,300"])
    assert sorted((c.clients, c.samples_per_client) for c in grid(vars(args))) == [(10, 100), (10, 300), (20, 100), (20, 300)]


# Statistics against values computed by hand.

def test_t_quantiles_are_the_table_values():
    assert stats.t975(1) == 12.706 and stats.t975(2) == 4.303 and stats.t975(30) == 2.042 and stats.t975(1000) == 1.96
    with pytest.raises(ValueError):
        stats.t975(0)


def test_estimate_mean_std_and_interval():
    e = stats.estimate([1.0, 2.0, 6.0])  # mean 3, deviations -2, -1, 3: variance 14 / 2 = 7
    assert e.mean == 3.0 and e.n == 3
    assert math.isclose(e.std, math.sqrt(7))
    assert math.isclose(e.half_width, 4.303 * math.sqrt(7) / math.sqrt(3))
    assert math.isclose(e.interval[0], 3 - 4.303 * math.sqrt(7 / 3))
    single = stats.estimate([0.5])
    assert single.std is None and single.interval is None
    assert stats.estimate([]) is None


def test_paired_difference_uses_the_seeds_both_have():
    ours, theirs = {0: 0.80, 1: 0.82, 2: 0.84, 3: 0.9}, {0: 0.78, 1: 0.79, 2: 0.80}
    d = stats.paired_difference(ours, theirs)  # differences 0.02, 0.03, 0.04
    assert d.n == 3 and math.isclose(d.mean, 0.03) and math.isclose(d.std, 0.01)
    assert math.isclose(d.half_width, 4.303 * 0.01 / math.sqrt(3))


@pytest.mark.parametrize("values, direction, expected", [
    ([0.02, 0.03, 0.04], 1, stats.SUPPORTED),        # interval 0.03 +- 0.025: above zero
    ([0.02, 0.03, 0.04], -1, stats.CONTRADICTED),    # fewer was the claim, ours is larger
    ([-2.0, -3.0, -4.0], -1, stats.SUPPORTED),       # e.g. fewer rounds to a target
    ([-0.01, 0.03, 0.04], 1, stats.UNDECIDED),       # interval 0.02 +- 0.065 holds zero
    ([0.05], 1, stats.UNDECIDED),                    # one seed decides nothing
])
def test_verdicts(values, direction, expected):
    assert stats.verdict(stats.estimate(values), direction) == expected


def test_the_study_has_every_part_at_its_stated_size():
    scale = study.Scale()
    a = study.scaling(scale)
    assert len(a) == 6 * 4 * 3 and {c.samples_per_client for c in a} == {300} and {c.rounds for c in a} == {10}
    assert {c.seed for c in a} == {0, 1, 2} and {c.clients for c in a} == {10, 20, 50, 100} and {c.test_size for c in a} == {None}
    b = study.imbalance(scale, 0.03)
    assert len(b) == 5 * 2 * 3 and {(c.optimizer, c.client_grad, c.lr) for c in b if c.algorithm != "locsplitfed"} == {("sgd", "global", 0.03)}
    assert {c.client_grad for c in b if c.algorithm == "locsplitfed"} == {"own"}  # it sends no gradient down: the option would do nothing
    assert [c.lr for c in study.lr_check(scale)] == [0.01, 0.03, 0.1]
    c = study.non_iid(scale)
    assert len(c) == 6 * 3 and {x.partition for x in c} == {"dirichlet:0.3"} and {x.clients for x in c} == {50}
    assert {x.round_mode for x in c} == {"wrap"} and {x.round_mode for x in study.non_iid(scale, "epoch")} == {"epoch"}
    d = study.ablations(scale)
    assert len(set(d)) == (8 + 2) * 3 and {x.avg_every for x in d} == {None, 1, 5}
    e = study.cut_depth(scale)
    assert len(e) == 6 * 2 * 2 * 3 and {(x.model, x.cut) for x in e} == {("allconv", 1), ("allconv", 4)} and {x.clients for x in e} == {10, 100}
    for config in a + b + c + d + e:
        validate(config)


def test_the_best_rate_wins_and_a_tie_goes_to_the_smaller():
    assert study.best_rate([(0.01, 0.5), (0.03, 0.7), (0.1, 0.6)]) == 0.03
    assert study.best_rate([(0.1, 0.7), (0.03, 0.7)]) == 0.03


@pytest.mark.slow
def test_quick_study_end_to_end_then_resumes_without_work(tmp_path, manual_data_dir, tfds_data_dir, compile_cache):
    """scripts/reproduce.py --quick runs every part, writes the report, and a second call finds it all finished.

    In a subprocess compiled fast (fast_jit.py): what is checked here is the pipeline, not the numbers."""
    import subprocess
    import sys

    from cli_runs import environment
    from test_scripts import SCRIPTS

    results, env = tmp_path / "study", environment(compile_cache, fast_compile=True)
    # each cell's 2 seeds as one program: half the compiles (the numbers are the runs' alone, tests/test_grouped.py)
    argv = [sys.executable, str(SCRIPTS / "reproduce.py"), "--quick", "--results", str(results), "--manual-dir", str(manual_data_dir),
            "--data-dir", str(tfds_data_dir), "--runs-per-program", "2"]
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    scale = study.Scale.quick()
    expected = {*study.scaling(scale), *study.lr_check(scale), *study.non_iid(scale), *study.non_iid(scale, "epoch"), *study.ablations(scale),
                *study.cut_depth(scale)}
    finished = {p.parent.name for p in (results / "runs").glob("*/summary.json")}
    assert {study.sweep.run_name(c) for c in expected} <= finished
    assert len(finished) == len(expected) + 2 * 2  # (b): PSL and LocFedMix-SL, 2 seeds, at the chosen rate
    report = (results / "REPORT.md").read_text()
    for heading in ("## Verdicts", "## (a) Scalability", "## (a) Convergence", "## (a) Latency", "## (b) The imbalance regime",
                    "## (c) Non-IID clients", "## (d) Ablations", "## (e) Where the model is cut"):
        assert heading in report
    assert "Chosen: **" in report and report.count("**undecided**") + report.count("**supported**") + report.count("**contradicted**") > 5
    for figure in ("scalability", "convergence", "latency", "imbalance", "ablations"):
        assert (results / "figures" / f"{figure}.png").stat().st_size > 0
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "compiling" not in again.stderr  # everything is found finished: nothing runs again


@pytest.mark.parametrize("flag", ["--sections", "--parts"])  # --parts: studies' commands use it
@pytest.mark.parametrize("script", ["reproduce", "privacy"])
def test_a_study_refuses_an_unknown_section(script, flag, capsys):
    from test_scripts import load

    with pytest.raises(SystemExit) as exit_info:
        load(script).main([flag, "a,z"])
    assert exit_info.value.code == 2 and "unknown section(s) z" in capsys.readouterr().err


def test_the_scripts_take_samples_per_client():
    from lfmsl.experiments import script_options

    parser = script_options.parser("x", "", datasets="fashion_mnist", rounds=2, train_size=3000, clients="10")
    args = script_options.parse(parser, ["--samples-per-client", "300"])
    config = script_options.base_config(args, clients=20)
    assert (config.samples_per_client, config.train_size) == (300, None)
    validate(config)
