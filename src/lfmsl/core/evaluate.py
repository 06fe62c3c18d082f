"""Test-set evaluation of one or many (lower, upper) model pairs in one jitted computation."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lfmsl.models import SplitModel

PyTree = Any  # parameters: nested dicts of arrays

# The forward pass runs on slices of at most this many images of each test batch: at 1,000 images a convolution's
# activations overflow the CPU's caches, and scoring 10 models on 10,000 images took 20.8 s against 7.1 s in slices
# of 100 (Xeon-6-207; 50 and 25 were no faster). Each image's logits do not depend on its slice, and the sums run
# over the whole batch as before, so the scores are bit for bit those of one pass per batch.
FORWARD_SLICE = 100


class TestData(NamedTuple):
    """The test set cut into equal batches; `mask` marks the padding of the last one."""

    images: jax.Array  # uint8 [num_batches, batch, H, W, C]
    labels: jax.Array  # int32 [num_batches, batch]
    mask: jax.Array  # float32 [num_batches, batch]


def make_test_data(images: np.ndarray, labels: np.ndarray, batch: int = 1000) -> TestData:
    count = len(labels)
    batch = min(batch, count)
    padded = -(-count // batch) * batch
    pad = padded - count
    mask = np.concatenate([np.ones(count, np.float32), np.zeros(pad, np.float32)])
    images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
    labels = np.concatenate([labels.astype(np.int32), np.zeros(pad, np.int32)])
    shape = (padded // batch, batch)
    return TestData(jnp.asarray(images.reshape(shape + images.shape[1:])), jnp.asarray(labels.reshape(shape)),
                    jnp.asarray(mask.reshape(shape)))


def evaluate_pairs(model: SplitModel, lowers: PyTree, uppers: PyTree, test: TestData) -> tuple[jax.Array, jax.Array]:
    """Accuracy and mean loss [K] of each of K stacked (lower, upper) pairs, one pair at a time (a loop in the
    program: on the CPU a vmap over PSL's 10 evaluated clients was slower at every slice size tried)."""
    batch = test.images.shape[1]
    size = min(batch, FORWARD_SLICE)
    slices = -(-batch // size)  # the last one padded with blank images whose logits are dropped

    def one_pair(pair):
        lower, upper = pair

        def logits_of(images):
            images = jnp.pad(images, [(0, slices * size - batch)] + [(0, 0)] * (images.ndim - 1))
            parts = images.reshape((slices, size) + images.shape[1:]).astype(jnp.float32) / 255.0
            logits = jax.lax.map(lambda part: model.logits(lower, upper, part), parts)
            return logits.reshape((slices * size,) + logits.shape[2:])[:batch]

        def one_batch(totals, rows):
            images, labels, mask = rows
            logits = logits_of(images)
            correct = jnp.sum((jnp.argmax(logits, -1) == labels) * mask)
            loss = jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, labels) * mask)
            return (totals[0] + correct, totals[1] + loss), None

        (correct, loss), _ = jax.lax.scan(one_batch, (0.0, 0.0), (test.images, test.labels, test.mask))
        count = jnp.sum(test.mask)
        return correct / count, loss / count

    return jax.lax.map(one_pair, (lowers, uppers))
