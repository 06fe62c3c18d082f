"""Tests of client partitions and stratified subsets."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lfmsl.errors import UsageError
from lfmsl.core.partition import parse_partition, partition, stratified_subset, validate

BALANCED = np.repeat(np.arange(10), 600)  # 10 classes x 600, like a small Fashion-MNIST
SPECS = ["iid", "dirichlet:0.05", "dirichlet:0.5", "dirichlet:100", "shards:1", "shards:2", "shards:3"]

labels_st = st.lists(st.integers(0, 9), min_size=1, max_size=300).map(lambda xs: np.array(xs, np.int32))


def classes_for_90_percent(labels):
    """Fewest classes that together hold 90% of the samples."""
    counts = np.sort(np.bincount(labels, minlength=10))[::-1]
    return int(np.searchsorted(np.cumsum(counts), 0.9 * counts.sum()) + 1)


def class_counts(labels, client_indices):
    return np.array([np.bincount(labels[p], minlength=10) for p in client_indices])


@settings(max_examples=150, deadline=None)
@given(labels=labels_st, clients=st.integers(1, 40), spec=st.sampled_from(SPECS), seed=st.integers(0, 2**32 - 1))
def test_disjoint_covering_nonempty(labels, clients, spec, seed):
    kind, value = parse_partition(spec)
    assume(clients <= len(labels) and (kind != "shards" or clients * value <= len(labels)))
    client_indices = partition(labels, clients, spec, seed)
    assert len(client_indices) == clients
    assert all(p.dtype == np.int64 and p.size > 0 and np.all(np.diff(p) > 0) for p in client_indices)
    np.testing.assert_array_equal(np.sort(np.concatenate(client_indices)), np.arange(len(labels)))
    assert [p.tolist() for p in partition(labels, clients, spec, seed)] == [p.tolist() for p in client_indices]


@given(n=st.integers(1, 500), clients=st.integers(1, 50), seed=st.integers(0, 1000))
def test_iid_sizes_differ_by_at_most_one(n, clients, seed):
    assume(clients <= n)
    sizes = [len(p) for p in partition(np.zeros(n, np.int32), clients, "iid", seed)]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n


@pytest.mark.parametrize("spec", SPECS)
def test_seed_decides_the_partition(spec):
    same = [partition(BALANCED, 20, spec, 7), partition(BALANCED, 20, spec, 7)]
    other = partition(BALANCED, 20, spec, 8)
    assert all(np.array_equal(a, b) for a, b in zip(*same))
    assert not all(np.array_equal(a, b) for a, b in zip(same[0], other))


def test_iid_is_near_uniform_in_labels():
    counts = class_counts(BALANCED, partition(BALANCED, 10, "iid", 0))
    assert np.abs(counts - 60).max() < 25  # binomial(600, 0.1) has sd ~7.3


@pytest.mark.parametrize("seed", range(3))
def test_small_alpha_dirichlet_is_skewed(seed):
    client_indices = partition(BALANCED, 20, "dirichlet:0.1", seed)
    assert np.mean([classes_for_90_percent(BALANCED[p]) for p in client_indices]) < 4


@pytest.mark.parametrize("seed", range(3))
def test_large_alpha_dirichlet_is_near_uniform(seed):
    client_indices = partition(BALANCED, 20, "dirichlet:100", seed)
    shares = class_counts(BALANCED, client_indices) / np.array([len(p) for p in client_indices])[:, None]
    assert np.abs(shares - 0.1).max() < 0.05
    assert all(classes_for_90_percent(BALANCED[p]) == 9 for p in client_indices)


def test_skew_grows_as_alpha_shrinks():
    def mean_classes(alpha):
        return np.mean([classes_for_90_percent(BALANCED[p]) for p in partition(BALANCED, 20, f"dirichlet:{alpha}", 0)])

    assert mean_classes(0.05) < mean_classes(0.5) < mean_classes(5.0)


def test_dirichlet_fills_clients_left_empty():
    labels = np.repeat(np.arange(2), 25)
    client_indices = partition(labels, 40, "dirichlet:0.001", 0)  # almost all mass on a few clients
    assert min(len(p) for p in client_indices) >= 1
    np.testing.assert_array_equal(np.sort(np.concatenate(client_indices)), np.arange(50))


@pytest.mark.parametrize("per_client", [1, 2, 4, 5])
def test_shards_aligned_with_classes_give_at_most_k_classes(per_client):
    clients = 100 // per_client  # 100 shards of 60: each class of 600 is exactly 10 shards
    client_indices = partition(BALANCED, clients, f"shards:{per_client}", 0)
    assert all(len(np.unique(BALANCED[p])) <= per_client for p in client_indices)
    assert all(len(p) == 60 * per_client for p in client_indices)


@settings(deadline=None)
@given(labels=labels_st, clients=st.integers(1, 20), per_client=st.integers(1, 4), seed=st.integers(0, 1000))
def test_shards_are_contiguous_label_ranges(labels, clients, per_client, seed):
    """Each shard spans consecutive labels, so a client sees at most K classes plus one per boundary."""
    assume(clients * per_client <= len(labels))
    shard_size = len(labels) / (clients * per_client)
    counts = np.bincount(labels, minlength=10)
    for p in partition(labels, clients, f"shards:{per_client}", seed):
        assert int(np.floor(shard_size)) * per_client <= len(p) <= int(np.ceil(shard_size)) * per_client
        present = np.unique(labels[p])
        # Classes strictly inside a shard's range are taken whole; a client holds at most 2K partial classes.
        partial = [c for c in present if np.sum(labels[p] == c) < counts[c]]
        assert len(partial) <= 2 * per_client


def test_shards_on_uneven_classes_add_at_most_one_class_per_boundary():
    labels = np.repeat(np.arange(10), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    client_indices = partition(labels, 100, "shards:2", 0)  # shards of 300 samples, smaller than any class
    per_client = [len(np.unique(labels[p])) for p in client_indices]
    assert max(per_client) <= 4 and np.mean(per_client) < 3


@settings(deadline=None)
@given(labels=labels_st, fraction=st.floats(0.0, 1.0), seed=st.integers(0, 1000))
def test_stratified_subset_is_proportional(labels, fraction, seed):
    size = max(1, round(fraction * len(labels)))
    subset = stratified_subset(labels, size, seed)
    assert subset.dtype == np.int64 and len(subset) == size
    assert len(np.unique(subset)) == size and subset.min() >= 0 and subset.max() < len(labels)
    exact = np.bincount(labels, minlength=10) * size / len(labels)
    assert np.all(np.abs(np.bincount(labels[subset], minlength=10) - exact) < 1)
    np.testing.assert_array_equal(stratified_subset(labels, size, seed), subset)


def test_stratified_subset_depends_on_seed():
    assert not np.array_equal(stratified_subset(BALANCED, 100, 0), stratified_subset(BALANCED, 100, 1))
    assert np.bincount(BALANCED[stratified_subset(BALANCED, 100, 0)]).tolist() == [10] * 10


@pytest.mark.parametrize("size", [0, -1, 6001])
def test_stratified_subset_bad_size(size):
    with pytest.raises(UsageError, match="subset size"):
        stratified_subset(BALANCED, size, 0)


@pytest.mark.parametrize(
    "spec,expected",
    [("iid", ("iid", None)), (" IID ", ("iid", None)), ("dirichlet:0.5", ("dirichlet", 0.5)),
     ("dirichlet:1e-3", ("dirichlet", 0.001)), ("shards:2", ("shards", 2))],
)
def test_parse_partition(spec, expected):
    assert parse_partition(spec) == expected


@pytest.mark.parametrize(
    "spec",
    ["", "noniid", "iid:2", "dirichlet", "dirichlet:", "dirichlet:0", "dirichlet:-1", "dirichlet:abc",
     "dirichlet:nan", "dirichlet:inf", "shards", "shards:0", "shards:-2", "shards:1.5", "shards:two"],
)
def test_bad_specs_raise_one_line_usage_error(spec):
    with pytest.raises(UsageError) as error:
        parse_partition(spec)
    assert "\n" not in str(error.value) and "dirichlet:ALPHA" in str(error.value)


@pytest.mark.parametrize(
    "samples,clients,spec,match",
    [(100, 0, "iid", "at least 1"), (10, 11, "iid", "fewer clients"), (100, 20, "shards:6", "shards")],
)
def test_impossible_sizes(samples, clients, spec, match):
    with pytest.raises(UsageError, match=match):
        validate(samples, clients, spec)
    with pytest.raises(UsageError, match=match):
        partition(np.zeros(samples, np.int32), clients, spec, 0)
