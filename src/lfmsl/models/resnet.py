"""resnet18 as numbered blocks (see `factory.Architecture`), for CIFAR-10.

ResNet-18-style network with GroupNorm rather than BatchNorm: a client segment must not depend on
batch statistics, which differ per client and leak data (docs/DESIGN.md). 8 groups divide every
stage width (64..512) and are cheaper than 32 on a CPU.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from lfmsl.models.layers import conv_layer, dense, global_avg_pool

GN_GROUPS = 8
STAGES = (64, 128, 256, 512)


def _conv(impl: str, features: int, size: int, strides: int, name: str, precision: str) -> nn.Module:
    """A bias-free SAME convolution; "patches" (im2col and a matmul) has the same parameters as XLA's.

    Why patches by default: inside the round's `lax.scan`, XLA:CPU runs its own convolutions about
    15 times slower than in a plain step (docs/PERFORMANCE.md); the matmul form is not affected."""
    return conv_layer(impl, features, (size, size), (strides, strides), name, precision, use_bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv + GroupNorm layers and a residual; 1x1 projection when shape changes."""

    features: int
    strides: int = 1
    gn_groups: int = GN_GROUPS
    impl: str = "xla"
    precision: str = "float32"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = _conv(self.impl, self.features, 3, self.strides, "conv1", self.precision)(x)
        h = nn.relu(nn.GroupNorm(self.gn_groups, name="norm1")(h))
        h = _conv(self.impl, self.features, 3, 1, "conv2", self.precision)(h)
        h = nn.GroupNorm(self.gn_groups, name="norm2")(h)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = _conv(self.impl, self.features, 1, self.strides, "proj_conv", self.precision)(x)
            x = nn.GroupNorm(self.gn_groups, name="proj_norm")(x)
        return nn.relu(h + x)


def resnet_block(i: int, x: jax.Array, num_classes: int, impl: str, precision: str) -> jax.Array:
    """resnet18: 1 CIFAR stem (conv 3x3 64, no max-pool) and stage 1 | 2 stage 2 | 3 stage 3 |
    4 stage 4, global average pooling, Dense classes. Stages 2-4 halve the resolution."""
    if i == 0:
        x = _conv(impl, STAGES[0], 3, 1, "stem_conv", precision)(x)
        x = nn.relu(nn.GroupNorm(GN_GROUPS, name="stem_norm")(x))
    if i < len(STAGES):
        for b in range(2):
            x = BasicBlock(STAGES[i], 2 if i > 0 and b == 0 else 1, GN_GROUPS, impl, precision,
                           name=f"stage{i + 1}_block{b + 1}")(x)
    if i == len(STAGES) - 1:
        x = dense(num_classes, "head", precision)(global_avg_pool(x))
    return x
