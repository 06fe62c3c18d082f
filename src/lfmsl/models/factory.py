"""The model factory: architectures as numbered blocks, cut into a `SplitModel`, and their
parameters' initialisation."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lfmsl import datasets
from lfmsl.errors import UsageError
from lfmsl.models.cnn import allconv_block, cnn_block
from lfmsl.models.heads import Decoder, FlatAux, PoolAux
from lfmsl.models.layers import PRECISIONS
from lfmsl.models.resnet import resnet_block


@dataclasses.dataclass(frozen=True)
class SplitModel:
    """A model cut into the parts that split learning trains separately."""

    name: str
    client: nn.Module
    server: nn.Module
    decoder: nn.Module
    aux: nn.Module
    input_shape: tuple[int, int, int]
    smashed_shape: tuple[int, ...]
    num_classes: int
    cut: int  # client blocks

    def parts(self) -> dict[str, nn.Module]:
        """The four parts by name, in the order of ``init_params``."""
        return {"client": self.client, "server": self.server, "decoder": self.decoder,
                "aux": self.aux}

    def logits(self, lower: Any, upper: Any, images: jax.Array) -> jax.Array:
        """The whole network: the server segment on top of the client segment (evaluation and
        the unsplit baselines need nothing else)."""
        return self.server.apply({"params": upper}, self.client.apply({"params": lower}, images))


# --------------------------------------------------------------------------------------------
# The architectures, as numbered blocks: the client segment is blocks [0, cut), the server
# segment blocks [cut, end). Each block function creates its layers under fixed names, so the
# parameters of a segment are those of its blocks whatever the cut.


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A network as numbered blocks and where it is cut by default."""

    block: Callable[[int, jax.Array, int, str, str], jax.Array]  # (index, x, classes, conv_impl, precision)
    blocks: int
    default_cut: int  # client blocks; the cut the golden metrics pin
    size_multiple: int  # H and W must be multiples of it (the pools and strides)


ARCHITECTURES = {
    "cnn": Architecture(cnn_block, blocks=4, default_cut=2, size_multiple=4),
    "allconv": Architecture(allconv_block, blocks=6, default_cut=2, size_multiple=4),
    "resnet18": Architecture(resnet_block, blocks=4, default_cut=1, size_multiple=8),
}
MODELS = tuple(ARCHITECTURES)


class Segment(nn.Module):
    """Blocks [start, stop) of an architecture: the client segment (start 0) or the server's."""

    architecture: str
    start: int
    stop: int
    num_classes: int
    conv_impl: str = "xla"
    precision: str = "float32"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.start == 0:
            x = jnp.asarray(x, jnp.float32)
        for i in range(self.start, self.stop):
            x = ARCHITECTURES[self.architecture].block(i, x, self.num_classes, self.conv_impl, self.precision)
        return x


# --------------------------------------------------------------------------------------------
# Public API


def default_model_for(dataset: str) -> str:
    """The model the paper's setting uses for a data set: cnn for (Fashion-)MNIST, else resnet18."""
    return datasets.spec(dataset).default_model


def cut_range(name: str) -> tuple[int, int]:
    """The cuts a model allows: at least one block on each side."""
    return 1, ARCHITECTURES[name].blocks - 1


def get_model(name: str, input_shape: tuple[int, int, int], num_classes: int, conv_impl: str = "patches",
              cut: int | None = None, precision: str = "float32") -> SplitModel:
    """Build the split model ``name`` for images of ``input_shape`` (H, W, C), cut after block
    ``cut`` (default: the model's own cut; see ``ARCHITECTURES`` and each block function).

    ``conv_impl`` picks the convolutions of every model, in the client, the server and the
    decoder: "patches" (im2col, or sub-pixel patches for the decoder's transposed convolutions,
    and a matrix product; faster on a CPU and under vmap, see docs/PERFORMANCE.md) or "xla".
    ``precision`` ("float32" or "bfloat16") is the operands' type in every matrix product and
    convolution; bfloat16 products still sum in float32 (``layers.product``).
    """
    input_shape = tuple(int(d) for d in input_shape)
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise UsageError(f"input_shape must be (H, W, C) with positive sizes, got {input_shape}")
    if num_classes < 2:
        raise UsageError(f"num_classes must be at least 2, got {num_classes}")
    if conv_impl not in ("xla", "patches"):
        raise UsageError(f"unknown conv_impl {conv_impl!r}; choose 'xla' or 'patches'")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose {' or '.join(PRECISIONS)}")
    arch = ARCHITECTURES[name]
    cut = arch.default_cut if cut is None else cut
    low, high = cut_range(name)
    if not low <= cut <= high:
        raise UsageError(f"--cut {cut} is out of range for model {name}: it has {arch.blocks} blocks, "
                         f"so cut after block {low} to {high}")
    h, w, c = input_shape
    if h % arch.size_multiple or w % arch.size_multiple:
        raise UsageError(f"model {name} needs H and W divisible by {arch.size_multiple}, got {h}x{w}")
    client = Segment(name, 0, cut, num_classes, conv_impl, precision)
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    smashed = tuple(jax.eval_shape(lambda x: client.init_with_output(jax.random.key(0), x)[0], x).shape[1:])
    if len(smashed) == 3:
        doublings, ratio = 0, h // smashed[0]
        while 2 ** doublings < ratio:
            doublings += 1
        if 2 ** doublings != ratio or w // smashed[1] != ratio:
            raise UsageError(f"no decoder from smashed data {smashed} back to {input_shape}: the resolution must "
                             "shrink by a power of 2")
        decoder = Decoder(c, doublings, None, conv_impl, precision)
    else:  # a vector: Dense back to the last feature map, then up to the image
        decoder = Decoder(c, 2, (h // 4, w // 4, 64), conv_impl, precision)
    flat_aux = name == "cnn" and cut == arch.default_cut  # the head the golden metrics pin
    return SplitModel(name=name, input_shape=input_shape, smashed_shape=smashed, num_classes=num_classes, cut=cut,
                      client=client, server=Segment(name, cut, arch.blocks, num_classes, conv_impl, precision),
                      decoder=decoder, aux=(FlatAux if flat_aux else PoolAux)(num_classes, precision))


def example_inputs(model: SplitModel, batch: int) -> dict[str, jax.ShapeDtypeStruct]:
    """Abstract inputs of each part, for init and cost analysis."""
    smashed = jax.ShapeDtypeStruct((batch, *model.smashed_shape), jnp.float32)
    return {"client": jax.ShapeDtypeStruct((batch, *model.input_shape), jnp.float32),
            "server": smashed, "decoder": smashed, "aux": smashed}


@functools.lru_cache(maxsize=None)
def _jitted_init(model: SplitModel) -> Callable[[jax.Array], dict]:
    """One compiled initialiser per model: compiling resnet18's init takes seconds on a CPU."""
    inputs = example_inputs(model, 1)

    @jax.jit
    def init(key: jax.Array) -> dict:
        keys = dict(zip(inputs, jax.random.split(key, len(inputs))))
        return {k: part.init(keys[k], jnp.zeros(inputs[k].shape, inputs[k].dtype))["params"]
                for k, part in model.parts().items()}

    return init


def init_params(model: SplitModel, key: jax.Array) -> dict:
    """Fresh parameters of all four parts, deterministic in ``key``; each value is the part's
    ``variables["params"]`` (the models have no other collections). Works under ``jax.vmap``
    over keys, to give every client its own initialisation."""
    return _jitted_init(model)(key)
