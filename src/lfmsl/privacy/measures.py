"""How much a client's inputs leak: statistics that compare what the server sees with the inputs.

Why: split learning sends the server smashed data, not images, but smashed data can still carry the
images. Two kinds of number say how much: the distance correlation between the inputs and the smashed
data (a dependence measure, and the NoPeek training penalty of Vepakomma et al. 2020; its bias-corrected
square for high-dimensional samples, where the usual estimator is biased towards 1), and how close
an attacker's reconstructions of the inputs come to them (MSE, PSNR, SSIM).

Everything here is pure `jax.numpy`, with no Python branching on values, so it jits, vmaps over a
clients axis and differentiates.
"""

from __future__ import annotations

import dm_pix as pix
import jax
import jax.numpy as jnp

PSNR_CAP_DB = 100.0  # the PSNR of an exact reconstruction, which would otherwise be infinite
SSIM_FILTER_SIZE = 11  # dm-pix's default Gaussian window (sigma 1.5), used where the image is large enough


def _float_dtype(*arrays: jax.Array) -> jnp.dtype:
    """float64 where the inputs are (which needs x64 enabled), float32 otherwise: float16 and
    bfloat16 sums of n^2 terms would lose most of their digits."""
    return jnp.dtype(jnp.float64) if jnp.result_type(*arrays) == jnp.float64 else jnp.dtype(jnp.float32)


def _safe_sqrt(v: jax.Array) -> jax.Array:
    """sqrt(v) for v > 0 and 0 elsewhere, with a finite gradient (0) where v <= 0: the plain sqrt's
    gradient at 0 is infinite, and 0 * inf is NaN. The inner `where` keeps the unused branch
    differentiable (the double-where trick)."""
    positive = v > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, v, 1.0)), 0.0)


def _distances(z: jax.Array) -> jax.Array:
    """The n x n Euclidean distances between the rows of z [n, d].

    They come from the Gram matrix (|z_i|^2 + |z_j|^2 - 2 z_i.z_j), so memory is O(n^2) and not the
    O(n^2 d) of pairwise differences; the columns are centred first, which leaves the distances
    unchanged but makes the cancellation in that sum small in float32."""
    z = z - jnp.mean(z, axis=0, keepdims=True)
    squared_norms = jnp.sum(z * z, axis=1)
    gram = jnp.matmul(z, z.T, precision=jax.lax.Precision.HIGHEST)
    d2 = squared_norms[:, None] + squared_norms[None, :] - 2.0 * gram
    n = z.shape[0]
    d2 = jnp.where(jnp.eye(n, dtype=bool), 0.0, jnp.maximum(d2, 0.0))  # rounding: the diagonal exactly 0, none below
    return _safe_sqrt(d2)  # finite gradient on the diagonal and between identical rows


def _double_centred_distances(z: jax.Array) -> jax.Array:
    """The distances between the rows of z [n, d], double-centred (every row and every column mean 0):
    A_ij = a_ij - a_i. / n - a_.j / n + a_.. / n^2, with a_i. a row's sum and a_.. the total."""
    d = _distances(z)
    return d - jnp.mean(d, axis=0, keepdims=True) - jnp.mean(d, axis=1, keepdims=True) + jnp.mean(d)


def _u_centred_distances(z: jax.Array) -> jax.Array:
    """The distances between the rows of z [n >= 4, d], U-centred (Szekely and Rizzo 2014):
    A~_ij = a_ij - a_i. / (n - 2) - a_.j / (n - 2) + a_.. / ((n - 1)(n - 2)) off the diagonal, 0 on it.
    Every row and column then sums to 0 over its off-diagonal entries, and the inner product of two such
    matrices divided by n (n - 3) is an unbiased estimator of the squared distance covariance."""
    d = _distances(z)
    n = d.shape[0]
    centred = (d - jnp.sum(d, axis=0, keepdims=True) / (n - 2) - jnp.sum(d, axis=1, keepdims=True) / (n - 2)
               + jnp.sum(d) / ((n - 1) * (n - 2)))
    return jnp.where(jnp.eye(n, dtype=bool), 0.0, centred)


def _paired_rows(x: jax.Array, y: jax.Array, name: str, min_rows: int = 1) -> tuple[jax.Array, jax.Array]:
    """x [n, ...] and y [n, ...] as [n, -1] matrices of the dtype `_float_dtype` picks, after checking that
    their rows pair up and that there are at least `min_rows` of them (shapes are static: this is not traced)."""
    if x.shape[:1] != y.shape[:1] or x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"{name} needs two samples of the same number of rows; got shapes {x.shape} and {y.shape}")
    n = x.shape[0]
    if n < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows; got {n}")
    dtype = _float_dtype(x, y)
    return jnp.asarray(x, dtype).reshape(n, -1), jnp.asarray(y, dtype).reshape(n, -1)


def _normalised(dcov2_xy: jax.Array, dvar_x: jax.Array, dvar_y: jax.Array) -> jax.Array:
    """dCov^2(x, y) / sqrt(dVar x dVar y), 0 where that denominator is not positive (a constant sample)."""
    # sqrt(dVar x) * sqrt(dVar y), not sqrt(dVar x * dVar y): the product of two float32 variances
    # would overflow (or underflow to 0) for activations of large (or tiny) scale.
    denominator = _safe_sqrt(dvar_x) * _safe_sqrt(dvar_y)
    has_spread = denominator > 0
    return jnp.where(has_spread, dcov2_xy / jnp.where(has_spread, denominator, 1.0), 0.0)


def distance_correlation(x: jax.Array, y: jax.Array) -> jax.Array:
    """The distance correlation (Szekely, Rizzo and Bakirov 2007) between samples x [n, ...] and
    y [n, ...] whose rows pair up (each row is flattened: x may be images, y smashed data).

    Why this measure: unlike Pearson's correlation it sees any dependence, nonlinear included, between
    vectors of different sizes, and it is 0 in the population only for independent variables; so it
    says how much of the inputs the smashed data still carries, and, being differentiable, it is
    the NoPeek loss term (Vepakomma et al. 2020) that a client minimises to carry less.

    The estimator is the biased V-statistic: with A and B the double-centred Euclidean distance matrices
    of x and y, dCov^2(x, y) = mean(A * B) and dCor = sqrt(dCov^2(x, y) / sqrt(dCov^2(x, x) dCov^2(y, y))),
    0 where the denominator is 0 (a constant sample). It is the same number as `dcor.distance_correlation`
    with its default, biased estimator. It lies in [0, 1] (clipped there against rounding): 1 where y is an
    affine function a*x + b of x (a != 0), and for independent samples it shrinks towards 0 only as n grows
    (its bias is of order 1/sqrt(n), and grows with the dimension: `bias_corrected_distance_correlation`
    removes it). Cost: O(n^2) memory and O(n^2 d) time (d the larger row size).

    Computed in float32 unless the inputs are float64. Jit- and vmap-friendly; the gradient is finite
    everywhere, including where rows coincide (their distance's gradient is taken as 0).
    """
    x, y = _paired_rows(x, y, "distance_correlation")
    a, b = _double_centred_distances(x), _double_centred_distances(y)
    ratio = _normalised(jnp.mean(a * b), jnp.mean(a * a), jnp.mean(b * b))
    return _safe_sqrt(jnp.clip(ratio, 0.0, 1.0))


def bias_corrected_distance_correlation(x: jax.Array, y: jax.Array) -> jax.Array:
    """The bias-corrected squared distance correlation (Szekely and Rizzo 2014) between samples x [n, ...]
    and y [n, ...] whose rows pair up (each row is flattened), n >= 4.

    Why: `distance_correlation`'s V-statistic is biased upwards, and the bias grows with the dimension: for
    independent samples of fixed size its square tends to 1 as the row sizes grow (Szekely and Rizzo 2013,
    "The distance correlation t-test of independence in high dimension"); independent 64-dimensional samples
    give 0.72 at n = 100. A leakage measure built on it is compressed into [0.8, 1], where the difference
    between a client that leaks and one that does not is hard to see. This estimator is unbiased for the
    squared distance covariances it divides, so it is about 0 for independent samples whatever the dimension.

    What: with A~ and B~ the U-centred Euclidean distance matrices of x and y (`_u_centred_distances`),
    dCov^2_U(x, y) = sum_{i != j} A~_ij B~_ij / (n (n - 3)), and the result is
    dCov^2_U(x, y) / sqrt(dCov^2_U(x, x) dCov^2_U(y, y)), 0 where that denominator is not positive (a
    constant sample). It is the same number as `dcor.u_distance_correlation_sqr`. It estimates the square of
    the distance correlation, and is not square-rooted because it can be negative (slightly, under
    independence: it is then about 0 within O(1/n)); it is 1 where y is an affine function a*x + b of x
    (a != 0), and lies in [-1, 1] (clipped there against rounding). Cost: as `distance_correlation`'s.

    Reference: G. J. Szekely and M. L. Rizzo, "Partial distance correlation with methods for
    dissimilarities", Annals of Statistics 42(6), 2382-2412, 2014 (section 2 and Proposition 1).

    Computed in float32 unless the inputs are float64. Jit- and vmap-friendly; the gradient is finite
    everywhere, including where rows coincide. Raises ValueError for fewer than 4 rows (the estimator
    divides by n - 2 and n - 3).
    """
    x, y = _paired_rows(x, y, "bias_corrected_distance_correlation", min_rows=4)
    a, b = _u_centred_distances(x), _u_centred_distances(y)
    n = x.shape[0]
    pairs = n * (n - 3)  # the diagonal is 0, so sums over all entries are sums over i != j
    ratio = _normalised(jnp.sum(a * b) / pairs, jnp.sum(a * a) / pairs, jnp.sum(b * b) / pairs)
    return jnp.clip(ratio, -1.0, 1.0)


def _ssim_filter_size(height: int, width: int) -> int:
    """dm-pix's SSIM blurs with a Gaussian window of `filter_size` taps in 'valid' mode. On an image
    smaller than the window (8x8 with the default 11) it does not fail: `jnp.convolve` swaps the
    operands as numpy's does, and the result uses a truncated window whose weights sum to less than 1,
    so the local means are biased low and a constant image gets a nonzero "variance". The window is
    therefore shrunk to the image (odd, so it is centred): 11 for 28x28 and 32x32, 7 for 8x8."""
    size = min(SSIM_FILTER_SIZE, height, width)
    return size if size % 2 else size - 1


def reconstruction_scores(original: jax.Array, reconstructed: jax.Array) -> dict[str, jax.Array]:
    """How close an attacker's reconstructions come to the inputs: "mse", "psnr" (dB) and "ssim".

    Why three: MSE is the attack's own objective, PSNR the same on the log scale that image papers
    report, and SSIM compares local structure, which says whether the content is recognisable where
    MSE is dominated by brightness and contrast.

    Images are [..., n, H, W, C] with values in [0, 1]; the reconstructions are clipped to [0, 1] first
    (an attacker's decoder may overshoot). Each score is computed per image and averaged over the batch
    axis n, keeping any leading axes (e.g. a clients axis: [K, n, H, W, C] gives scores of shape [K]).
    PSNR and SSIM are dm-pix's, with its maximum value 1.0; each image's PSNR is capped at 100 dB, so
    an exact reconstruction (MSE 0, PSNR infinite) still gives a finite average. SSIM uses dm-pix's
    11-tap Gaussian window, shrunk for images smaller than it (`_ssim_filter_size`).
    """
    if original.shape != reconstructed.shape or original.ndim < 4:
        raise ValueError("reconstruction_scores needs two image batches of one shape [..., n, H, W, C]; "
                         f"got {original.shape} and {reconstructed.shape}")
    dtype = _float_dtype(original, reconstructed)
    leading, (height, width, channels) = original.shape[:-3], original.shape[-3:]
    images = jnp.asarray(original, dtype).reshape(-1, height, width, channels)  # dm-pix takes rank 3 or 4
    guesses = jnp.clip(jnp.asarray(reconstructed, dtype), 0.0, 1.0).reshape(images.shape)
    per_image = {
        "mse": jnp.mean((images - guesses) ** 2, axis=(-3, -2, -1)),
        "psnr": jnp.minimum(pix.psnr(images, guesses), PSNR_CAP_DB),
        "ssim": pix.ssim(images, guesses, filter_size=_ssim_filter_size(height, width)),
    }
    return {name: jnp.mean(score.reshape(leading), axis=-1) for name, score in per_image.items()}
