"""Test-set evaluation of one or many (lower, upper) model pairs in one jitted computation."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lfmsl.models import SplitModel

PyTree = Any  # parameters: nested dicts of arrays


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
    """Accuracy and mean loss [K] of each of K stacked (lower, upper) pairs, one pair at a time."""

    def one_pair(pair):
        lower, upper = pair

        def one_batch(totals, batch):
            images, labels, mask = batch
            logits = model.logits(lower, upper, images.astype(jnp.float32) / 255.0)
            correct = jnp.sum((jnp.argmax(logits, -1) == labels) * mask)
            loss = jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, labels) * mask)
            return (totals[0] + correct, totals[1] + loss), None

        (correct, loss), _ = jax.lax.scan(one_batch, (0.0, 0.0), (test.images, test.labels, test.mask))
        count = jnp.sum(test.mask)
        return correct / count, loss / count

    return jax.lax.map(one_pair, (lowers, uppers))
