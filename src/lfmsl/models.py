"""Split models: a client (lower) segment, a server (upper) segment and the clients' local heads.

Every part is a plain Flax Linen module applied as ``part.apply({"params": p}, x)``, so a
stacked parameter pytree with a leading clients axis runs under ``jax.vmap`` or ``jax.lax.map``
without any Flax lifting. The cut is part of the model description (see docs/DESIGN.md).

Parts:
- ``client``: images float32 [B,H,W,C] in [0,1] -> smashed data [B, *smashed_shape].
- ``server``: smashed data -> logits [B, num_classes].
- ``decoder``: smashed data -> reconstruction [B,H,W,C] in (0,1); LocFedMix-SL's local
  regulariser.
- ``aux``: smashed data -> logits; LocSplitFed's auxiliary classifier.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np

from lfmsl.errors import UsageError

_DEFAULT_MODEL = {"mnist": "cnn", "fashion_mnist": "cnn", "cifar10": "resnet18"}


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


# --------------------------------------------------------------------------------------------
# Building blocks


def extract_patches(x: jax.Array, window: Sequence[int], strides: Sequence[int],
                    pads: Sequence[tuple[int, int]]) -> jax.Array:
    """im2col by slicing: [B,H,W,C] -> [B,OH,OW,kh*kw*C], features ordered (kh, kw, C).

    Why slices and not ``lax.conv_general_dilated_patches``: that is a convolution with an
    identity filter, whose gradient is another convolution; slices cost only data movement and
    their gradient is a padded sum. The (kh, kw, C) order matches an HWIO kernel's reshape.
    Pads may be negative (cropping).
    """
    (kh, kw), (sh, sw) = window, strides
    x = jax.lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)])
    oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    taps = [x[:, i: i + (oh - 1) * sh + 1: sh, j: j + (ow - 1) * sw + 1: sw, :]
            for i in range(kh) for j in range(kw)]
    return jnp.concatenate(taps, axis=-1)


class PatchConv(nn.Module):
    """A 2-D convolution as im2col (``extract_patches``) plus one matrix product.

    Why: ``vmap`` over per-client kernels turns ``nn.Conv`` into a grouped convolution, which is
    slow on XLA:CPU (docs/DESIGN.md); here it becomes a batched matmul instead. Whether that is
    faster depends on backend and sizes, so choose by measurement (docs/PERFORMANCE.md). The
    parameters have the same names, shapes, layout and initialisers as ``nn.Conv`` (``kernel``
    [kh,kw,in,out], ``bias`` [out]), so the two are interchangeable. NHWC input, no dilation or
    groups.
    """

    features: int
    kernel_size: Sequence[int] = (3, 3)
    strides: Sequence[int] = (1, 1)
    padding: str | Sequence[tuple[int, int]] = "SAME"
    use_bias: bool = True
    kernel_init: Callable = nn.linear.default_kernel_init
    bias_init: Callable = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        cin = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (kh, kw, cin, self.features), jnp.float32)
        pads = self.padding
        if isinstance(pads, str):
            pads = jax.lax.padtype_to_pads(x.shape[1:3], (kh, kw), tuple(self.strides), pads)
        patches = extract_patches(x, (kh, kw), self.strides, pads)
        y = patches @ kernel.reshape(kh * kw * cin, self.features)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,), jnp.float32)
        return y


def _subpixel_taps(k: int, s: int) -> tuple[int, np.ndarray]:
    """For one axis of a SAME transposed convolution (kernel k, stride s): where each kernel tap
    lands when the output is split into s phases.

    Output o = s*m + r reads input m + d through tap t exactly when t = s*d + pad - r, with
    pad = ``lax``'s SAME padding of the dilated input. Returns the smallest offset d_min and a
    one-hot table E [k, n_d, s] with E[t, d - d_min, r] = 1 for every such (t, d, r).
    """
    pad_len = k + s - 2
    pad = k - 1 if s > k - 1 else int(np.ceil(pad_len / 2))
    hits = [(t, (r + t - pad) // s, r) for r in range(s) for t in range(k) if (r + t - pad) % s == 0]
    d_min = min(d for _, d, _ in hits)
    table = np.zeros((k, max(d for _, d, _ in hits) - d_min + 1, s), np.float32)
    for t, d, r in hits:
        table[t, d - d_min, r] = 1.0
    return d_min, table


def _transpose_pad(k: int, s: int) -> int:
    """The low padding of the dilated input in a SAME transposed convolution (as ``lax``)."""
    return k - 1 if s > k - 1 else int(np.ceil((k + s - 2) / 2))


class PatchConvTranspose(nn.Module):
    """``nn.ConvTranspose`` (SAME, no kernel flip) as one matrix product and data movement.

    Why: under ``vmap`` XLA's transposed convolution becomes a grouped convolution of a
    zero-dilated input, slow on XLA:CPU. Two formulations, both a batched matmul under vmap
    and neither multiplying by the inserted zeros; ``method`` picks one, and "auto" takes the
    one whose intermediate is narrower (the decoder's wide layer is sub-pixel, its 1-channel
    output layer overlap-add; docs/PERFORMANCE.md):

    - "subpixel": each input pixel's small window times a kernel rearranged into its s*s
      output phases, then the phases interleaved (intermediate: window*in features).
    - "overlap_add": every input pixel times every tap (intermediate: kh*kw*out features),
      then each tap's results added at their output positions, a strided (interior) pad.

    Same parameter names, shapes and initialisers as ``nn.ConvTranspose``.
    """

    features: int
    kernel_size: Sequence[int] = (3, 3)
    strides: Sequence[int] = (2, 2)
    padding: str = "SAME"
    use_bias: bool = True
    kernel_init: Callable = nn.linear.default_kernel_init
    bias_init: Callable = nn.initializers.zeros_init()
    method: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.padding != "SAME":
            raise UsageError(f"PatchConvTranspose supports padding 'SAME' only, got {self.padding!r}")
        if self.method not in ("auto", "subpixel", "overlap_add"):
            raise UsageError(f"unknown PatchConvTranspose method {self.method!r}; choose auto, subpixel or overlap_add")
        (kh, kw), strides = self.kernel_size, tuple(self.strides)
        cin = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (kh, kw, cin, self.features), jnp.float32)
        taps_h, taps_w = (_subpixel_taps(k, s)[1] for k, s in zip((kh, kw), strides))
        subpixel_width = taps_h.shape[1] * taps_w.shape[1] * cin
        method = self.method
        if method == "auto":
            method = "overlap_add" if kh * kw * self.features < subpixel_width else "subpixel"
        y = (_overlap_add_transpose if method == "overlap_add" else _subpixel_transpose)(x, kernel, strides)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,), jnp.float32)
        return y


def _subpixel_transpose(x: jax.Array, kernel: jax.Array, strides: tuple[int, int]) -> jax.Array:
    """SAME transposed convolution as sub-pixel patches times the phase-split kernel."""
    kh, kw, cin, cout = kernel.shape
    (sh, sw), (b, h, w, _) = strides, x.shape
    dh, eh = _subpixel_taps(kh, sh)
    dw, ew = _subpixel_taps(kw, sw)
    nh, nw = eh.shape[1], ew.shape[1]
    # [window_h, window_w, in, phase_h, phase_w, out]: the kernel split into output phases.
    phased = jnp.einsum("tar,ubq,tuio->abirqo", eh, ew, kernel)
    pads = [(-dh, nh - 1 + dh), (-dw, nw - 1 + dw)]
    patches = extract_patches(x, (nh, nw), (1, 1), pads)
    y = patches @ phased.reshape(nh * nw * cin, sh * sw * cout)
    y = y.reshape(b, h, w, sh, sw, cout).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(b, h * sh, w * sw, cout)


def _overlap_add_transpose(x: jax.Array, kernel: jax.Array, strides: tuple[int, int]) -> jax.Array:
    """SAME transposed convolution as input times every tap, each tap's result added at its place.

    Input pixel i feeds output s*i + pad - t through tap t (``lax.conv_transpose``'s SAME
    convention); a pad with s-1 interior zeros and low padding pad - t puts it there.
    """
    kh, kw, cin, cout = kernel.shape
    (sh, sw), (b, h, w, _) = strides, x.shape
    per_tap = (x @ kernel.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout)).reshape(b, h, w, kh, kw, cout)
    ah, aw = _transpose_pad(kh, sh), _transpose_pad(kw, sw)
    zero = jnp.zeros((), x.dtype)
    y = jnp.zeros((b, h * sh, w * sw, cout), x.dtype)
    for t in range(kh):
        for u in range(kw):
            placement = [(0, 0, 0), (ah - t, sh - 1 - ah + t, sh - 1), (aw - u, sw - 1 - aw + u, sw - 1), (0, 0, 0)]
            y = y + jax.lax.pad(per_tap[:, :, :, t, u, :], zero, placement)
    return y


def _conv(impl: str, features: int, name: str) -> nn.Module:
    """A 3x3 SAME convolution in the chosen implementation; both have the same param tree."""
    if impl == "xla":
        return nn.Conv(features, (3, 3), padding="SAME", name=name)
    if impl == "patches":
        return PatchConv(features, (3, 3), padding="SAME", name=name)
    raise UsageError(f"unknown conv_impl {impl!r}; choose 'xla' or 'patches'")


def _conv_transpose(impl: str, features: int, name: str) -> nn.Module:
    """A 3x3 stride-2 SAME transposed convolution in the chosen implementation (same params)."""
    if impl == "xla":
        return nn.ConvTranspose(features, (3, 3), strides=(2, 2), padding="SAME", name=name)
    if impl == "patches":
        return PatchConvTranspose(features, (3, 3), strides=(2, 2), name=name)
    raise UsageError(f"unknown conv_impl {impl!r}; choose 'xla' or 'patches'")


def _flatten(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)


def _pool_windows(x: jax.Array, size: int) -> jax.Array:
    """[B,H,W,C] -> [B,H/s,s,W/s,s,C]: each non-overlapping window on axes 2 and 4."""
    b, h, w, c = x.shape
    return x.reshape(b, h // size, size, w // size, size, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def reshape_max_pool(x: jax.Array, size: int = 2) -> jax.Array:
    """Non-overlapping size x size max-pool as a reshape and a max: [B,H,W,C] -> [B,H/s,W/s,C].

    Why: ``nn.max_pool`` is a ``reduce_window`` whose gradient, ``select_and_scatter``, was 3x
    slower than this under a loop and 9x slower under vmap on XLA:CPU (docs/PERFORMANCE.md).
    The gradient is written by hand as one select (the window's maximum gets the output's
    gradient): autodiff of ``max`` would store a float tie-count tensor as large as the input,
    which made a 100-client vmapped LocFedMix-SL round 10% slower. The value is the same as
    ``nn.max_pool``'s; the gradient differs only on exact ties inside a window (every tied
    element gets it), which after a ReLU are zeros whose gradient the ReLU stops anyway.
    """
    return _pool_windows(x, size).max(axis=(2, 4))


def _max_pool_forward(x: jax.Array, size: int):
    pooled = reshape_max_pool(x, size)
    return pooled, (x, pooled)


def _max_pool_backward(size: int, residuals, grad: jax.Array):
    x, pooled = residuals
    at_max = _pool_windows(x, size) == pooled[:, :, None, :, None, :]
    return (jnp.where(at_max, grad[:, :, None, :, None, :], 0.0).reshape(x.shape),)


reshape_max_pool.defvjp(_max_pool_forward, _max_pool_backward)


def _pool2(x: jax.Array, impl: str = "xla") -> jax.Array:
    if impl == "patches":
        return reshape_max_pool(x)
    return nn.max_pool(x, (2, 2), strides=(2, 2))


def _global_avg_pool(x: jax.Array) -> jax.Array:
    return jnp.mean(x, axis=(1, 2))


# --------------------------------------------------------------------------------------------
# The architectures, as numbered blocks: the client segment is blocks [0, cut), the server
# segment blocks [cut, end). Each block function creates its layers under fixed names, so the
# parameters of a segment are those of its blocks whatever the cut.


def _cnn_block(i: int, x: jax.Array, num_classes: int, impl: str) -> jax.Array:
    """cnn: 1 conv 3x3 32, ReLU, pool 2 | 2 conv 3x3 64, ReLU, pool 2 | 3 Dense 128, ReLU | 4 Dense classes."""
    if i == 0:
        return _pool2(nn.relu(_conv(impl, 32, "conv1")(x)), impl)
    if i == 1:
        return _pool2(nn.relu(_conv(impl, 64, "conv2")(x)), impl)
    if i == 2:
        return nn.relu(nn.Dense(128, name="fc1")(_flatten(x)))
    return nn.Dense(num_classes, name="fc2")(x)


_ALLCONV_WIDTHS = (16, 16, 32, 32, 64)


def _allconv_block(i: int, x: jax.Array, num_classes: int, impl: str) -> jax.Array:
    """allconv: five conv 3x3 + ReLU blocks of 16, 16, 32, 32, 64 channels, a 2x2 pool closing
    blocks 1 and 3 (so the server's maps are 14x14 even at the shallowest cut); block 6 is global
    average pooling and Dense classes. 5.6 forward MFLOP per 28x28 image, 35,514 parameters."""
    if i < len(_ALLCONV_WIDTHS):
        x = nn.relu(_conv(impl, _ALLCONV_WIDTHS[i], f"conv{i + 1}")(x))
        return _pool2(x, impl) if i in (0, 2) else x
    return nn.Dense(num_classes, name="fc")(_global_avg_pool(x))


# resnet18: ResNet-18-style network for CIFAR-10 with GroupNorm rather than BatchNorm: a client
# segment must not depend on batch statistics, which differ per client and leak data
# (docs/DESIGN.md). 8 groups divide every stage width (64..512) and are cheaper than 32 on a CPU.

_GN_GROUPS = 8
_STAGES = (64, 128, 256, 512)


class BasicBlock(nn.Module):
    """Two 3x3 conv + GroupNorm layers and a residual; 1x1 projection when shape changes."""

    features: int
    strides: int = 1
    gn_groups: int = _GN_GROUPS

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s = (self.strides, self.strides)
        h = nn.Conv(self.features, (3, 3), s, padding="SAME", use_bias=False, name="conv1")(x)
        h = nn.relu(nn.GroupNorm(self.gn_groups, name="norm1")(h))
        h = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False, name="conv2")(h)
        h = nn.GroupNorm(self.gn_groups, name="norm2")(h)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = nn.Conv(self.features, (1, 1), s, use_bias=False, name="proj_conv")(x)
            x = nn.GroupNorm(self.gn_groups, name="proj_norm")(x)
        return nn.relu(h + x)


def _resnet_block(i: int, x: jax.Array, num_classes: int, impl: str) -> jax.Array:
    """resnet18: 1 CIFAR stem (conv 3x3 64, no max-pool) and stage 1 | 2 stage 2 | 3 stage 3 |
    4 stage 4, global average pooling, Dense classes. Stages 2-4 halve the resolution."""
    if i == 0:
        x = nn.Conv(_STAGES[0], (3, 3), padding="SAME", use_bias=False, name="stem_conv")(x)
        x = nn.relu(nn.GroupNorm(_GN_GROUPS, name="stem_norm")(x))
    if i < len(_STAGES):
        for b in range(2):
            x = BasicBlock(_STAGES[i], 2 if i > 0 and b == 0 else 1, _GN_GROUPS, name=f"stage{i + 1}_block{b + 1}")(x)
    if i == len(_STAGES) - 1:
        x = nn.Dense(num_classes, name="head")(_global_avg_pool(x))
    return x


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A network as numbered blocks and where it is cut by default."""

    block: Callable[[int, jax.Array, int, str], jax.Array]
    blocks: int
    default_cut: int  # client blocks; today's cut, whose results are kept bit for bit
    size_multiple: int  # H and W must be multiples of it (the pools and strides)
    patches: bool  # whether --conv patches applies (else XLA's convolutions always)


ARCHITECTURES = {
    "cnn": Architecture(_cnn_block, blocks=4, default_cut=2, size_multiple=4, patches=True),
    "allconv": Architecture(_allconv_block, blocks=6, default_cut=2, size_multiple=4, patches=True),
    "resnet18": Architecture(_resnet_block, blocks=4, default_cut=1, size_multiple=8, patches=False),
}
MODELS = tuple(ARCHITECTURES)


class Segment(nn.Module):
    """Blocks [start, stop) of an architecture: the client segment (start 0) or the server's."""

    architecture: str
    start: int
    stop: int
    num_classes: int
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.start == 0:
            x = jnp.asarray(x, jnp.float32)
        for i in range(self.start, self.stop):
            x = ARCHITECTURES[self.architecture].block(i, x, self.num_classes, self.conv_impl)
        return x


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

    @nn.compact
    def __call__(self, s: jax.Array) -> jax.Array:
        if self.dense_to is not None:
            s = nn.relu(nn.Dense(int(np.prod(self.dense_to)), name="fc")(s)).reshape((s.shape[0], *self.dense_to))
        if self.doublings == 0:
            s = nn.relu(_conv(self.conv_impl, 32, "conv1")(s))
        for i in range(self.doublings):
            output = self.doublings >= 2 and i == self.doublings - 1
            s = _conv_transpose(self.conv_impl, self.out_channels if output else 32, f"deconv{i + 1}")(s)
            if output:
                return nn.sigmoid(s)
            s = nn.relu(s)
        return nn.sigmoid(_conv(self.conv_impl, self.out_channels, "conv2")(s))


class FlatAux(nn.Module):
    """LocSplitFed's auxiliary classifier on the flattened smashed data (the cnn's default cut)."""

    num_classes: int

    @nn.compact
    def __call__(self, s: jax.Array) -> jax.Array:
        return nn.Dense(self.num_classes, name="fc")(_flatten(s))


class PoolAux(nn.Module):
    """LocSplitFed's auxiliary classifier for any smashed shape: global average pooling of a
    feature map (a vector is used as it is), then Dense num_classes."""

    num_classes: int

    @nn.compact
    def __call__(self, s: jax.Array) -> jax.Array:
        return nn.Dense(self.num_classes, name="fc")(_global_avg_pool(s) if s.ndim == 4 else s)


# --------------------------------------------------------------------------------------------
# Public API


def default_model_for(dataset: str) -> str:
    """The model the paper's setting uses for a data set: cnn for (Fashion-)MNIST, else resnet18."""
    if dataset not in _DEFAULT_MODEL:
        raise UsageError(f"no default model for dataset {dataset!r}; known: "
                         f"{', '.join(sorted(_DEFAULT_MODEL))}")
    return _DEFAULT_MODEL[dataset]


def cut_range(name: str) -> tuple[int, int]:
    """The cuts a model allows: at least one block on each side."""
    return 1, ARCHITECTURES[name].blocks - 1


def get_model(name: str, input_shape: tuple[int, int, int], num_classes: int, conv_impl: str = "patches",
              cut: int | None = None) -> SplitModel:
    """Build the split model ``name`` for images of ``input_shape`` (H, W, C), cut after block
    ``cut`` (default: the model's own cut; see ``ARCHITECTURES`` and each block function).

    ``conv_impl`` picks the convolutions of cnn and allconv, in the client, the server and the
    decoder: "patches" (im2col, or sub-pixel patches for the decoder's transposed convolutions,
    and a matrix product; faster on a CPU and under vmap, see docs/PERFORMANCE.md) or "xla".
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
    arch = ARCHITECTURES[name]
    cut = arch.default_cut if cut is None else cut
    low, high = cut_range(name)
    if not low <= cut <= high:
        raise UsageError(f"--cut {cut} is out of range for model {name}: it has {arch.blocks} blocks, so cut after block {low} to {high}")
    h, w, c = input_shape
    if h % arch.size_multiple or w % arch.size_multiple:
        raise UsageError(f"model {name} needs H and W divisible by {arch.size_multiple}, got {h}x{w}")
    impl = conv_impl if arch.patches else "xla"
    client = Segment(name, 0, cut, num_classes, impl)
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    smashed = tuple(jax.eval_shape(lambda x: client.init_with_output(jax.random.key(0), x)[0], x).shape[1:])
    if len(smashed) == 3:
        doublings, ratio = 0, h // smashed[0]
        while 2 ** doublings < ratio:
            doublings += 1
        if 2 ** doublings != ratio or w // smashed[1] != ratio:
            raise UsageError(f"no decoder from smashed data {smashed} back to {input_shape}: the resolution must shrink by a power of 2")
        decoder = Decoder(c, doublings, None, impl)
    else:  # a vector: Dense back to the last feature map, then up to the image
        decoder = Decoder(c, 2, (h // 4, w // 4, 64), impl)
    flat_aux = name == "cnn" and cut == arch.default_cut  # today's head there, kept bit for bit
    return SplitModel(name=name, input_shape=input_shape, smashed_shape=smashed, num_classes=num_classes, cut=cut,
                      client=client, server=Segment(name, cut, arch.blocks, num_classes, impl), decoder=decoder,
                      aux=FlatAux(num_classes) if flat_aux else PoolAux(num_classes))


def _example_inputs(model: SplitModel, batch: int) -> dict[str, jax.ShapeDtypeStruct]:
    """Abstract inputs of each part, for init and cost analysis."""
    smashed = jax.ShapeDtypeStruct((batch, *model.smashed_shape), jnp.float32)
    return {"client": jax.ShapeDtypeStruct((batch, *model.input_shape), jnp.float32),
            "server": smashed, "decoder": smashed, "aux": smashed}


@functools.lru_cache(maxsize=None)
def _jitted_init(model: SplitModel) -> Callable[[jax.Array], dict]:
    """One compiled initialiser per model: compiling resnet18's init takes seconds on a CPU."""
    inputs = _example_inputs(model, 1)

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


def count_params(tree: Any) -> int:
    """Number of scalar parameters in a pytree."""
    return int(sum(np.prod(np.shape(leaf), dtype=np.int64) for leaf in jax.tree.leaves(tree)))


def _flops_from_cost(cost: Any) -> float | None:
    """The 'flops' entry of a cost analysis, which is a dict, or a list of one in older jax."""
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or cost.get("flops", 0.0) <= 0.0:
        return None
    return float(cost["flops"])


def _count_jaxpr_flops(jaxpr: jex.Jaxpr) -> float:
    """2 * multiply-accumulates of every matmul and convolution, the fallback count."""
    total = 0.0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            k = np.prod([eqn.invars[0].aval.shape[d] for d in lhs_contract])
            total += 2.0 * np.prod(eqn.outvars[0].aval.shape) * k
        elif eqn.primitive.name == "conv_general_dilated":
            rhs = eqn.invars[1].aval.shape
            out_c = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
            # A transposed convolution dilates its input; the inserted zeros cost nothing.
            total += (2.0 * np.prod(eqn.outvars[0].aval.shape) * np.prod(rhs) / out_c
                      / np.prod(eqn.params["lhs_dilation"]))
        for sub in jex.jaxprs_in_params(eqn.params):
            total += _count_jaxpr_flops(sub)
    return total


def flops_per_sample(model: SplitModel, batch: int = 8) -> dict[str, float]:
    """Forward FLOPs per sample of each part, from XLA's cost analysis of a compiled batch.

    XLA counts elementwise work too, but skips the taps that fall on SAME padding, so a small
    convolution comes out a few per cent under 2 * MACs (cnn client: 7.09e6 vs 7.68e6). Where
    it reports nothing (some backends), fall back to 2 * MACs of the matmuls and convolutions
    in the jaxpr.
    """
    params = jax.eval_shape(lambda: init_params(model, jax.random.key(0)))
    inputs = _example_inputs(model, batch)
    out = {}
    for k, part in model.parts().items():
        fn = lambda p, x, part=part: part.apply({"params": p}, x)
        flops = _flops_from_cost(jax.jit(fn).lower(params[k], inputs[k]).compile().cost_analysis())
        if flops is None:
            flops = _count_jaxpr_flops(jax.make_jaxpr(fn)(params[k], inputs[k]).jaxpr)
        out[k] = flops / batch
    return out
