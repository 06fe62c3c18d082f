"""Tests of dataset loading: real MNIST / Fashion-MNIST offline, CIFAR-10 through tfds mock data."""

import subprocess
import sys

import numpy as np
import pytest

from lfmsl.io import data
from lfmsl.errors import UsageError
from original_data import read_idx

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def fingerprints(images, labels):
    """Order-free summary of (image, label) pairs: tfds shuffles examples while preparing."""
    weights = np.random.default_rng(0).integers(1, 1 << 20, images[0].size, dtype=np.int64)
    keys = images.reshape(len(images), -1).astype(np.int64) @ weights
    order = np.lexsort((keys, labels))
    return np.stack([labels[order].astype(np.int64), keys[order]])


@pytest.fixture(scope="module")
def mnist(manual_data_dir):
    from conftest import prepared_by_tfds

    return data.load_dataset("mnist", manual_dir=manual_data_dir, data_dir=prepared_by_tfds("mnist", manual_data_dir))


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_real_dataset_shapes_and_types(name, request):
    ds = request.getfixturevalue(name)
    assert ds.name == name
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.x_train.dtype == ds.x_test.dtype == np.uint8
    assert ds.y_train.dtype == ds.y_test.dtype == np.int32
    assert ds.image_shape == (28, 28, 1) and ds.num_classes == 10
    assert set(np.unique(ds.y_train)) == set(range(10)) == set(np.unique(ds.y_test))


def test_mnist_class_counts_match_readme(mnist):
    assert np.bincount(mnist.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(mnist.y_test).tolist() == MNIST_TEST_COUNTS


def test_fashion_mnist_is_balanced(fashion_mnist):
    assert np.bincount(fashion_mnist.y_train).tolist() == [6000] * 10
    assert np.bincount(fashion_mnist.y_test).tolist() == [1000] * 10


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("split,prefix", [("train", "train"), ("test", "t10k")])
def test_same_examples_as_original_files(name, split, prefix, manual_data_dir, request):
    """Catches the shared extract_dir trap, where one dataset silently gets the other's files."""
    ds = request.getfixturevalue(name)
    images = read_idx(manual_data_dir / name / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(manual_data_dir / name / f"{prefix}-labels-idx1-ubyte.gz")
    x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
    np.testing.assert_array_equal(fingerprints(x[..., 0], y), fingerprints(images, labels))


def test_the_two_datasets_differ(mnist, fashion_mnist):
    assert not np.array_equal(mnist.y_train, fashion_mnist.y_train)
    assert abs(float(mnist.x_train.mean()) - float(fashion_mnist.x_train.mean())) > 1.0


def test_second_load_comes_from_cache_and_equals_tfds(mnist, manual_data_dir, tfds_data_dir, monkeypatch):
    assert data.cache_path("mnist", tfds_data_dir).is_file()
    from_tfds = data.load_dataset("mnist", manual_dir=manual_data_dir, data_dir=tfds_data_dir, cache=False)

    def no_tfds(*args, **kwargs):
        raise AssertionError("tfds used although the cache exists")

    monkeypatch.setattr(data, "_load_with_tfds", no_tfds)
    cached = data.load_dataset("mnist", manual_dir=manual_data_dir, data_dir=tfds_data_dir)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(cached, field), getattr(from_tfds, field))
        assert getattr(cached, field).dtype == getattr(from_tfds, field).dtype
    assert cached.num_classes == from_tfds.num_classes == 10


def test_cache_needs_no_tensorflow(mnist, tfds_data_dir):
    code = (
        "import sys; from lfmsl.io.data import load_dataset; "
        f"d = load_dataset('mnist', data_dir={str(tfds_data_dir)!r}); "
        "assert d.x_train.shape == (60000, 28, 28, 1); "
        "assert 'tensorflow' not in sys.modules and 'tensorflow_datasets' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    path = data.cache_path("mnist", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a zip file")
    tiny = data.Dataset("mnist", np.zeros((2, 28, 28, 1), np.uint8), np.array([0, 1], np.int32),
                        np.zeros((1, 28, 28, 1), np.uint8), np.array([1], np.int32), 10)
    monkeypatch.setattr(data, "_load_with_tfds", lambda *args: tiny)
    assert data.load_dataset("mnist", data_dir=tmp_path) is tiny
    monkeypatch.setattr(data, "_load_with_tfds", None)  # Now it must come from the new cache.
    np.testing.assert_array_equal(data.load_dataset("mnist", data_dir=tmp_path).y_train, [0, 1])


def test_a_second_loader_waits_for_the_one_preparing_and_reads_its_cache(tmp_path, monkeypatch):
    """Two processes preparing one dataset at once broke each other's tfds extraction; now the second waits."""
    import fcntl
    import threading

    path = data.cache_path("mnist", tmp_path)
    path.parent.mkdir(parents=True)
    tiny = data.Dataset("mnist", np.zeros((2, 28, 28, 1), np.uint8), np.array([0, 1], np.int32),
                        np.zeros((1, 28, 28, 1), np.uint8), np.array([1], np.int32), 10)
    monkeypatch.setattr(data, "_load_with_tfds", None)  # the waiting loader must not prepare again
    loaded = []
    with open(tmp_path / ".lfmsl-mnist.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as the process that prepares it holds it
        waiting = threading.Thread(target=lambda: loaded.append(data.load_dataset("mnist", data_dir=tmp_path)))
        waiting.start()
        waiting.join(timeout=0.5)
        assert waiting.is_alive() and not loaded  # it waits for the lock
        data._write_cache(tiny, path)  # what the preparing process writes before it lets go
    waiting.join(timeout=30)
    np.testing.assert_array_equal(loaded[0].y_train, [0, 1])


def test_cifar10_through_tfds_mock_data(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_online", lambda: True)  # the mock stands in for the download
    tfds = data.import_tfds()
    with tfds.testing.mock_data(num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = data.load_dataset("cifar10", manual_dir=tmp_path, data_dir=tmp_path)
    assert ds.x_train.shape == (24, 32, 32, 3) and ds.x_test.shape == (24, 32, 32, 3)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32
    assert ds.image_shape == (32, 32, 3) and ds.num_classes == 10
    assert ds.y_train.min() >= 0 and ds.y_train.max() < 10
    cached = data.load_dataset("cifar10", data_dir=tmp_path)  # outside the mock: must be the cache
    np.testing.assert_array_equal(cached.x_train, ds.x_train)


def assert_one_line(error, *parts):
    message = str(error.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message


def test_unknown_dataset_lists_the_valid_ones(tmp_path):
    with pytest.raises(UsageError) as error:
        data.load_dataset("imagenet", data_dir=tmp_path)
    assert_one_line(error, "imagenet", *data.DATASETS)


def test_missing_manual_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(UsageError) as error:
        data.load_dataset("mnist", manual_dir=missing, data_dir=tmp_path)
    assert_one_line(error, str(missing), "--manual-dir", "LFMSL_MANUAL_DIR")


def test_manual_folder_from_environment(tmp_path, monkeypatch):
    missing = tmp_path / "from-env"
    monkeypatch.setenv("LFMSL_MANUAL_DIR", str(missing))
    with pytest.raises(UsageError) as error:
        data.load_dataset("mnist", data_dir=tmp_path)
    assert_one_line(error, str(missing))


def test_not_prepared_not_manual_not_downloadable(tmp_path, monkeypatch):
    import requests

    tfds = data.import_tfds()

    def offline(self, *args, **kwargs):
        raise requests.exceptions.ConnectionError("Failed to resolve 'storage.googleapis.com'\nmore detail")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    monkeypatch.setattr(data, "_online", lambda: True)  # the host answered, the download failed all the same
    (tmp_path / "manual").mkdir()  # exists, but has no mnist/ subfolder
    with pytest.raises(UsageError) as error:
        data.load_dataset("mnist", manual_dir=tmp_path / "manual", data_dir=tmp_path)
    assert_one_line(error, "mnist/", "--manual-dir", "LFMSL_MANUAL_DIR", "ConnectionError")


@pytest.mark.parametrize("manual", ["empty folder", "empty variable", "partial folder"])
def test_offline_without_usable_manual_files_fails_in_seconds_naming_the_files(tmp_path, monkeypatch, manual):
    """tfds retried a download for minutes before failing; without internet nothing is tried."""
    import time

    tfds = data.import_tfds()
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", lambda *a, **k: pytest.fail("tried to download"))
    monkeypatch.setattr(data, "_DOWNLOAD_HOST", ("127.0.0.1", 9))  # refused at once: offline, on any machine
    for key in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(key, raising=False)
    folder = tmp_path / "manual"
    folder.mkdir()
    if manual == "empty variable":
        monkeypatch.setenv("LFMSL_MANUAL_DIR", "")
    elif manual == "partial folder":
        (folder / "mnist").mkdir()
        (folder / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"half")
    started = time.monotonic()
    with pytest.raises(UsageError) as error:
        data.load_dataset("mnist", manual_dir=None if manual == "empty variable" else folder, data_dir=tmp_path / "data")
    assert time.monotonic() - started < 10
    assert_one_line(error, "t10k-labels-idx1-ubyte.gz", "--manual-dir" if manual != "partial folder" else "remove the folder")
    if manual == "empty folder":
        assert_one_line(error, "no internet", f"looked for them in {folder / 'mnist'}/")


def test_corrupt_manual_files(tmp_path):
    """tfds checks sizes and SHA-256 of manual files; a mismatch is the user's to fix."""
    folder = tmp_path / "manual" / "mnist"
    folder.mkdir(parents=True)
    for split in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            (folder / f"{split}-{kind}-ubyte.gz").write_bytes(b"garbage")
    with pytest.raises(UsageError) as error:
        data.load_dataset("mnist", manual_dir=tmp_path / "manual", data_dir=tmp_path / "data")
    assert_one_line(error, "mnist", str(folder))
    assert not (tmp_path / "data" / "lfmsl_cache").exists()

