"""`lfmsl run` end to end on real data, and its answers to bad input."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys

import pytest

from lfmsl.cli import build_parser, main


def run_cli(args, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "lfmsl", *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_run_writes_metrics_summary_and_plot(tmp_path, manual_data_dir, tfds_data_dir, fashion_mnist, compile_cache):
    from cli_runs import compile_cache_environment

    out = tmp_path / "run"
    result = run_cli(
        ["run", "--algorithm", "psl", "--clients", "4", "--rounds", "2", "--train-size", "400", "--batch-size", "16",
         "--eval-clients", "0", "--test-size", "2000", "--out", str(out), "--no-progress",
         "--manual-dir", str(manual_data_dir), "--data-dir", str(tfds_data_dir)],
        compile_cache_environment(compile_cache),
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2]
    for record in records:
        for field in ("test_accuracy", "train_loss", "wall_time_s", "update_ratio", "client_drift",
                      "test_accuracy_std"):
            assert field in record
        assert 0.0 <= record["test_accuracy_min"] <= record["test_accuracy"] <= record["test_accuracy_max"] <= 1.0
    assert records[1]["wall_time_s"] > records[0]["wall_time_s"] > 0
    assert records[-1]["test_accuracy"] > 0.3  # 10 classes: well above chance after two rounds
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["algorithm"] == "psl" and summary["config"]["clients"] == 4
    assert summary["final_test_accuracy"] == records[-1]["test_accuracy"]
    assert summary["best_test_accuracy"] == max(r["test_accuracy"] for r in records)
    assert summary["versions"]["jax"] and summary["device"]["platform"] == "cpu"
    # the suite's own XLA flags (conftest.py) change the numbers: recorded, and named in the run's first line
    flags = {**os.environ, **compile_cache_environment(compile_cache)}.get("XLA_FLAGS", "")
    assert summary["numerics"] == {"jax_enable_x64": False, "jax_default_matmul_precision": None, "xla_flags": flags}
    assert flags and f"numbers differ from a default run's: XLA_FLAGS='{flags}')" in result.stderr.splitlines()[0]
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "final accuracy" in result.stderr


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "--algorithm", "nope"], "--algorithm"),
        (["run", "--dataset", "imagenet"], "--dataset"),
        (["run", "--clients", "0"], "--clients"),
        (["run", "--batch-size", "-3"], "--batch-size"),
        (["run", "--lr", "-0.1"], "--lr"),
        (["run", "--lr", "nan"], "--lr"),
        (["run", "--server-lr", "0"], "--server-lr"),
        (["run", "--clients", "4", "--mix-partners", "4"], "--mix-partners"),
        (["run", "--algorithm", "psl", "--no-mix"], "--no-mix"),
        (["run", "--partition", "dirichlet:-1"], "dirichlet"),
        (["run", "--partition", "zipf"], "partition"),
        (["run", "--executor", "chunked:0"], "chunked"),
        (["run", "--mix-alpha", "0"], "--mix-alpha"),
        (["frobnicate"], "frobnicate"),
        ([], "lfmsl run"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, args, expected):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lfmsl: error:") and "\n" not in err and "Traceback" not in err
    assert expected in err


def test_more_clients_than_samples_is_refused(capsys, tmp_path, manual_data_dir, tfds_data_dir, fashion_mnist):
    code = main(["run", "--clients", "50", "--train-size", "20", "--out", str(tmp_path / "x"), "--no-progress",
                 "--manual-dir", str(manual_data_dir), "--data-dir", str(tfds_data_dir)])
    err = capsys.readouterr().err
    assert code == 2 and "lfmsl: error: --clients 50 is more than the 20 training samples" in err


def run_help() -> str:
    with pytest.raises(SystemExit), contextlib.redirect_stdout(io.StringIO()) as text:
        build_parser().parse_args(["run", "--help"])
    return text.getvalue()


def test_help_explains_every_option():
    text = run_help()
    for flag in ("--algorithm", "--dataset", "--clients", "--rounds", "--batch-size", "--partition", "--train-size",
                 "--seed", "--out", "--executor", "--no-mix", "--no-loc", "--no-fed", "--mix-alpha", "--mix-partners",
                 "--avg-every", "--loc-weight", "--lr", "--client-lr", "--server-lr", "--manual-dir"):
        assert flag in text
    assert "--mix-alpha A         mixup lam ~ Beta(A, A) (default: 1.0)" in text
    assert "--client-lr CLIENT_LR\n                        client-side learning rate (default: --lr)" in text


def test_every_option_is_a_flag_of_run_and_sweep():
    """The flags are generated from the Config fields: none is left out, and each parses to its default."""
    from lfmsl.config import Config

    for command in ("run", "sweep"):
        args = vars(build_parser().parse_args([command, "--out", "x"]))
        parsed = {name: args[name] for name in Config.__dataclass_fields__}
        if command == "sweep":  # argparse passes a text default through the flag's type: a list of one
            parsed = {name: value[0] if isinstance(value, list) else value for name, value in parsed.items()}
        assert parsed == Config().to_dict()


def test_a_declared_field_becomes_a_flag_with_its_help_kind_and_comma_list():
    """What a new option needs: one field with its declaration."""
    from lfmsl.config import POSITIVE_INT, option
    from lfmsl.experiments.flags import add_flags

    @dataclasses.dataclass(frozen=True)
    class Toy:
        widgets: int = option(3, "toys", metavar="W", kind=POSITIVE_INT, help="widgets per client")
        shiny: bool = option(True, "toys", help="dull widgets")
        colour: str = option("red", "toys", choices=("red", "blue"), help="one of {choices}")

    single, lists = argparse.ArgumentParser(), argparse.ArgumentParser()
    add_flags(single, Toy)
    add_flags(lists, Toy, lists=True)
    text = single.format_help()
    assert "widgets per client (default: 3)" in text and "one of red, blue (default: red)" in text
    assert vars(single.parse_args(["--widgets", "5", "--no-shiny"])) == {"widgets": 5, "shiny": False, "colour": "red"}
    assert lists.parse_args(["--widgets", "1,2", "--colour", "blue,red"]).widgets == [1, 2]
    for parser, argv in ((single, ["--widgets", "0"]), (single, ["--colour", "green"]), (lists, ["--widgets", "1,0"]),
                         (lists, ["--colour", "red,green"])):
        with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
            parser.parse_args(argv)


@pytest.mark.slow
def test_cifar10_runs_end_to_end_on_tfds_mock_data(tmp_path, monkeypatch, compile_cache):
    """The CIFAR-10 path: tfds (mock data) -> cache -> resnet18 split model -> LocFedMix-SL round.

    The run is a subprocess compiled fast (fast_jit.py): what is checked is the path, not the numbers.
    With the patch convolutions (level 0 runs XLA's own as slow loops) it costs 27 s of CPU against
    51 s at the default level."""
    from cli_runs import environment, run
    from lfmsl.io import data

    monkeypatch.setattr(data, "_online", lambda: True)  # the mock stands in for the download
    tfds = data.import_tfds()
    with tfds.testing.mock_data(num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE):
        data.load_dataset("cifar10", manual_dir=tmp_path, data_dir=tmp_path)
    out = tmp_path / "run"
    done = run(["--dataset", "cifar10", "--clients", "2", "--rounds", "1", "--batch-size", "4", "--conv", "patches",
                "--data-dir", tmp_path, "--out", out, "--no-progress"], environment(compile_cache, fast_compile=True))
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resolved"]["model"] == "resnet18" and summary["resolved"]["iterations_per_round"] == 3
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert 0.0 <= record["test_accuracy"] <= 1.0 and record["local_loss"] > 0.0
