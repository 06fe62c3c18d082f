"""Random data sets small enough to run the whole machinery in seconds."""

from __future__ import annotations

import numpy as np

from lfmsl.io.data import Dataset


def tiny_dataset(train: int = 40, test: int = 20) -> Dataset:
    """`train` random training and `test` test images shaped like Fashion-MNIST, labels cycling 0-9."""
    rng = np.random.default_rng(0)
    images = lambda n: rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)
    labels = lambda n: np.arange(n) % 10
    return Dataset("fashion_mnist", images(train), labels(train), images(test), labels(test), 10)
