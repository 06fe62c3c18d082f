"""The experiment scripts: --help, and --quick runs that write their figures and tables."""

import importlib.util
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
NAMES = ("scalability", "convergence", "latency", "ablations")


def load(name):
    spec = importlib.util.spec_from_file_location(f"script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", NAMES)
def test_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load(name).main(["--help"])
    assert exit_info.value.code == 0
    assert "--quick" in capsys.readouterr().out


@pytest.mark.parametrize("name, flag", [("scalability", "--clients"), ("cross_device", "--per-round")])
def test_a_bad_number_list_is_one_line_naming_the_flag(name, flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load(name).main([flag, "10,x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: expected a comma list, each a positive integer, got '10,x'" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_quick_runs_write_figures_and_tables(tmp_path, manual_data_dir, tfds_data_dir):
    data = ["--manual-dir", str(manual_data_dir), "--data-dir", str(tfds_data_dir)]
    runs, out = tmp_path / "runs", tmp_path / "figures"
    common = ["--quick", "--runs-dir", str(runs), *data]
    assert load("scalability").main([*common, "--algorithm", "psl,locfedmix", "--out", str(out / "s")]) == 0
    assert (out / "s" / "scalability_fashion_mnist.png").stat().st_size > 0
    table = (out / "s" / "scalability.md").read_text()
    assert "| psl | 3 | 1 |" in table and "| locfedmix | 3 | 1 |" in table  # algorithm, clients, seeds
    for name in ("convergence", "latency"):  # from the finished runs: nothing is run again
        assert load(name).main(["--quick", "--from-runs", str(runs), "--out", str(out / name)]) == 0
        assert (out / name / f"{name}_fashion_mnist.png").stat().st_size > 0
        assert "LocFedMix-SL" in (out / name / f"{name}.md").read_text()
    # Quick ablations of the settings reuse the LocFedMix-SL run: nothing new is run.
    studies = "mix_alpha,mix_partners,avg_every"
    assert load("ablations").main([*common, "--studies", studies, "--out", str(out / "a")]) == 0
    assert {p.name for p in (out / "a").glob("*.png")} == {"mix_alpha.png", "mix_partners.png", "avg_every.png"}
    assert len(list(runs.glob("*/summary.json"))) == 2


def test_plots_write_labelled_pngs(tmp_path):
    from lfmsl.io import plots

    line = plots.line_plot({"a": ([1, 2], [50.0, 60.0], [1.0, 2.0]), "b": ([1, 2], [55.0, 58.0], None)}, tmp_path / "l.png",
                           "number of clients N", "final test accuracy (%)", "title", logx=True, xticks=[1, 2])
    bar = plots.bar_plot(["none", "mix+loc+fed"], [50.0, 60.0], tmp_path / "b.png", "final test accuracy (%)", "title", [1.0, 0.5])
    assert line.stat().st_size > 0 and bar.stat().st_size > 0


def test_writing_figures_leaves_the_callers_pyplot_alone(tmp_path):
    """A notebook calling `lfmsl.run` (which writes accuracy.png) must still see its own plt.show()."""
    import subprocess
    import sys

    probe = ("import matplotlib; matplotlib.use('svg'); import matplotlib.pyplot as plt\n"
             "from lfmsl.io import plots\n"
             f"plots.bar_plot(['a'], [1.0], {str(tmp_path / 'b.png')!r}, 'y', 't')\n"
             "print(matplotlib.get_backend(), len(plt.get_fignums()))")
    printed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert printed == ["svg", "0"]


def test_compare_torch_refuses_what_it_cannot_compare(tmp_path, capsys):
    bench = load("bench")
    program = tmp_path / "peer.py"
    program.write_text("")
    no_torch = tmp_path / "python"
    no_torch.write_text("#!/bin/sh\nexit 1\n")
    no_torch.chmod(0o755)
    cases = [
        (["--compare-torch", str(tmp_path / "missing.py")], "--compare-torch: no program at"),
        (["--compare-torch", str(program), "--algorithms", "psl"], "leave --algorithms, --models and --clients-per-round"),
        (["--compare-torch", str(program), "--clients-per-round", "5"], "leave --algorithms, --models and --clients-per-round"),
        (["--compare-torch", str(program), "--torch-python", str(no_torch)], "needs torch, which"),
        (["--compare-torch", str(program), "--torch-python", str(tmp_path / "nowhere")], "cannot be run"),
    ]
    for argv, message in cases:
        assert bench.main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_the_peer_is_timed_by_its_median_and_the_ratio_is_lfmsl_over_it(tmp_path):
    import sys

    bench = load("bench")
    counter = tmp_path / "calls"
    program = tmp_path / "peer.py"  # a stand-in for the PyTorch program: each call 10 client-steps/s faster
    program.write_text(
        "import argparse, json, pathlib\n"
        "p = argparse.ArgumentParser(); p.add_argument('--clients', type=int); p.add_argument('--batch', type=int); p.add_argument('--iters', type=int)\n"
        "a = p.parse_args(); c = pathlib.Path(%r); n = int(c.read_text()) if c.exists() else 0; c.write_text(str(n + 1))\n"
        "print(json.dumps({'client_steps_per_s': a.clients * a.iters + 10 * n}))\n" % str(counter))
    peer = bench.run_peer(program, sys.executable, clients=7, batch=8, iterations=3, repeats=3, timeout=60)
    assert peer == {"client_steps_per_s": 31.0}  # median of 21, 31, 41
    result = bench.add_ratio({"clients": 7, "batch_size": 8, "executor": "auto", "resolved_executor": "vmap", "client_steps_per_s": 62.0}, peer)
    assert result["ratio_to_torch"] == 2.0
    assert "| 7 | 8 | 31.0 | auto (vmap) | 62.0 | 2.00 |" in bench.comparison_table([result])
    failed = bench.run_peer(tmp_path / "missing.py", sys.executable, 7, 8, 3, 1, 60)
    assert failed["error"].startswith("exit 2")
    assert "ratio_to_torch" not in bench.add_ratio({"clients": 7, "batch_size": 8, "executor": "auto", "client_steps_per_s": 62.0}, failed)


def test_the_cost_plot_draws_each_case_line_against_n_and_refuses_nothing_to_draw(tmp_path, monkeypatch):
    bench = load("bench")
    case = lambda algorithm, n, round_s, gib, **extra: {"algorithm": algorithm, "clients": n, "model": "cnn", "cut": None, "executor": "auto",
                                                        "clients_per_round": 100, "round_s": round_s, "peak_memory_bytes": gib * 2**30, **extra}
    results = [case("psl", 10000, 0.43, 3.1), case("psl", 100, 0.49, 1.0), case("locfedmix", 100, 0.64, 1.2),
               case("locfedmix", 1000, 0.7, 2.0, error="out of memory")]
    path = bench.cost_plot(results, tmp_path / "cost.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    figure_axes = []
    monkeypatch.setattr("lfmsl.io.plots.save", lambda figure, where: figure_axes.extend(figure.axes) or where)  # what is drawn
    bench.cost_plot(results, tmp_path / "again.png")
    time_axes, memory_axes = figure_axes
    psl = next(line for line in time_axes.get_lines() if line.get_label() == "psl, cnn, auto")
    assert list(psl.get_xdata()) == [100, 10000] and list(psl.get_ydata()) == [0.49, 0.43]  # sorted by N
    locfedmix = next(line for line in memory_axes.get_lines() if line.get_label() == "locfedmix, cnn, auto")
    assert list(locfedmix.get_xdata()) == [100] and list(locfedmix.get_ydata()) == [1.2]  # the failed case left out
    assert memory_axes.get_xlabel() == "enrolled clients N, 100 per round"
    with pytest.raises(ValueError, match="nothing to plot"):
        bench.cost_plot([case("psl", 100, 1.0, 1.0, error="boom")], tmp_path / "none.png")


HLO = """HloModule jit_round

%fused_computation.1 (param_0: f32[4,9]) -> f32[] {
  %param_0 = f32[4,9]{1,0} parameter(0)
  %mul.1 = f32[4,9]{1,0} multiply(%param_0, %param_0), metadata={op_name="jit(round)/while/body/Decoder/deconv2/mul"}
  ROOT %reduce.1 = f32[] reduce(%mul.1), metadata={op_name="jit(round)/while/body/reduce_sum"}
}

%fused_computation.2 (param_0.1: f32[4,9], param_1: f32[9,8]) -> f32[4,8] {
  %param_0.1 = f32[4,9]{1,0} parameter(0)
  %param_1 = f32[9,8]{1,0} parameter(1)
  ROOT %dot.7 = f32[4,8]{1,0} dot(%param_0.1, %param_1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

ENTRY %main.9 (p: f32[4,9], w: f32[9,8]) -> (f32[], /*index=1*/f32[4,8]) {
  %p = f32[4,9]{1,0} parameter(0)
  %w = f32[9,8]{1,0} parameter(1)
  %loss_fusion = f32[] fusion(%p), kind=kLoop, calls=%fused_computation.1, metadata={op_name="jit(round)/while/body/reduce_sum"}
  %ynn_fusion.3 = f32[4,8]{1,0} fusion(%p, %w), kind=kCustom, calls=%fused_computation.2, metadata={op_name="jit(round)/jvp(vmap(Segment))/conv2/dot_general"}
  %concatenate.2 = f32[4,9]{1,0} concatenate(%p, %p), dimensions={1}, metadata={op_name="jit(round)/jvp(vmap(Segment))/conv2/patches/concatenate"}
  %beta.4 = f32[4]{0} rng-bit-generator(%p), metadata={op_name="jit(round)/server/jvp(mixup)/jit(_beta)/jit(_gamma)"}
  %add.5 = f32[4,9]{1,0} add(%p, %p), metadata={op_name="jit(round)/while/body/client_optimizer/vmap()/add"}
  %while.6 = (f32[], f32[4,8]) while(%p), condition=%cond, body=%body, metadata={op_name="jit(round)/while"}
  ROOT %tuple.8 = (f32[], /*index=1*/f32[4,8]) tuple(%loss_fusion, %ynn_fusion.3)
}
"""


def test_the_profile_groups_each_operation_by_its_scope_or_what_it_computes():
    profile = load("profile_round")
    table = profile.parse_hlo(HLO)
    assert table["ynn_fusion.3"]["dot"] and not table["loss_fusion"]["dot"]
    groups = {name: profile.group_of(table[name]) for name in ("loss_fusion", "ynn_fusion.3", "concatenate.2", "beta.4", "add.5")}
    assert groups == {"loss_fusion": "decoder",  # an unscoped root: the scope of what it fuses
                      "ynn_fusion.3": "matmuls", "concatenate.2": "patch building", "beta.4": "mixup", "add.5": "optimizer"}
    trace = {"traceEvents": [{"ph": "X", "name": "ynn_fusion.3", "dur": 300.0}, {"ph": "X", "name": "ynn_fusion.3", "dur": 100.0},
                             {"ph": "X", "name": "loss_fusion", "dur": 100.0}, {"ph": "X", "name": "while.6", "dur": 1000.0},
                             {"ph": "X", "name": "ThunkExecutor::Execute", "dur": 5000.0}, {"ph": "M", "name": "concatenate.2"}]}
    times = profile.operation_times(trace, table)
    assert times == {"ynn_fusion.3": 400.0, "loss_fusion": 100.0}  # the loop and the runtime's own events are not operations
    result = profile.breakdown(times, table, top=1)
    assert result["groups"]["matmuls"] == {"seconds": 400e-6, "share": 0.8} and result["groups"]["decoder"]["share"] == 0.2
    assert [op["name"] for op in result["top"]] == ["ynn_fusion.3"]


@pytest.mark.parametrize("argv, message", [(["--model", "vgg"], "--model: 'vgg' is not MODEL or MODEL:CUT"),
                                           (["--algorithm", "sl"], "profile a parallel algorithm"),
                                           (["--executor", "fast"], "executor"), (["--clients", "0"], "must be positive")])
def test_profile_round_refuses_bad_input_in_one_line(argv, message, capsys):
    assert load("profile_round").main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_privacy_cost_times_a_round_and_a_measurement_side_by_side(capsys):
    load("privacy_cost").main(["--quick", "--algorithms", "psl"])
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split()[:2] == ["algorithm", "N"]
    name, clients, round_s, measure_s, attacks, share, percent = row.split()
    assert (name, clients, attacks, percent) == ("psl", "2", "shadow", "%")
    # the share is the run's measurements (after rounds 1 and 2) against its 2 rounds, from times printed to 0.01 s
    want = 100 * 2 * float(measure_s) / (2 * float(round_s))
    assert abs(float(share) - want) <= 1 + want * 0.005 / min(float(measure_s), float(round_s))


def test_bench_times_runs_in_one_program_and_the_evaluations_share(capsys):
    bench = load("bench")
    base = {"algorithm": "psl", "clients": 2, "batch_size": 8, "model": "cnn", "cut": None, "iterations": 1,
            "repeats": 1, "conv": "patches", "clients_per_round": None, "executor": "vmap"}
    group = bench.run_case({**base, "runs": 3})
    assert group["client_steps_per_s"] == pytest.approx(3 * 2 * 1 / group["round_s"])
    alone = bench.run_case({**base, "runs": 1, "evaluate": True})
    assert alone["client_steps_per_s"] == pytest.approx(2 / alone["round_s"])
    assert alone["evaluation_s"] > 0 and 0 < alone["evaluation_share"] < 1
    assert " eval %" in bench.table([alone], {"device_kind": "cpu", "platform": "cpu", "cpu_count": 2,
                                             "peak_flops": 1e9, "peak_bytes_per_s": 1e9, "peak_source": "test"})
    for argv, message in ((["--runs", "0"], "--runs must be a comma list of positive integers"),
                          (["--runs", "1,2", "--evaluate"], "--evaluate times one run's evaluation")):
        assert bench.main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_the_collectives_of_a_trace_are_summed_over_threads_against_its_span():
    events = [{"ph": "X", "name": "all-reduce.3", "ts": 0.0, "dur": 200.0, "tid": 1},
              {"ph": "X", "name": "all-reduce.3", "ts": 0.0, "dur": 100.0, "tid": 2},
              {"ph": "X", "name": "all-gather.1", "ts": 500.0, "dur": 50.0, "tid": 1},
              {"ph": "X", "name": "ynn_fusion.2", "ts": 200.0, "dur": 800.0, "tid": 1},
              {"ph": "M", "name": "all-reduce.9"}]
    found = load("profile_round").collectives({"traceEvents": events})
    assert found == {"span_s": 1000e-6, "collectives_s": pytest.approx(350e-6),
                     "by_kind": {"all-reduce": pytest.approx(300e-6), "all-gather": pytest.approx(50e-6)}}


@pytest.mark.parametrize("start, every, segments", [
    (0, 1, [(0, 1), (1, 2), (2, 3), (3, 4)]),
    (0, 3, [(0, 1), (1, 2), (2, 3), (3, 6)]),  # the traced round (the second) is a segment of its own
    (2, 5, [(2, 3), (3, 4), (4, 5), (5, 8)]),
])
def test_the_traced_round_is_the_sessions_second_and_a_segment_of_its_own(start, every, segments):
    from lfmsl.experiments.round_profile import RoundProfile

    profile, done, found = RoundProfile("trace", start), start, []
    while len(found) < len(segments):
        end = profile.segment_end(done, min(8, (done // every + 1) * every))
        found.append((done, end))
        done = end
    assert found == segments and profile.round == start + 1


@pytest.mark.slow
def test_a_profiled_run_writes_a_trace_of_its_second_round_and_the_same_records(tmp_path, tiny_data_dir, compile_cache,
                                                                                reference_run):
    from cli_runs import TINY, environment, metrics, run

    out, trace = tmp_path / "run", tmp_path / "trace"
    done = run(["--data-dir", tiny_data_dir, *TINY, "--rounds", "5", "--checkpoint-every", "1", "--profile", trace,
                "--out", out], environment(compile_cache))
    assert done.returncode == 0, done.stderr
    assert metrics(out) == metrics(reference_run)
    table = load("profile_round").trace_report(str(trace))
    assert table.splitlines()[2].startswith("| . | ") and len(table.splitlines()) == 3


def test_the_process_check_compares_every_number_of_every_round():
    largest = load("check_processes").largest_difference
    a = [{"round": 1, "test_accuracy": 0.5, "train_loss": 2.0}, {"round": 2, "test_accuracy": 0.6, "train_loss": 1.0}]
    assert largest(a, [dict(r) for r in a]) == (0.0, "-")
    assert largest(a, [a[0], {**a[1], "train_loss": 1.5}]) == (pytest.approx(1 / 3), "train_loss, round 2")
    assert largest(a, [a[0], {"round": 2, "test_accuracy": 0.6}]) == (float("inf"), "train_loss")  # a field missing
    with pytest.raises(ValueError):
        largest(a, a[:1])  # a round missing
