"""The algorithm boundary: adding an algorithm is one new file plus its docs. A module dropped into the
algorithms' folder is listed by `lfmsl run --help` and builds, and no module under src/ other than an
algorithm's own file names it. Study designs may name the paper's algorithms as their experimental
choices (which algorithms to compare, which to ablate), and the configuration its default algorithm."""

from __future__ import annotations

import ast
import contextlib
import io
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import lfmsl.algorithms as algorithms
from lfmsl import cli
from lfmsl.algorithms import registry, validate
from lfmsl.config import Config
from lfmsl.core.batching import make_client_data
from lfmsl.costs import latency

SRC = Path(__file__).resolve().parents[1] / "src" / "lfmsl"

# Modules that may name algorithms: the studies choose the algorithms they compare, and the configuration has a default.
STUDY_DESIGNS = ("experiments/study.py", "experiments/privacy_study.py", "experiments/figures.py",
                 "reporting/study_report.py", "config.py")

NEW_ALGORITHM = '''
"""PSL whose clients get the combined-loss gradient and average every T_c iterations: a throwaway algorithm."""

from lfmsl.algorithms import rules
from lfmsl.algorithms.registry import register
from lfmsl.algorithms.split import Recipe, split_entry


def recipe(config):
    return Recipe(server=rules.SharedServer(), downlink=rules.global_gradient(),
                  averaging=rules.Averaging(every=config.avg_every))


ENTRY = register(split_entry("toyfile", "ToyFile", recipe, reads=frozenset({"avg_every"})))
'''


def string_constants(path: Path) -> set[str]:
    nodes = ast.walk(ast.parse(path.read_text()))
    return {node.value for node in nodes if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def own_files() -> dict[str, str]:
    """Each registered algorithm -> the file that registers it (its `ENTRY`), relative to src/lfmsl."""
    loaded = list(sys.modules.items())
    modules = [m for name, m in loaded if name.startswith("lfmsl.algorithms.") and hasattr(m, "ENTRY")]
    registered = registry.names()
    return {m.ENTRY.name: Path(m.__file__).relative_to(SRC).as_posix() for m in modules if m.ENTRY.name in registered}


def named_elsewhere(allowed: tuple[str, ...]) -> list[tuple[str, str]]:
    """(file, algorithm) for each module under src/lfmsl that names an algorithm it does not register."""
    owners = own_files()
    named = {path.relative_to(SRC).as_posix(): string_constants(path) for path in SRC.rglob("*.py")}
    return sorted((file, name) for file, constants in named.items() for name in owners
                  if name in constants and file != owners[name] and file not in allowed)


def test_no_module_but_its_own_file_names_an_algorithm():
    owners = own_files()
    assert owners["locfedmix"] == "algorithms/locfedmix.py" and set(owners) == set(registry.names())
    assert named_elsewhere(STUDY_DESIGNS) == []


def test_the_bar_sees_names_outside_the_algorithms_own_files():
    """Without the study designs' allowance the scan finds them: it reads every module."""
    found = named_elsewhere(())
    assert ("config.py", "locfedmix") in found and ("experiments/study.py", "centralized") in found


@pytest.fixture
def new_algorithm_file(tmp_path, monkeypatch):
    """The algorithms' folder with one more file: the package's own discovery, run again over it."""
    folder = tmp_path / "one_more"
    folder.mkdir()
    (folder / "toyfile.py").write_text(NEW_ALGORITHM)
    monkeypatch.setattr(algorithms, "__path__", [*algorithms.__path__, str(folder)])
    algorithms._import_all()
    yield "toyfile"
    registry.unregister("toyfile")
    sys.modules.pop("lfmsl.algorithms.toyfile", None)


def test_a_new_algorithm_file_is_listed_after_the_built_in_ones_and_builds_a_round(new_algorithm_file):
    """Listed by `lfmsl run --help`, accepted by the checks, and its round traced on a run's shapes (a toy entry's
    whole `lfmsl run`, through the ledger and the latency model, is test_registry's)."""
    name = new_algorithm_file
    assert registry.names()[-1] == name and registry.names()[:2] == ("sl", "psl")  # an entry's order: last by default
    assert name not in registry.names(role="paper")  # no study picks it up by a role it does not claim
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown), pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    assert name in shown.getvalue()
    config = validate(Config(algorithm=name, clients=2, batch_size=4, avg_every=2))
    algorithm = algorithms.build(config, algorithms.context(config, latency.model_for(config), 2, 3, "vmap"))
    images, labels = np.zeros((16, 28, 28, 1), np.uint8), np.arange(16) % 10
    data = make_client_data(images, labels, [np.arange(8), np.arange(8, 16)])
    key = jax.random.key(0)
    state, metrics = jax.eval_shape(algorithm.round, jax.eval_shape(algorithm.init, key), data, key)
    assert state.clients["lower"] and metrics["train_loss"].shape == ()


def test_an_entry_says_where_it_is_listed_and_what_it_is_to_the_studies():
    assert registry.names(role="paper") == ("sl", "psl", "sflv1", "sflv2", "locsplitfed", "locfedmix")
    assert registry.names(role="later") == ("sglr", "mix2sfl")
    assert registry.names(role="reference") == ("centralized", "fedavg")
    with pytest.raises(ValueError, match="unknown role"):
        registry.Entry("x", "X", build=None, exchange=None, role="favourite")
