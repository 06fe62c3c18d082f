"""notebooks/quickstart.ipynb runs top to bottom in its quick configuration."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_runs(monkeypatch, manual_data_dir, tfds_data_dir):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("LFMSL_NOTEBOOK_QUICK", "1")  # the kernel inherits this environment
    monkeypatch.setenv("LFMSL_MANUAL_DIR", str(manual_data_dir))
    monkeypatch.setenv("LFMSL_DATA_DIR", str(tfds_data_dir))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", []))
    assert "locfedmix" in outputs and "simulated" in outputs
    assert any("image/png" in o.get("data", {}) for o in notebook.cells[-1].outputs)
