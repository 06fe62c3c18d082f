"""notebooks/quickstart.ipynb runs top to bottom in its quick configuration."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_runs(monkeypatch, tmp_path, manual_data_dir, tfds_data_dir, compile_cache):
    from cli_runs import compile_cache_environment

    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("LFMSL_NOTEBOOK_QUICK", "1")  # the kernel inherits this environment
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's run folders (tempfile.mkdtemp) go with the test's
    for name, value in compile_cache_environment(compile_cache).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LFMSL_MANUAL_DIR", str(manual_data_dir))
    monkeypatch.setenv("LFMSL_DATA_DIR", str(tfds_data_dir))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", []))
    assert "locfedmix" in outputs and "simulated" in outputs
    assert any("image/png" in o.get("data", {}) for o in notebook.cells[-1].outputs)
    assert {p.name for p in tmp_path.glob("lfmsl-quickstart-*/*")} == {"psl", "locfedmix"}  # its runs kept their folders


def run_install_cell(monkeypatch, cwd: Path, repo_url: str = "") -> list[str]:
    """Run the notebook's first code cell as if lfmsl were not installed; returns the pip command it ran."""
    import subprocess
    import sys

    nbformat = pytest.importorskip("nbformat")
    source = next(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code")
    assert 'REPO_URL = ""' in source
    source = source.replace('REPO_URL = ""', f"REPO_URL = {repo_url!r}")
    calls = []

    def pip(command):  # instead of installing: lfmsl becomes importable again
        calls.append(command)
        sys.modules.pop("lfmsl")

    monkeypatch.setattr(subprocess, "check_call", pip)
    monkeypatch.setitem(sys.modules, "lfmsl", None)  # `import lfmsl` raises ImportError
    monkeypatch.chdir(cwd)
    exec(compile(source, "install cell", "exec"), {})
    return calls[0][3:] if calls else []


def test_the_install_cell_installs_the_clone_it_was_opened_from(monkeypatch):
    assert run_install_cell(monkeypatch, NOTEBOOK.parent) == ["install", "-q", "-e", str(NOTEBOOK.parents[1])]


def test_the_install_cell_finds_a_clone_made_in_the_working_folder(monkeypatch, tmp_path):
    clone = tmp_path / "lfmsl"
    clone.mkdir()
    (clone / "pyproject.toml").write_text((NOTEBOOK.parents[1] / "pyproject.toml").read_text())
    assert run_install_cell(monkeypatch, tmp_path) == ["install", "-q", "-e", str(clone)]


def test_the_install_cell_without_a_clone_uses_repo_url_or_says_what_to_set(monkeypatch, tmp_path):
    url = "git+https://github.com/someone/lfmsl.git"
    assert run_install_cell(monkeypatch, tmp_path, url) == ["install", "-q", url]
    with pytest.raises(SystemExit, match="set REPO_URL in this cell"):
        run_install_cell(monkeypatch, tmp_path)
