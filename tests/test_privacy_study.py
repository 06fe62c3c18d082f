"""The privacy study: which runs it is made of, and the quick study end to end, resumed without work."""

import pytest

from lfmsl.algorithms import validate
from lfmsl.experiments import privacy_study as ps


def test_the_study_is_the_runs_the_issue_asks_for():
    scale = ps.Scale()
    a, a100 = ps.algorithms(scale, scale.clients), ps.algorithms(scale, scale.clients_large)
    assert len(set(a)) == 8 * 3 and {c.clients for c in a} == {10} and {c.clients for c in a100} == {100}
    assert {c.algorithm for c in a} == set(ps.SPLIT_ALGORITHMS) and {c.seed for c in a} == {0, 1, 2}
    b = ps.locfedmix_variants(scale)
    assert {(c.loc_weight, c.average_decoders) for c in b} == {(0.0, True), (0.1, True), (1.0, True), (1.0, False)}
    c = ps.defences(scale)
    assert len(set(c)) == 2 * 6 * 3 and {x.algorithm for x in c} == {"psl", "locfedmix"}
    assert {x.nopeek_weight for x in c} == {0.0, 0.1, 1.0, 5.0} and {x.smash_noise for x in c} == {0.0, 0.1, 0.5, 2.0}
    d = ps.cut_depth(scale)
    assert {(x.model, x.cut) for x in d} == {("allconv", 1), ("allconv", 4)}
    for config in a + a100 + b + c + d:
        assert config.samples_per_client == 300 and config.rounds == 10 and config.privacy_every == 5 and config.aux_size == 1000
        validate(config)


@pytest.mark.slow
def test_quick_privacy_study_end_to_end_then_resumes_without_work(tmp_path, manual_data_dir, tfds_data_dir, compile_cache):
    """scripts/privacy.py --quick, part (a): the runs, the report with its paired table and pictures, and a second
    call that finds everything finished. In a subprocess compiled fast (fast_jit.py): the pipeline, not the numbers."""
    import subprocess
    import sys

    from cli_runs import environment
    from test_scripts import SCRIPTS

    results, env = tmp_path / "privacy", environment(compile_cache, fast_compile=True)
    argv = [sys.executable, str(SCRIPTS / "privacy.py"), "--quick", "--parts", "a", "--results", str(results), "--manual-dir",
            str(manual_data_dir), "--data-dir", str(tfds_data_dir)]
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    scale = ps.Scale.quick()
    finished = {p.parent.name for p in (results / "runs").glob("*/summary.json")}
    assert finished == {ps.sweep.run_name(c) for c in ps.algorithms(scale, scale.clients)}
    report = (results / "REPORT.md").read_text()
    assert "## (a) Every split algorithm at N = 2" in report and "| LocFedMix-SL minus PSL | shadow_ssim |" in report
    assert "| LocFedMix-SL |" in report and "no runs yet" not in report.split("## (a100)")[0]
    assert (results / "figures" / "reconstructions-n2.png").stat().st_size > 0
    assert all((results / "runs" / name / "privacy_images.npz").is_file() for name in finished)
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "compiling" not in again.stderr  # everything is found finished: nothing runs again

