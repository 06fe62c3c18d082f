"""Shared fixtures: the offline benchmark data, prepared once into a git-ignored cache."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def manual_data_dir() -> Path:
    """The folder of original dataset files ($LFMSL_MANUAL_DIR, else ../shared/data)."""
    path = Path(os.environ.get("LFMSL_MANUAL_DIR") or REPO.parent / "shared" / "data")
    if not path.is_dir():
        pytest.skip(f"no offline data at {path}; set LFMSL_MANUAL_DIR")
    return path


@pytest.fixture(scope="session")
def tfds_data_dir() -> Path:
    """Persistent across runs, so datasets are prepared and converted only once."""
    return REPO / ".cache" / "tfds"


@pytest.fixture(scope="session")
def fashion_mnist(manual_data_dir, tfds_data_dir):
    from lfmsl.data import load_dataset

    return load_dataset("fashion_mnist", manual_dir=manual_data_dir, data_dir=tfds_data_dir)
