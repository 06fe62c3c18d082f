"""The test-set evaluation against a plain float64 computation of the same models' scores."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lfmsl.core.evaluate import FORWARD_SLICE, evaluate_pairs, make_test_data
from lfmsl.models import get_model, init_params


@pytest.mark.parametrize("count", [250, 1000 + 37])  # slices tiling each batch, and a padded last slice and batch
def test_sliced_evaluation_scores_each_pair_as_one_pass_over_the_test_set(count):
    model = get_model("cnn", (28, 28, 1), 10)
    params = jax.vmap(lambda key: init_params(model, key))(jax.random.split(jax.random.key(0), 3))
    lowers, uppers = params["client"], params["server"]
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (count, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, count).astype(np.int32)
    test = make_test_data(images, labels)
    assert test.images.shape[1] > FORWARD_SLICE  # the batches are sliced

    accuracy, loss = jax.jit(lambda l, u, t: evaluate_pairs(model, l, u, t))(lowers, uppers, test)
    for k in range(3):
        pair = jax.tree.map(lambda a: a[k], (lowers, uppers))
        logits = np.asarray(model.logits(*pair, jnp.asarray(images, jnp.float32) / 255.0), np.float64)
        log_probs = logits - np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1, keepdims=True)) \
            - logits.max(-1, keepdims=True)
        assert float(accuracy[k]) == pytest.approx(np.mean(np.argmax(logits, -1) == labels), abs=1e-7)
        assert float(loss[k]) == pytest.approx(-np.mean(log_probs[np.arange(count), labels]), rel=1e-5)
