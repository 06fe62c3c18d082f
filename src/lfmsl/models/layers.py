"""Custom layers: convolutions as patches and a matrix product (faster on a CPU and under vmap),
their transposed form for decoders, and the pooling used by the architectures."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lfmsl.errors import UsageError

# The operands of the models' matrix products and convolutions (--matmul-precision): float32, or bfloat16 with
# float32 accumulation, for accelerators whose matrix units run bfloat16 many times faster. float32 builds exactly
# the layers lfmsl always built.
PRECISIONS = ("float32", "bfloat16")


def product(a: jax.Array, b: jax.Array, precision: str = "float32") -> jax.Array:
    """a @ b, its operands rounded to bfloat16 where `precision` says so, summed in float32."""
    if precision == "float32":
        return a @ b
    return jnp.matmul(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), preferred_element_type=jnp.float32)


def _bfloat16_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """flax's Dense product with bfloat16 operands and a float32 sum."""
    return jax.lax.dot_general(lhs.astype(jnp.bfloat16), rhs.astype(jnp.bfloat16), dimension_numbers,
                               preferred_element_type=jnp.float32)


def _bfloat16_conv(lhs, rhs, *args, **kwargs):
    """flax's Conv convolution with bfloat16 operands and a float32 sum. Its gradient is the float32 convolution's
    at the rounded operands: jax 0.6 cannot transpose a convolution of bfloat16 operands into float32."""
    kwargs.pop("preferred_element_type", None)
    exact = lambda a, b: jax.lax.conv_general_dilated(a, b, *args, **kwargs)
    rounded = lambda x: x.astype(jnp.bfloat16).astype(jnp.float32)

    @jax.custom_vjp
    def conv(a, b):
        return jax.lax.conv_general_dilated(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), *args,
                                            preferred_element_type=jnp.float32, **kwargs)

    def forward(a, b):
        return conv(a, b), (a, b)

    def backward(operands, grad):
        return jax.vjp(exact, *map(rounded, operands))[1](grad)

    conv.defvjp(forward, backward)
    return conv(lhs, rhs)


def dense(features: int, name: str, precision: str = "float32") -> nn.Module:
    """nn.Dense, its product in `precision`."""
    if precision == "float32":
        return nn.Dense(features, name=name)
    return nn.Dense(features, name=name, dot_general=_bfloat16_dot_general)


def extract_patches(x: jax.Array, window: Sequence[int], strides: Sequence[int],
                    pads: Sequence[tuple[int, int]]) -> jax.Array:
    """im2col by slicing: [B,H,W,C] -> [B,OH,OW,kh*kw*C], features ordered (kh, kw, C).

    Why slices and not ``lax.conv_general_dilated_patches``: that is a convolution with an
    identity filter, whose gradient is another convolution; slices cost only data movement and
    their gradient is a padded sum. The (kh, kw, C) order matches an HWIO kernel's reshape.
    Pads may be negative (cropping).
    """
    (kh, kw), (sh, sw) = window, strides
    with jax.named_scope("patches"):  # labels the compiled program for profiles (scripts/profile_round.py)
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
    precision: str = "float32"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        cin = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (kh, kw, cin, self.features), jnp.float32)
        pads = self.padding
        if isinstance(pads, str):
            pads = jax.lax.padtype_to_pads(x.shape[1:3], (kh, kw), tuple(self.strides), pads)
        patches = extract_patches(x, (kh, kw), self.strides, pads)
        y = product(patches, kernel.reshape(kh * kw * cin, self.features), self.precision)
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
    precision: str = "float32"

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
        y = (_overlap_add_transpose if method == "overlap_add" else _subpixel_transpose)(x, kernel, strides,
                                                                                           self.precision)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,), jnp.float32)
        return y


def _subpixel_transpose(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], precision: str) -> jax.Array:
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
    y = product(patches, phased.reshape(nh * nw * cin, sh * sw * cout), precision)
    y = y.reshape(b, h, w, sh, sw, cout).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(b, h * sh, w * sw, cout)


def _overlap_add_transpose(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], precision: str) -> jax.Array:
    """SAME transposed convolution as input times every tap, each tap's result added at its place.

    Input pixel i feeds output s*i + pad - t through tap t (``lax.conv_transpose``'s SAME
    convention); a pad with s-1 interior zeros and low padding pad - t puts it there.
    """
    kh, kw, cin, cout = kernel.shape
    (sh, sw), (b, h, w, _) = strides, x.shape
    per_tap = product(x, kernel.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout), precision)
    per_tap = per_tap.reshape(b, h, w, kh, kw, cout)
    ah, aw = _transpose_pad(kh, sh), _transpose_pad(kw, sw)
    zero = jnp.zeros((), x.dtype)
    y = jnp.zeros((b, h * sh, w * sw, cout), x.dtype)
    for t in range(kh):
        for u in range(kw):
            placement = [(0, 0, 0), (ah - t, sh - 1 - ah + t, sh - 1), (aw - u, sw - 1 - aw + u, sw - 1), (0, 0, 0)]
            y = y + jax.lax.pad(per_tap[:, :, :, t, u, :], zero, placement)
    return y


def conv(impl: str, features: int, name: str, precision: str = "float32") -> nn.Module:
    """A 3x3 SAME convolution in the chosen implementation; both have the same param tree."""
    return conv_layer(impl, features, (3, 3), (1, 1), name, precision)


def conv_layer(impl: str, features: int, size: tuple[int, int], strides: tuple[int, int], name: str,
               precision: str = "float32", use_bias: bool = True) -> nn.Module:
    """A SAME convolution in the chosen implementation (the same param tree either way), its products in
    `precision`."""
    if impl == "xla":
        extra = {} if precision == "float32" else {"conv_general_dilated": _bfloat16_conv}
        return nn.Conv(features, size, strides, padding="SAME", use_bias=use_bias, name=name, **extra)
    if impl == "patches":
        return PatchConv(features, size, strides, padding="SAME", use_bias=use_bias, name=name, precision=precision)
    raise UsageError(f"unknown conv_impl {impl!r}; choose 'xla' or 'patches'")


def conv_transpose(impl: str, features: int, name: str, precision: str = "float32") -> nn.Module:
    """A 3x3 stride-2 SAME transposed convolution in the chosen implementation (same params); XLA's keeps float32
    (flax's ConvTranspose takes no product function)."""
    if impl == "xla":
        return nn.ConvTranspose(features, (3, 3), strides=(2, 2), padding="SAME", name=name)
    if impl == "patches":
        return PatchConvTranspose(features, (3, 3), strides=(2, 2), name=name, precision=precision)
    raise UsageError(f"unknown conv_impl {impl!r}; choose 'xla' or 'patches'")


def flatten(x: jax.Array) -> jax.Array:
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


def pool2(x: jax.Array, impl: str = "xla") -> jax.Array:
    with jax.named_scope("max_pool"):  # here, not in the custom gradient, which is traced without scopes
        if impl == "patches":
            return reshape_max_pool(x)
        return nn.max_pool(x, (2, 2), strides=(2, 2))


def global_avg_pool(x: jax.Array) -> jax.Array:
    return jnp.mean(x, axis=(1, 2))
