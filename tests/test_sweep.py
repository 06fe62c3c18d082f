"""lfmsl sweep: the grid from comma lists, one folder per run, tables over seeds, skipping finished runs."""

import json

import numpy as np
import pytest

from lfmsl import comm, sweep
from lfmsl.cli import build_parser, main
from lfmsl.config import Config
from lfmsl.data import Dataset
from lfmsl.latency import model_for


def tiny_dataset() -> Dataset:
    """40 random training and 20 test images: enough to run the machinery, in seconds."""
    rng = np.random.default_rng(0)
    images = lambda n: rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)
    labels = lambda n: np.arange(n) % 10
    return Dataset("fashion_mnist", images(40), labels(40), images(20), labels(20), 10)


def test_comma_lists_make_a_grid():
    args = build_parser().parse_args(["sweep", "--algorithm", "psl,locfedmix", "--clients", "2,4", "--seed", "0,1",
                                      "--mix-alpha", "0.5", "--out", "x"])
    configs = sweep.grid(vars(args))
    assert len(configs) == 8
    assert {(c.algorithm, c.clients, c.seed) for c in configs} == {(a, n, s) for a in ("psl", "locfedmix") for n in (2, 4) for s in (0, 1)}
    assert {c.mix_alpha for c in configs} == {0.5}


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


def test_sweep_runs_skips_finished_runs_and_tabulates(tmp_path):
    loads = []
    load = lambda name: loads.append(name) or tiny_dataset()
    base = Config(algorithm="psl", clients=2, rounds=2, eval_clients=1, target_accuracy=0.05)
    configs = [base, Config(**{**base.to_dict(), "seed": 1})]
    runs = sweep.run_sweep(configs, tmp_path, load, log=lambda m: None)
    assert loads == ["fashion_mnist"]  # one load per dataset
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(sweep.run_name(c) for c in configs)

    # The records carry the ledger: cumulative bytes equal the closed-form rounds.
    records = [json.loads(line) for line in (runs[0].path / "metrics.jsonl").read_text().splitlines()]
    traffic = comm.traffic(base, model_for(base), runs[0].summary["resolved"]["iterations_per_round"])
    per_round = [sum(comm.round_bytes(traffic, base, r).values()) for r in range(2)]
    assert [r["comm_bytes"] for r in records] == [per_round[0], per_round[0] + per_round[1]]
    assert records[1]["sim_latency_s"] == pytest.approx(2 * records[0]["sim_latency_s"])
    assert runs[0].summary["sim_latency_s"] == records[1]["sim_latency_s"]
    assert runs[0].summary["rounds_to_target"] == 1  # any accuracy beats 5%

    rows = sweep.aggregate(runs)
    assert len(rows) == 1 and rows[0]["seeds"] == 2
    finals = [r.summary["final_test_accuracy"] for r in runs]
    assert rows[0]["final_test_accuracy_mean"] == pytest.approx(np.mean(finals))
    assert rows[0]["final_test_accuracy_std"] == pytest.approx(np.std(finals, ddof=1))
    sweep.write_tables(rows, tmp_path)
    assert (tmp_path / "results.csv").read_text().startswith("algorithm,seeds,final_test_accuracy_mean")
    assert "± " in (tmp_path / "results.md").read_text()

    # A re-run finds both runs finished: no data loaded, nothing run, same summaries.
    again = sweep.run_sweep(configs, tmp_path, load, log=lambda m: None)
    assert loads == ["fashion_mnist"] and [r.summary for r in again] == [r.summary for r in runs]
    # An unfinished run (metrics but no summary) is run again from the start.
    (runs[1].path / "summary.json").unlink()
    third = sweep.run_sweep(configs, tmp_path, load, log=lambda m: None)
    assert loads == ["fashion_mnist"] * 2 and third[1].summary["rounds_completed"] == 2
    assert len((runs[1].path / "metrics.jsonl").read_text().splitlines()) == 2
