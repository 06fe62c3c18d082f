"""Every bad option or combination ends in one line `lfmsl: error: ...`, a non-zero exit, and
no traceback, before any data is loaded (or, for checks that need the data, before compiling)."""

import math
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_runs import SRC, TINY
from lfmsl import cli
from lfmsl.algorithms import names
from lfmsl.datasets import DATASETS

ALGORITHMS = names()
from lfmsl.errors import UsageError
from lfmsl.core.executors import parse_executor
from lfmsl.models import MODELS
from lfmsl.core.partition import parse_partition
from lfmsl.privacy.threats import parse_attacks


def _number(text, kind):
    try:
        return kind(text)
    except (ValueError, OverflowError):
        return None


def positive_int(v):
    n = _number(v, int)
    return n is not None and n >= 1


def non_negative_int(v):
    n = _number(v, int)
    return n is not None and n >= 0


def seed(v):
    return non_negative_int(v) and int(v) < 2**32


def positive_float(v):
    f = _number(v, float)
    return f is not None and math.isfinite(f) and f > 0


def non_negative_float(v):
    f = _number(v, float)
    return f is not None and math.isfinite(f) and f >= 0


def probability_below_one(v):
    f = _number(v, float)
    return f is not None and 0 <= f < 1


def fraction(v):
    f = _number(v, float)
    return f is not None and 0 < f <= 1


def parses(parser):
    def valid(v):
        try:
            parser(v)
            return True
        except UsageError:
            return False

    return valid


def one_of(names):
    return lambda v: v in names


VALID = {  # flag -> what a good value is, judged here independently of the code under test
    "--clients": positive_int, "--rounds": positive_int, "--batch-size": positive_int, "--mix-partners": positive_int,
    "--avg-every": positive_int, "--clients-per-round": positive_int, "--train-size": positive_int, "--samples-per-client": positive_int, "--checkpoint-every": positive_int,
    "--seed": seed, "--eval-clients": non_negative_int,
    "--lr": positive_float, "--client-lr": positive_float, "--server-lr": positive_float, "--mix-alpha": positive_float,
    "--loc-weight": non_negative_float, "--gradmix-fraction": fraction, "--dropout": probability_below_one,
    "--device-spread": non_negative_float, "--round-deadline": positive_float,
    "--algorithm": one_of(ALGORITHMS), "--dataset": one_of(DATASETS), "--model": one_of(MODELS),
    "--conv": one_of(("patches", "xla")), "--loc-loss": one_of(("mse", "bce")), "--client-grad": one_of(("own", "global")),
    "--partition": parses(parse_partition), "--executor": parses(parse_executor),
    "--privacy-every": positive_int, "--privacy-probes": lambda v: positive_int(v) and int(v) >= 2, "--aux-size": positive_int,
    "--attack-steps": positive_int, "--attack-lr": positive_float, "--nopeek-weight": non_negative_float,
    "--smash-noise": non_negative_float, "--attacks": parses(parse_attacks),
}
BAD_NUMBERS = ["0", "-1", "-0.5", "nan", "-nan", "inf", "-inf", "1e400", "0.0", "1.5", "1e3", "", " ", "abc", "2**3", "4294967296",
               "99999999999999999999999", "shards:0", "dirichlet:-1", "chunked:0", "loop:2", "iid:3"]
FLAGS = set(VALID) | {"--no-mix", "--no-loc", "--no-fed", "--no-average-decoders", "--no-overlap", "--no-progress", "--out", "--resume",
                      "--manual-dir", "--data-dir", "--help", "-h"}


INERT = [  # (algorithm, option it has no use for), judged from the specification
    *[(a, ["--mix-alpha", "0.5"]) for a in ("sl", "psl", "sflv1", "sflv2", "locsplitfed", "sglr", "centralized", "fedavg")],
    *[(a, ["--mix-partners", "2"]) for a in ("psl", "sflv2", "sglr")],
    ("locfedmix", ["--no-mix", "--mix-alpha", "2"]),
    *[(a, ["--loc-weight", "2"]) for a in ("psl", "locsplitfed", "mix2sfl")],
    ("locfedmix", ["--no-loc", "--loc-loss", "bce"]),
    ("locfedmix", ["--no-loc", "--no-average-decoders"]),
    *[(a, ["--gradmix-fraction", "0.3"]) for a in ("psl", "locfedmix", "sglr")],
    *[(a, ["--client-grad", "global"]) for a in ("sl", "locsplitfed", "sglr", "mix2sfl", "centralized", "fedavg")],
    *[(a, ["--avg-every", "2"]) for a in ("sl", "psl", "sglr", "centralized")],
    ("locfedmix", ["--no-fed", "--avg-every", "2"]),
]


@st.composite
def bad_value(draw):
    flag = draw(st.sampled_from(sorted(VALID)))
    value = draw(st.one_of(st.sampled_from(BAD_NUMBERS), st.text(max_size=12)).filter(lambda v: not VALID[flag](v)))
    return [flag, value]


@st.composite
def bad_combination(draw):
    kind = draw(st.sampled_from(["switch", "partners", "one_client", "both_sizes", "inert", "unknown_flag", "missing_value", "resume",
                                 "per_round", "no_clients", "privacy"]))
    if kind == "privacy":  # measures or defences where no smashed data crosses, or that cannot apply
        return draw(st.sampled_from([
            ["--algorithm", draw(st.sampled_from(["centralized", "fedavg"])), *draw(st.sampled_from(
                [["--privacy-every", "1"], ["--nopeek-weight", "1"], ["--smash-noise", "0.5"]]))],
            ["--rounds", "3", "--privacy-every", str(draw(st.integers(4, 50)))],
            [draw(st.sampled_from(["--aux-size", "--privacy-probes", "--attack-steps"])), "5"],  # without --privacy-every
            ["--algorithm", draw(st.sampled_from(["psl", "sglr", "sflv1", "locsplitfed"])), "--privacy-every", "1", "--attacks", "decoder"],
            ["--algorithm", draw(st.sampled_from(["psl", "sglr"])), "--privacy-every", "1", "--attacks", "shadow,inverse"],
            ["--algorithm", "locfedmix", "--no-average-decoders", "--privacy-every", "1", "--attacks", "decoder"],
            ["--privacy-every", "1", "--clients-per-round", "5"],
        ]))
    if kind == "inert":  # an option that does nothing in this combination
        algorithm, option = draw(st.sampled_from(INERT))
        return ["--algorithm", algorithm, *option]
    if kind == "switch":  # LocFedMix-SL's switches on another algorithm
        algorithm = draw(st.sampled_from([a for a in ALGORITHMS if a != "locfedmix"]))
        return ["--algorithm", algorithm, draw(st.sampled_from(["--no-mix", "--no-loc", "--no-fed"]))]
    if kind == "partners":  # as many partners as clients or more
        clients = draw(st.integers(2, 50))
        partners = draw(st.integers(clients, 100))
        return ["--algorithm", draw(st.sampled_from(["locfedmix", "mix2sfl"])), "--clients", str(clients), "--mix-partners", str(partners)]
    if kind == "per_round":  # more participants per round than clients
        clients = draw(st.integers(1, 50))
        return ["--clients", str(clients), "--clients-per-round", str(draw(st.integers(clients + 1, 100)))]
    if kind == "no_clients":  # client sampling or failures for the one central learner
        option = draw(st.sampled_from([["--dropout", "0.3"], ["--clients-per-round", "1"], ["--device-spread", "1"],
                                       ["--round-deadline", "5"]]))
        return ["--algorithm", "centralized", "--clients", "2", *option]
    if kind == "both_sizes":  # a fixed training set and a size per client at once
        return ["--train-size", str(draw(st.integers(1, 1000))), "--samples-per-client", str(draw(st.integers(1, 100)))]
    if kind == "one_client":
        return ["--algorithm", draw(st.sampled_from(["locfedmix", "mix2sfl"])), "--clients", "1"]
    if kind == "unknown_flag":
        name = draw(st.text(st.characters(min_codepoint=45, max_codepoint=122), min_size=1, max_size=10))
        return ["--" + name] if "--" + name not in FLAGS else ["--bogus"]
    if kind == "missing_value":
        return [draw(st.sampled_from(sorted(VALID)))]
    return ["--resume", "/nonexistent/lfmsl-run"]


@pytest.fixture
def no_data(monkeypatch):
    """Fail loudly (a traceback, so the test fails) if a bad option gets as far as loading data."""

    def refuse(*args, **kwargs):
        raise AssertionError("data was loaded although the options were bad")

    monkeypatch.setattr("lfmsl.io.data.load_dataset", refuse)


def assert_one_line_error(code, capsys, progress_lines=0) -> str:
    """The run failed with exactly one error line, last, after at most `progress_lines` others."""
    out, err = capsys.readouterr()
    assert code != 0
    assert "Traceback" not in err
    lines = err.splitlines()
    assert 1 <= len(lines) <= 1 + progress_lines, err
    assert lines[-1].startswith("lfmsl: error: ") and len(lines[-1]) > len("lfmsl: error: "), err
    assert sum(line.startswith("lfmsl: error:") for line in lines) == 1, err
    return lines[-1]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.one_of(bad_value(), bad_combination()))
def test_bad_options_end_in_one_line_before_any_data(case, tmp_path, capsys, no_data):
    capsys.readouterr()
    code = cli.main(["run", "--out", str(tmp_path / "out"), *case])
    assert_one_line_error(code, capsys)


def test_an_unwritable_output_folder_is_a_one_line_error(tmp_path, capsys, no_data):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_one_line_error(cli.main(["run", "--out", str(blocker / "run")]), capsys)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--clients", "700"], "more than the 600 training samples"),
        (["--train-size", "601"], "larger than the training set"),
        (["--clients", "4", "--partition", "shards:200"], "needs 800 shards"),
        (["--clients", "7", "--samples-per-client", "100"], "7 x --samples-per-client 100 = 700 samples, but the training set has 600"),
        (["--clients", "2", "--batch-size", "400"], "--batch-size 400 is more than any client holds (at most 300 samples)"),
        (["--clients", "2", "--samples-per-client", "200", "--privacy-every", "1", "--aux-size", "201"],
         "--aux-size 201 is more than the 200 training samples no client holds"),
    ],
)
def test_data_dependent_checks_come_before_compiling(options, message, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["run", "--data-dir", str(tiny_data_dir), "--no-progress", "--out", str(out), *options])
    assert message in assert_one_line_error(code, capsys, progress_lines=1)  # 'lfmsl: locfedmix on ...' comes first
    assert not out.exists()  # the folder it created is gone, so the same --out can be used once the options are fixed


@pytest.mark.parametrize("options", [["--clients", "0"], ["--lr", "nan"]])
def test_the_command_line_program_exits_2_with_one_line(options):
    done = subprocess.run([sys.executable, "-m", "lfmsl", "run", *options], capture_output=True, text=True,
                          env={"PYTHONPATH": str(SRC), "PATH": ""}, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("lfmsl: error: ") and "Traceback" not in done.stderr


@pytest.mark.parametrize("platform, install", [("cuda", "jax[cuda13]"), ("tpu", "jax[tpu]")])
@pytest.mark.parametrize("command", ["run", "sweep"])
def test_a_platform_jax_cannot_start_is_one_line_that_says_what_to_install(platform, install, command, tmp_path):
    """A GPU user whose CUDA wheel is missing: JAX's own failure is a bare AssertionError inside orbax."""
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "lfmsl", command, "--train-size", "64", "--clients", "2", "--rounds", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(SRC), "PATH": "", "JAX_PLATFORMS": platform, "HOME": str(tmp_path)})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lfmsl: error: JAX found no working") and install in lines[0], done.stderr
    assert not out.exists()  # refused before anything was written


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_an_empty_out_is_refused(capsys, no_data, command):
    assert cli.main([command, "--out", ""]) == 2
    assert "expected a folder name" in assert_one_line_error(2, capsys)


def test_a_batch_larger_than_only_some_clients_is_a_warning_and_the_suggested_batch_is_accepted(capsys):
    """A skewed partition (dirichlet:0.3, the study's part c) leaves some clients smaller than a batch; they
    already wrap around their data to keep up with the largest client, so they are named, not refused."""
    from lfmsl.experiments.round_builder import check_batch_size

    check_batch_size(32, [10, 31, 300])
    assert capsys.readouterr().err == "lfmsl: 2 of 3 clients hold fewer than --batch-size 32 samples; their batches repeat samples\n"
    with pytest.raises(UsageError, match="use --batch-size 300 or less"):
        check_batch_size(400, [300, 300])
    check_batch_size(300, [300, 300])  # the suggestion: no refusal, no warning
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("algorithm", ["locfedmix", "mix2sfl"])
def test_the_one_client_mixup_error_suggests_only_what_is_accepted(algorithm):
    from lfmsl.algorithms import validate
    from lfmsl.config import Config

    with pytest.raises(UsageError) as refused:
        validate(Config(algorithm=algorithm, clients=1))
    if "--no-mix" in str(refused.value):
        validate(Config(algorithm=algorithm, clients=1, mix=False))  # the suggestion works
    else:
        assert algorithm == "mix2sfl"


@pytest.mark.parametrize("algorithm, option", INERT)
def test_an_inert_option_is_refused_naming_it_and_accepted_where_it_applies(algorithm, option):
    from lfmsl.algorithms import validate
    from lfmsl.config import Config

    flag = next(o for o in option if o.startswith("--") and o not in ("--no-mix", "--no-loc", "--no-fed"))
    name = flag.removeprefix("--no-").removeprefix("--").replace("-", "_")
    value = False if flag.startswith("--no-") else type(getattr(Config(), name) or 1)(option[option.index(flag) + 1])
    switches = {s.removeprefix("--no-"): False for s in option if s in ("--no-mix", "--no-loc", "--no-fed")}
    with pytest.raises(UsageError, match=f"{flag}.* does nothing here"):
        validate(Config(algorithm=algorithm, **switches, **{name: value}))
    where = {"mix_alpha": "locfedmix", "mix_partners": "mix2sfl", "loc_weight": "locfedmix", "loc_loss": "locfedmix",
             "average_decoders": "locfedmix", "gradmix_fraction": "mix2sfl", "client_grad": "psl", "avg_every": "sflv1"}[name]
    validate(Config(algorithm=where, **{name: value}))


def test_a_sweep_grid_drops_inert_options_and_runs_each_meaningful_run_once():
    from lfmsl.experiments.sweep import grid

    notes = []
    configs = grid({"algorithm": ["psl", "locfedmix"], "mix_alpha": [0.5, 1.0], "clients": 4}, notes.append)
    assert sorted((c.algorithm, c.mix_alpha) for c in configs) == [("locfedmix", 0.5), ("locfedmix", 1.0), ("psl", 1.0)]
    assert notes == ["lfmsl sweep: options that do nothing there are left out: --mix-alpha for psl"]


def test_the_memory_error_of_the_loop_does_not_suggest_the_loop():
    from types import SimpleNamespace

    from lfmsl.core import memory

    huge = SimpleNamespace(memory_analysis=lambda: SimpleNamespace(temp_size_in_bytes=2**60))
    for executor, suggests_loop in (("vmap", True), ("loop", False)):
        with pytest.raises(UsageError) as refused:
            memory.require_fit(huge, executor, 1000)
        assert ("--executor loop" in str(refused.value).split("; use ")[1]) == suggests_loop
