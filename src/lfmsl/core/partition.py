"""Split the training set over clients: IID, Dirichlet label skew, or McMahan et al.'s shards.

A partition depends only on the labels, the number of clients, the spec and the seed, so every
algorithm compared under the same seed trains on exactly the same client data.
"""

from __future__ import annotations

import math

import numpy as np

from lfmsl.errors import UsageError

PARTITION_HELP = "use 'iid', 'dirichlet:ALPHA' (ALPHA > 0) or 'shards:K' (integer K >= 1)"
_DIRICHLET_TRIES = 10


def parse_partition(spec: str) -> tuple[str, float | int | None]:
    """``"iid"`` -> ("iid", None); ``"dirichlet:0.5"`` -> ("dirichlet", 0.5); ``"shards:2"`` -> ("shards", 2)."""
    kind, sep, value = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind == "iid" and not sep:
        return "iid", None
    if kind == "dirichlet" and sep:
        try:
            alpha = float(value)
        except ValueError:
            alpha = math.nan
        if math.isfinite(alpha) and alpha > 0:
            return "dirichlet", alpha
    if kind == "shards" and sep:
        try:
            shards = int(value)
        except ValueError:
            shards = 0
        if shards >= 1:
            return "shards", shards
    raise UsageError(f"bad partition {spec!r}; {PARTITION_HELP}")


def validate(num_samples: int, num_clients: int, spec: str) -> tuple[str, float | int | None]:
    """Check that ``spec`` can give every one of ``num_clients`` clients at least one sample."""
    kind, value = parse_partition(spec)
    if num_clients < 1:
        raise UsageError(f"number of clients must be at least 1, got {num_clients}")
    if num_clients > num_samples:
        raise UsageError(f"{num_clients} clients but only {num_samples} training samples; use fewer clients")
    if kind == "shards" and num_clients * value > num_samples:
        raise UsageError(
            f"{spec!r} needs {num_clients * value} shards but there are only {num_samples} samples; "
            "lower K or the clients"
        )
    return kind, value


def partition(labels: np.ndarray, num_clients: int, spec: str, seed: int) -> list[np.ndarray]:
    """Disjoint, covering, sorted int64 index arrays into the training set, one per client."""
    labels = np.asarray(labels).reshape(-1)
    kind, value = validate(labels.size, num_clients, spec)
    rng = np.random.default_rng(seed)
    if kind == "iid":
        client_indices = np.array_split(rng.permutation(labels.size), num_clients)
    elif kind == "dirichlet":
        client_indices = _dirichlet(labels, num_clients, float(value), rng)
    else:
        client_indices = _shards(labels, num_clients, int(value), rng)
    return [np.sort(p).astype(np.int64) for p in client_indices]


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of ``size`` samples whose class counts are proportional to the full set's.

    Largest-remainder rounding keeps each class within one sample of its exact share.
    """
    labels = np.asarray(labels).reshape(-1)
    if not 1 <= size <= labels.size:
        raise UsageError(f"subset size must be between 1 and {labels.size}, got {size}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * size / labels.size
    take = np.floor(exact).astype(np.int64)
    by_remainder = np.argsort(-(exact - take), kind="stable")
    take[by_remainder[: size - take.sum()]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _dirichlet(labels: np.ndarray, num_clients: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Per class, shares ~ Dirichlet(alpha); redraw while a client is empty, then top empty ones up."""
    for _ in range(_DIRICHLET_TRIES):
        pieces: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for c in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == c))
            shares = rng.dirichlet(np.full(num_clients, alpha))
            cuts = np.round(np.cumsum(shares)[:-1] * members.size).astype(np.int64)
            for client, piece in enumerate(np.split(members, cuts)):
                pieces[client].append(piece)
        result = [np.concatenate(p) for p in pieces]
        if all(p.size for p in result):
            return result
    for empty in [i for i, p in enumerate(result) if not p.size]:
        largest = max(range(num_clients), key=lambda i: (result[i].size, -i))
        result[empty], result[largest] = result[largest][-1:], result[largest][:-1]
    return result


def _shards(labels: np.ndarray, num_clients: int, per_client: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Sort by label (random order within a class), cut equal shards, deal ``per_client`` to each client."""
    shuffled = rng.permutation(labels.size)
    by_label = shuffled[np.argsort(labels[shuffled], kind="stable")]
    shards = np.array_split(by_label, num_clients * per_client)
    dealt = rng.permutation(len(shards)).reshape(num_clients, per_client)
    return [np.concatenate([shards[s] for s in row]) for row in dealt]
