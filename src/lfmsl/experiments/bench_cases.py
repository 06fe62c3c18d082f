"""The rounds that the timing scripts (scripts/bench.py, scripts/profile_round.py) time: a case's configuration,
as `lfmsl run` would take it, on random data of Fashion-MNIST's shapes, built by `build_round` like a run's.

What a round costs does not depend on the pixels, so nothing here needs TensorFlow or a dataset on disk.
"""

from __future__ import annotations

import numpy as np

from lfmsl import algorithms
from lfmsl.config import Config
from lfmsl.errors import UsageError
from lfmsl.experiments.round_builder import BuiltRound, build_round
from lfmsl.io.data import Dataset
from lfmsl.models import MODELS, cut_range

IMAGE_SHAPE, NUM_CLASSES = (28, 28, 1), 10


def parallel_algorithms() -> list[str]:
    """The algorithms whose clients run in parallel: the ones whose rounds the scripts time."""
    return [a for a in algorithms.names() if algorithms.get(a).exchange(Config(algorithm=a)).splits_clients]


def model_cut(item: str, flag: str = "--models") -> tuple[str, int | None]:
    """MODEL or MODEL:CUT as (name, cut or None); anything else is a UsageError naming `flag`."""
    name, _, cut = item.partition(":")
    if name not in MODELS or (cut and not (cut.isdigit() and cut_range(name)[0] <= int(cut) <= cut_range(name)[1])):
        raise UsageError(f"{flag}: {item!r} is not MODEL or MODEL:CUT with a model of {', '.join(MODELS)} and a cut "
                         "in its range")
    return name, int(cut) if cut else None


def participating(spec: dict) -> int:
    """The clients that train in a case's round: `clients_per_round` of them, or all."""
    return min(spec.get("clients_per_round") or spec["clients"], spec["clients"])


def case_config(spec: dict) -> Config:
    """A case's configuration: `algorithm`, `clients` (of which `clients_per_round` take part, default all),
    `batch_size`, `executor`, `conv`, `model` and `cut` (default the cnn at its cut), `matmul_precision` (default
    float32); validated."""
    algorithm, clients, per_round = spec["algorithm"], spec["clients"], participating(spec)
    entry = algorithms.get(algorithm)
    mixes = entry.exchange(Config(algorithm=algorithm)).mixed_per_client > 0
    extra = {"mix": False} if mixes and per_round < 2 and "mix" in entry.reads else {}  # mixup pairs two clients
    return algorithms.validate(Config(
        algorithm=algorithm, clients=clients, clients_per_round=per_round if per_round < clients else None,
        batch_size=spec["batch_size"], executor=spec["executor"], model=spec.get("model", "cnn"), cut=spec.get("cut"),
        conv=spec["conv"], matmul_precision=spec.get("matmul_precision", "float32"), **extra))


def synthetic_dataset(num_clients: int, per_client: int, seed: int = 0) -> Dataset:
    """Random images and labels of Fashion-MNIST's shapes, `per_client` samples for each client."""
    rng = np.random.default_rng(seed)
    count = num_clients * per_client
    images = rng.integers(0, 256, (count, *IMAGE_SHAPE), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, count).astype(np.int32)
    return Dataset("synthetic", images, labels, images[:per_client], labels[:per_client], NUM_CLASSES)


def case_round(spec: dict, iterations: int) -> BuiltRound:
    """A case's round of `iterations` iterations: every client holds `iterations` batches."""
    return build_round(case_config(spec), synthetic_dataset(spec["clients"], iterations * spec["batch_size"]))
