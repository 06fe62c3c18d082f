"""The conv nets for 28x28 images, as numbered blocks (see `factory.Architecture`): `cnn` (the
paper's small model) and `allconv` (five conv blocks, so the cut can go deep)."""

from __future__ import annotations

import flax.linen as nn
import jax

from lfmsl.models.layers import conv, dense, flatten, global_avg_pool, pool2

def cnn_block(i: int, x: jax.Array, num_classes: int, impl: str, precision: str) -> jax.Array:
    """cnn: 1 conv 3x3 32, ReLU, pool 2 | 2 conv 3x3 64, ReLU, pool 2 | 3 Dense 128, ReLU | 4 Dense classes."""
    if i == 0:
        return pool2(nn.relu(conv(impl, 32, "conv1", precision)(x)), impl)
    if i == 1:
        return pool2(nn.relu(conv(impl, 64, "conv2", precision)(x)), impl)
    if i == 2:
        return nn.relu(dense(128, "fc1", precision)(flatten(x)))
    return dense(num_classes, "fc2", precision)(x)


ALLCONV_WIDTHS = (16, 16, 32, 32, 64)


def allconv_block(i: int, x: jax.Array, num_classes: int, impl: str, precision: str) -> jax.Array:
    """allconv: five conv 3x3 + ReLU blocks of 16, 16, 32, 32, 64 channels, a 2x2 pool closing
    blocks 1 and 3 (so the server's maps are 14x14 even at the shallowest cut); block 6 is global
    average pooling and Dense classes. 5.6 forward MFLOP per 28x28 image, 35,514 parameters."""
    if i < len(ALLCONV_WIDTHS):
        x = nn.relu(conv(impl, ALLCONV_WIDTHS[i], f"conv{i + 1}", precision)(x))
        return pool2(x, impl) if i in (0, 2) else x
    return dense(num_classes, "fc", precision)(global_avg_pool(x))
