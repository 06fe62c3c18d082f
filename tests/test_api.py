"""lfmsl.run: one simulation from Python, returning exactly what its run folder holds."""

from pathlib import Path

import pytest

import lfmsl
from lfmsl.errors import UsageError
from lfmsl.io.rundir import RunDir
from synthetic import tiny_dataset


def test_run_returns_the_records_and_summary_its_folder_holds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = lfmsl.Config(algorithm="psl", clients=2, rounds=2, batch_size=16, eval_clients=1)
    result = lfmsl.run(config, dataset=tiny_dataset(), progress=False)  # out=None: a new folder under runs/, as the CLI
    assert result.path.parent == Path("runs") and result.path.name.startswith("psl-fashion_mnist-")
    folder = RunDir(result.path)
    assert [r["round"] for r in result.history] == [1, 2]
    assert result.history == folder.metrics()
    assert result.summary == folder.summary() == folder.finished(config)
    assert result.summary["final_test_accuracy"] == result.history[-1]["test_accuracy"]
    assert folder.config() == config

    monkeypatch.setattr("lfmsl.io.data.load_dataset", lambda *a, **k: pytest.fail("a finished run loaded data"))
    assert lfmsl.run(config, folder.path, resume=True) == result  # finished: returned at once
    with pytest.raises(UsageError, match="already holds"):
        lfmsl.run(config, folder.path)  # a fresh run never writes into another run's folder


def test_import_lfmsl_stays_cheap():
    import subprocess
    import sys

    loaded = subprocess.run([sys.executable, "-c", "import sys, lfmsl; print('jax' in sys.modules, 'lfmsl.experiments.runner' in sys.modules)"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert loaded == ["False", "False"]
