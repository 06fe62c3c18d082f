"""The original Fashion-MNIST / MNIST files read directly, without tensorflow-datasets.

tfds takes about 30 s a dataset to prepare on a fresh checkout; tests that only need some real
images (end-to-end command-line runs, the algorithms against independent computations) read a
slice of the original files here in a fraction of a second; only tests that need a whole dataset
wait for tfds (conftest.py's `fashion_mnist` and `tfds_data_dir`)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from lfmsl.io.data import Dataset


def read_idx(path: Path) -> np.ndarray:
    """The shared data README's reader of the original gzip IDX files, independent of tfds."""
    raw = gzip.open(path, "rb").read()
    ndim = raw[3]
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def original_slice(manual_dir: Path, name: str, train: int, test: int) -> Dataset:
    """The first `train` training and `test` test examples in the files' own order (tfds shuffles its
    copy, so these are other images than the first ones of `load_dataset`), as lfmsl holds them."""
    folder = Path(manual_dir) / name
    split = lambda prefix, n: (read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")[:n, :, :, None],
                               read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")[:n].astype(np.int32))
    (x_train, y_train), (x_test, y_test) = split("train", train), split("t10k", test)
    return Dataset(name, np.ascontiguousarray(x_train), y_train, np.ascontiguousarray(x_test), y_test, 10)
