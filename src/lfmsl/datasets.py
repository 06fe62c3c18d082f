"""What each dataset is, in one table: loading, the models' defaults and the cost model read it."""

from __future__ import annotations

from typing import NamedTuple

from lfmsl.errors import UsageError

_IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
              "t10k-labels-idx1-ubyte.gz")


class DatasetSpec(NamedTuple):
    image_shape: tuple[int, int, int]  # height, width, channels
    num_classes: int
    default_model: str  # the paper's setting: cnn for (Fashion-)MNIST, resnet18 for CIFAR-10
    manual_files: tuple[str, ...]  # the original files tfds reads from a manual folder (no internet)


SPECS = {
    "fashion_mnist": DatasetSpec((28, 28, 1), 10, "cnn", _IDX_FILES),
    "mnist": DatasetSpec((28, 28, 1), 10, "cnn", _IDX_FILES),
    "cifar10": DatasetSpec((32, 32, 3), 10, "resnet18", ("cifar-10-binary.tar.gz",)),
}
DATASETS = tuple(SPECS)


def spec(name: str) -> DatasetSpec:
    if name not in SPECS:
        raise UsageError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return SPECS[name]
