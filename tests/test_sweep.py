"""lfmsl sweep: the grid from comma lists, one folder per run, tables over seeds, skipping finished runs."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from lfmsl.costs import comm

from lfmsl.experiments import sweep
from lfmsl.cli import build_parser, main
from lfmsl.config import Config
from lfmsl.errors import UsageError
from lfmsl.costs.latency import model_for
from lfmsl.io.rundir import RunDir
from synthetic import tiny_dataset


def test_comma_lists_make_a_grid():
    args = build_parser().parse_args(["sweep", "--algorithm", "psl,locfedmix", "--clients", "2,4", "--seed", "0,1",
                                      "--mix-alpha", "0.5", "--out", "x"])
    configs = sweep.grid(vars(args))
    assert len(configs) == 8
    assert {(c.algorithm, c.clients, c.seed) for c in configs} == {(a, n, s) for a in ("psl", "locfedmix") for n in (2, 4) for s in (0, 1)}
    assert {(c.algorithm, c.mix_alpha) for c in configs} == {("locfedmix", 0.5), ("psl", 1.0)}  # psl does not mix


@pytest.mark.parametrize("argv, message", [
    (["sweep", "--algorithm", "psl,nope", "--out", "x"], "--algorithm"),
    (["sweep", "--clients", "2,zero", "--out", "x"], "--clients"),
])
def test_bad_lists_are_one_line_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lfmsl: error:") and message in err and "\n" not in err


def test_run_names_are_stable_and_distinct():
    a = Config(algorithm="locfedmix", clients=4, mix=False, mix_alpha=0.5)
    assert sweep.run_name(a) == "locfedmix_fashion_mnist_n4_s0_no-mix_mix-alpha=0.5"
    assert sweep.run_name(Config(partition="dirichlet:0.5")) != sweep.run_name(Config())


def fake_run(seed, accuracy, **options):
    config = Config(seed=seed, **options)
    return sweep.Run(config, Path(sweep.run_name(config)), {"final_test_accuracy": accuracy, "best_test_accuracy": accuracy,
                                                             "sim_latency_s": 2.0, "comm_bytes": 10, "total_wall_time_s": 1.0})


def test_tables_average_over_seeds(tmp_path):
    runs = [fake_run(0, 0.5, clients=4), fake_run(1, 0.7, clients=4), fake_run(0, 0.9, clients=8)]
    rows = sweep.aggregate(runs)
    assert [(r["clients"], r["seeds"]) for r in rows] == [(4, 2), (8, 1)]
    assert rows[0]["final_test_accuracy_mean"] == pytest.approx(0.6)
    assert rows[0]["final_test_accuracy_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert rows[1]["final_test_accuracy_std"] == 0.0
    sweep.write_tables(rows, tmp_path)
    assert (tmp_path / "results.csv").read_text().startswith("clients,seeds,final_test_accuracy_mean")
    table = (tmp_path / "results.md").read_text()
    assert "| 4 | 2 | 60.00 ± 14.14 |" in table and "| 8 | 1 | 90.00 |" in table


@pytest.mark.slow
def test_sweep_runs_skips_finished_runs_and_resumes_unfinished_ones(tmp_path):
    loads = []
    load = lambda name: loads.append(name) or tiny_dataset()
    config = Config(algorithm="psl", clients=2, rounds=2, batch_size=16, eval_clients=1, target_accuracy=0.05)
    (run,) = sweep.run_sweep([config], tmp_path, load, log=lambda m: None)
    assert loads == ["fashion_mnist"] and run.path == tmp_path / sweep.run_name(config)

    # The records carry the ledger: cumulative bytes equal the closed-form rounds.
    records = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    traffic = comm.traffic(config, model_for(config), run.summary["resolved"]["iterations_per_round"])
    per_round = [sum(comm.round_bytes(traffic, config, r).values()) for r in range(2)]
    assert [r["comm_bytes"] for r in records] == [per_round[0], per_round[0] + per_round[1]]
    assert records[1]["sim_latency_s"] == pytest.approx(2 * records[0]["sim_latency_s"])
    assert run.summary["sim_latency_s"] == records[1]["sim_latency_s"]
    assert run.summary["rounds_to_target"] == 1  # any accuracy beats 5%

    # A re-run finds the run finished: no data loaded, nothing run, the same summary.
    (again,) = sweep.run_sweep([config], tmp_path, load, log=lambda m: None)
    assert loads == ["fashion_mnist"] and again.summary == run.summary
    # A run stopped after round 1 (no summary, newest checkpoint round 1) resumes from there and
    # recomputes round 2 exactly as before.
    import shutil

    (run.path / "summary.json").unlink()
    shutil.rmtree(run.path / "checkpoints" / "2")
    (third,) = sweep.run_sweep([config], tmp_path, load, log=lambda m: None)
    assert loads == ["fashion_mnist"] * 2 and third.summary["rounds_completed"] == 2
    assert third.summary["resumed_after_round"] == 1
    resumed = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    timing = ("round_time_s", "wall_time_s")
    assert [{k: v for k, v in r.items() if k not in timing} for r in resumed] == [
        {k: v for k, v in r.items() if k not in timing} for r in records
    ]
    # Another configuration in the same folder is refused.
    with pytest.raises(UsageError, match=r"another configuration: --clients 3 \(the run has 2\)"):
        RunDir(run.path).finished(dataclasses.replace(config, clients=3))


@pytest.mark.slow
def test_runs_that_share_a_program_load_it_from_the_sweeps_cache_with_the_same_numbers(tmp_path, no_compile_cache):
    """Seed 1 after seed 0 loads the program seed 0 compiled; alone in another sweep it compiles it: same records."""
    import jax

    from lfmsl.core.compile_cache import FOLDER

    configs = [Config(algorithm="psl", clients=2, rounds=1, batch_size=16, eval_clients=1, seed=s) for s in (0, 1)]
    load = lambda name: tiny_dataset()
    programs = lambda: sorted(path.name for path in (tmp_path / "both" / FOLDER).iterdir())
    sweep.run_sweep(configs[:1], tmp_path / "both", load, log=lambda m: None)
    compiled = programs()
    assert compiled and jax.config.jax_compilation_cache_dir is None  # put back once the sweep ends
    runs = sweep.run_sweep(configs, tmp_path / "both", load, log=lambda m: None)  # seed 0 is done: seed 1 runs
    assert programs() == compiled  # not one program more
    (alone,) = sweep.run_sweep(configs[1:], tmp_path / "alone", load, log=lambda m: None)
    timing = ("round_time_s", "wall_time_s")
    records = lambda run: [{k: v for k, v in json.loads(line).items() if k not in timing}
                           for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert records(runs[1]) == records(alone)


def test_a_cache_the_user_set_is_left_as_it_is(tmp_path, session_compile_cache):
    import jax

    from lfmsl.core.compile_cache import FOLDER, kept_programs

    with kept_programs(tmp_path):
        assert jax.config.jax_compilation_cache_dir == str(session_compile_cache)
    assert not (tmp_path / FOLDER).exists()


@pytest.mark.slow
def test_a_damaged_kept_program_is_one_line_and_compiled_afresh(tmp_path, no_compile_cache, capsys):
    from lfmsl.core.compile_cache import FOLDER

    configs = [Config(algorithm="psl", clients=2, rounds=1, batch_size=16, eval_clients=1, seed=s) for s in (0, 1, 2)]
    load = lambda name: tiny_dataset()
    sweep.run_sweep(configs[:1], tmp_path, load, log=lambda m: None)
    for entry in (tmp_path / FOLDER).iterdir():  # cut short, as by a full disk or a kill mid-write
        entry.write_bytes(entry.read_bytes()[:100])
    capsys.readouterr()
    runs = sweep.run_sweep(configs[:2], tmp_path, load, log=lambda m: None)
    err = capsys.readouterr().err
    assert runs[1].summary is not None and "warnings.warn" not in err
    said = [line for line in err.splitlines() if "could not be read" in line]
    assert len(said) == 1 and said[0].startswith("lfmsl: a program kept in") and "the folder was emptied" in said[0]
    sweep.run_sweep(configs, tmp_path, load, log=lambda m: None)  # the programs kept anew read back
    assert "could not be read" not in capsys.readouterr().err
