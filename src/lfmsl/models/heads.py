"""The clients' local heads, built from the smashed shape: LocFedMix-SL's decoder and LocSplitFed's
auxiliary classifiers."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np

from lfmsl.models.layers import conv, conv_transpose, dense, flatten, global_avg_pool

class Decoder(nn.Module):
    """LocFedMix-SL's decoder from any smashed shape back to the image, built from the shapes:
    a flat vector first goes through Dense to a (H/4, W/4, 64) map; then one transposed
    convolution 3x3/2 per halving of the resolution, 32 channels and ReLU; the output layer
    (C channels, sigmoid) is the last transposed convolution where there are two or more, else
    a conv 3x3 after a conv or transposed conv of 32. The cnn's decoder at its default cut and
    resnet18's at its are these layers exactly."""

    out_channels: int
    doublings: int
    dense_to: tuple[int, int, int] | None = None
    conv_impl: str = "xla"
    precision: str = "float32"

    @nn.compact
    def __call__(self, s: jax.Array) -> jax.Array:
        if self.dense_to is not None:
            s = nn.relu(dense(int(np.prod(self.dense_to)), "fc", self.precision)(s))
            s = s.reshape((s.shape[0], *self.dense_to))
        if self.doublings == 0:
            s = nn.relu(conv(self.conv_impl, 32, "conv1", self.precision)(s))
        for i in range(self.doublings):
            output = self.doublings >= 2 and i == self.doublings - 1
            s = conv_transpose(self.conv_impl, self.out_channels if output else 32, f"deconv{i + 1}", self.precision)(s)
            if output:
                return nn.sigmoid(s)
            s = nn.relu(s)
        return nn.sigmoid(conv(self.conv_impl, self.out_channels, "conv2", self.precision)(s))


class FlatAux(nn.Module):
    """LocSplitFed's auxiliary classifier on the flattened smashed data (the cnn's default cut)."""

    num_classes: int
    precision: str = "float32"

    @nn.compact
    def __call__(self, s: jax.Array) -> jax.Array:
        return dense(self.num_classes, "fc", self.precision)(flatten(s))


class PoolAux(nn.Module):
    """LocSplitFed's auxiliary classifier for any smashed shape: global average pooling of a
    feature map (a vector is used as it is), then Dense num_classes."""

    num_classes: int
    precision: str = "float32"

    @nn.compact
    def __call__(self, s: jax.Array) -> jax.Array:
        return dense(self.num_classes, "fc", self.precision)(global_avg_pool(s) if s.ndim == 4 else s)
