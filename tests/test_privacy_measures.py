"""The leakage measures against references: distance correlation and its bias-corrected square against the
`dcor` package (float64 numpy), PSNR and SSIM against their closed forms on images where those are known."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from lfmsl.privacy.measures import (
    PSNR_CAP_DB,
    bias_corrected_distance_correlation,
    distance_correlation,
    reconstruction_scores,
)
from tolerance import chain


def dcor_package():
    """The `dcor` package, imported by the one test process that runs this file: at import it compiles numba
    functions into its on-disk cache, and two pytest-xdist workers doing so at once in a fresh environment left a
    cache that aborts every later import (LLVM: symbol not found)."""
    import dcor

    return dcor


# SSIM's stabilising constants C1 = (k1 max_val)^2 and C2 = (k2 max_val)^2 with dm-pix's defaults k1 = 0.01,
# k2 = 0.03, max_val = 1.
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2


def sample(n: int, dependent: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x [n, 8, 8, 1] (an image-like input) and y [n, 16] (smashed-data-like): y a noisy nonlinear function of
    x, or independent of it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 1))
    noise = rng.normal(size=(n, 16))
    y = np.tanh(2 * x.reshape(n, -1)[:, :16]) + 0.5 * noise if dependent else noise
    return x, y


def reference(x: np.ndarray, y: np.ndarray) -> float:
    """dcor's default estimator, the biased V-statistic, in float64."""
    return float(dcor_package().distance_correlation(x.reshape(len(x), -1), y.reshape(len(y), -1)))


def float32_rtol(x: np.ndarray, n: int, value: float) -> float:
    """How far a float32 evaluation may be from the float64 one, derived from its sums (tolerance.chain: each sum
    of k terms rounds by about sqrt(k) EPS32 of its magnitude, times 4): a squared distance sums the row's d
    entries, the double centring n distances per row and column, dCov^2 the n^2 products. Those sums have the
    size of dVar, so dCor^2 = dCov^2 / dVar carries that error in absolute terms, which is a relative error
    1/dCor^2 larger (weak dependence: a small dCov^2 from large terms), and dCor, its square root, half of it,
    which is the margin. About 1e-4 for n = 100."""
    return chain(x[0].size, n, n, n * n) / value**2


def x64():
    """Double precision inside the block only (the rest of the suite runs in float32): `jax.enable_x64` from jax 0.7
    on, `jax.experimental.enable_x64` before it (both in requirements.txt's range)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64

    return enable_x64()


@pytest.mark.parametrize("n", [5, 32, 100])
@pytest.mark.parametrize("dependent", [True, False], ids=["correlated", "independent"])
def test_distance_correlation_matches_dcor(n, dependent):
    x, y = sample(n, dependent, seed=n)
    want = reference(x, y)
    got = distance_correlation(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), want, rtol=float32_rtol(x, n, want))
    with x64():  # the same estimator in float64 agrees to float64 rounding
        got64 = distance_correlation(jnp.asarray(x), jnp.asarray(y))
        assert got64.dtype == jnp.float64
        np.testing.assert_allclose(float(got64), want, rtol=1e-10)


@pytest.mark.parametrize("a, b", [(3.0, 1.0), (-0.5, 2.0), (1e-3, -7.0)])
def test_distance_correlation_is_one_for_an_affine_function(a, b):
    x, _ = sample(40, dependent=False, seed=1)
    x = jnp.asarray(x.reshape(40, -1), jnp.float32)
    # dCor^2 = dCov^2 / sqrt(dVar x dVar y) is 1 up to the rounding of its sums (float32_rtol with dCor = 1).
    np.testing.assert_allclose(float(distance_correlation(x, a * x + b)), 1.0, rtol=float32_rtol(np.asarray(x), 40, 1.0))
    assert float(distance_correlation(x, a * x + b)) <= 1.0  # clipped into [0, 1]


def test_distance_correlation_of_independent_samples_shrinks_with_n_as_dcor_does():
    """The V-statistic is biased upwards by about 1/sqrt(n) for independent samples: 'near 0' is what dcor
    itself gives at that n, not a fixed threshold."""
    rng = np.random.default_rng(7)
    values = {}
    for n in (100, 1000):
        x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
        want = reference(x, y)
        values[n] = float(distance_correlation(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)))
        np.testing.assert_allclose(values[n], want, rtol=float32_rtol(x, n, want))
    assert values[1000] < values[100] / 2  # bias ~ 1/sqrt(n): sqrt(10) smaller


def test_distance_correlation_is_zero_for_a_constant_sample():
    x, _ = sample(10, dependent=False)
    assert float(distance_correlation(jnp.asarray(x, jnp.float32), jnp.ones((10, 3)))) == 0.0


def test_distance_correlation_rejects_samples_of_different_sizes():
    with pytest.raises(ValueError, match="same number of rows"):
        distance_correlation(jnp.ones((5, 3)), jnp.ones((6, 3)))


def coinciding_rows():
    """x, y with two identical rows of y, and the pairs where a square root's gradient would be infinite."""
    x, y = sample(8, dependent=True)
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    y = y.at[3].set(y[0])  # two identical rows of y
    cases = {
        "identical rows": (x, y),
        "identical rows in x too": (x.at[5].set(x[2]), y),
        "constant y (denominator 0)": (x, jnp.zeros_like(y)),
        "affine y (dependence 1, clipped)": (x.reshape(8, -1)[:, :16], 2 * x.reshape(8, -1)[:, :16] + 1),
    }
    return x, y, cases


def test_its_gradient_is_finite_where_rows_coincide():
    """Pairwise distances are 0 on the diagonal and between identical rows, where sqrt's gradient is
    infinite; the NoPeek loss differentiates through them every step."""
    x, y, cases = coinciding_rows()
    for name, (a, b) in cases.items():
        gx, gy = jax.grad(distance_correlation, argnums=(0, 1))(a, b)
        assert bool(jnp.all(jnp.isfinite(gx))) and bool(jnp.all(jnp.isfinite(gy))), name
    gy = jax.grad(distance_correlation, argnums=1)(x, y)
    assert float(jnp.max(jnp.abs(gy))) > 0  # the gradient is not just zeroed


def test_its_gradient_matches_finite_differences():
    x, y = sample(6, dependent=True, seed=3)
    with x64():
        check_grads(distance_correlation, (jnp.asarray(x), jnp.asarray(y)), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


def three_clients(n: int = 32):
    """Three clients' samples stacked on a leading axis, dependent and independent in turn."""
    pairs = [sample(n, dependent=bool(k % 2), seed=10 + k) for k in range(3)]
    stack = lambda i: jnp.asarray(np.stack([pair[i] for pair in pairs]), jnp.float32)
    return 3, stack(0), stack(1)


def test_vmapped_over_clients_it_equals_the_loop():
    clients, xs, ys = three_clients()
    got = jax.jit(jax.vmap(distance_correlation))(xs, ys)
    assert got.shape == (clients,)
    for k in range(clients):
        want = float(distance_correlation(xs[k], ys[k]))
        # Batched and unbatched programs may order their sums differently: the float32 bound, not equality.
        np.testing.assert_allclose(float(got[k]), want, rtol=float32_rtol(np.asarray(xs[k]), 32, want))


def u_reference(x: np.ndarray, y: np.ndarray) -> float:
    """dcor's bias-corrected squared distance correlation (Szekely and Rizzo 2014), in float64."""
    return float(dcor_package().u_distance_correlation_sqr(x.reshape(len(x), -1), y.reshape(len(y), -1)))


def float32_atol(x: np.ndarray, n: int) -> float:
    """How far the float32 bias-corrected dCor^2 may be from the float64 one: the same sums as `float32_rtol`'s
    (a squared distance of the row's d entries, the U-centring's n per row and column, dCov^2 the n^2 products),
    whose error, of the size of dVar, dCor^2 = dCov^2 / dVar carries in absolute terms. Absolute, not relative:
    this estimator is about 0 for independent samples, where a relative bound would be 0. About 6e-5 for
    n = 100."""
    return chain(x[0].size, n, n, n * n)


def independence_bound(n: int) -> float:
    """Five standard deviations of the bias-corrected dCor^2 of independent samples: Szekely and Rizzo's (2013)
    t-test of independence in high dimension treats sqrt(v - 1) R / sqrt(1 - R^2), v = n (n - 3) / 2, as Student's
    t with v - 1 degrees of freedom, so R has a standard deviation of about 1 / sqrt(v), sqrt(2) / n."""
    return 5 / math.sqrt(n * (n - 3) / 2)


@pytest.mark.parametrize("n", [5, 32, 100])
@pytest.mark.parametrize("dependent", [True, False], ids=["correlated", "independent"])
def test_bias_corrected_distance_correlation_matches_dcor(n, dependent):
    x, y = sample(n, dependent, seed=n)
    want = u_reference(x, y)
    got = bias_corrected_distance_correlation(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), want, rtol=0, atol=float32_atol(x, n))
    with x64():  # the same estimator in float64 agrees to float64 rounding (absolute: the value may be near 0)
        got64 = bias_corrected_distance_correlation(jnp.asarray(x), jnp.asarray(y))
        assert got64.dtype == jnp.float64
        np.testing.assert_allclose(float(got64), want, rtol=0, atol=1e-10)


def test_bias_corrected_distance_correlation_of_independent_samples_is_near_zero_where_the_v_statistic_is_not():
    """The reason for the estimator: independent 64- and 16-dimensional samples, where the V-statistic stays far
    from 0 even at n = 1000 (0.33) and the bias-corrected dCor^2 is 0 within its sampling spread."""
    n = 1000
    x, y = sample(n, dependent=False, seed=11)
    want = u_reference(x, y)
    got = float(bias_corrected_distance_correlation(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)))
    np.testing.assert_allclose(got, want, rtol=0, atol=float32_atol(x, n))
    assert abs(got) < independence_bound(n)
    biased = float(distance_correlation(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)))
    assert biased**2 > 10 * independence_bound(n)  # the V-statistic's square, what this one estimates, is not


@pytest.mark.parametrize("a, b", [(3.0, 1.0), (-0.5, 2.0), (1e-3, -7.0)])
def test_bias_corrected_distance_correlation_is_one_for_an_affine_function(a, b):
    x, _ = sample(40, dependent=False, seed=1)
    x = jnp.asarray(x.reshape(40, -1), jnp.float32)
    value = float(bias_corrected_distance_correlation(x, a * x + b))
    np.testing.assert_allclose(value, 1.0, rtol=0, atol=float32_atol(np.asarray(x), 40))
    assert value <= 1.0  # clipped into [-1, 1]


def test_bias_corrected_distance_correlation_needs_four_rows():
    """It divides by n - 2 and n (n - 3): fewer than 4 rows is an error, not a NaN or an infinity."""
    for n in (1, 2, 3):
        with pytest.raises(ValueError, match="at least 4 rows"):
            bias_corrected_distance_correlation(jnp.ones((n, 3)), jnp.ones((n, 2)))
    with pytest.raises(ValueError, match="same number of rows"):
        bias_corrected_distance_correlation(jnp.ones((5, 3)), jnp.ones((6, 3)))
    x, y = sample(4, dependent=True, seed=4)  # 4 rows is enough, and agrees with dcor
    got = float(bias_corrected_distance_correlation(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)))
    np.testing.assert_allclose(got, u_reference(x, y), rtol=0, atol=float32_atol(x, 4))


def test_bias_corrected_gradient_is_finite_where_rows_coincide_and_matches_finite_differences():
    x, y, cases = coinciding_rows()
    for name, (a, b) in cases.items():
        gx, gy = jax.grad(bias_corrected_distance_correlation, argnums=(0, 1))(a, b)
        assert bool(jnp.all(jnp.isfinite(gx))) and bool(jnp.all(jnp.isfinite(gy))), name
    assert float(bias_corrected_distance_correlation(x, jnp.zeros_like(y))) == 0.0
    gy = jax.grad(bias_corrected_distance_correlation, argnums=1)(x, y)
    assert float(jnp.max(jnp.abs(gy))) > 0  # the gradient is not just zeroed
    x, y = sample(6, dependent=True, seed=3)
    with x64():
        check_grads(bias_corrected_distance_correlation, (jnp.asarray(x), jnp.asarray(y)), order=1, modes=["rev"],
                    atol=1e-6, rtol=1e-6)


def test_bias_corrected_vmapped_over_clients_it_equals_the_loop():
    clients, xs, ys = three_clients()
    got = jax.jit(jax.vmap(bias_corrected_distance_correlation))(xs, ys)
    assert got.shape == (clients,)
    for k in range(clients):
        want = float(bias_corrected_distance_correlation(xs[k], ys[k]))
        # Batched and unbatched programs may order their sums differently: the float32 bound, not equality.
        x, y = np.asarray(xs[k], np.float64), np.asarray(ys[k], np.float64)
        np.testing.assert_allclose(float(got[k]), want, rtol=0, atol=float32_atol(x, 32))
        np.testing.assert_allclose(float(got[k]), u_reference(x, y), rtol=0, atol=float32_atol(x, 32))


IMAGE_SHAPES = [(8, 8, 1), (28, 28, 1), (32, 32, 3)]


def images(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


@pytest.mark.parametrize("hwc", IMAGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_an_exact_reconstruction_scores_perfectly(hwc):
    x = jnp.asarray(images((4, *hwc)))
    scores = reconstruction_scores(x, x)
    assert set(scores) == {"mse", "psnr", "ssim"} and all(s.shape == () for s in scores.values())
    assert float(scores["mse"]) == 0.0
    assert float(scores["psnr"]) == PSNR_CAP_DB == 100.0  # infinite, capped
    np.testing.assert_allclose(float(scores["ssim"]), 1.0, atol=1e-5)


@pytest.mark.parametrize("hwc", IMAGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_a_grey_reconstruction_scores_its_mse_and_a_lower_ssim(hwc):
    x = images((4, *hwc))
    grey = np.full_like(x, 0.5)
    close = np.clip(x + np.random.default_rng(1).normal(scale=0.05, size=x.shape), 0, 1).astype(np.float32)
    scores = reconstruction_scores(jnp.asarray(x), jnp.asarray(grey))
    np.testing.assert_allclose(float(scores["mse"]), np.mean((x.astype(np.float64) - 0.5) ** 2), rtol=1e-5)
    assert float(scores["ssim"]) < float(reconstruction_scores(jnp.asarray(x), jnp.asarray(close))["ssim"]) < 1.0


@pytest.mark.parametrize("hwc", IMAGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_psnr_is_ten_log10_of_one_over_the_mse_per_image(hwc):
    x = images((3, *hwc))
    noisy = np.clip(x + np.random.default_rng(2).normal(scale=[[[[0.02]]], [[[0.1]]], [[[0.3]]]], size=x.shape), 0, 1)
    mse = np.mean((x.astype(np.float64) - noisy) ** 2, axis=(1, 2, 3))
    scores = reconstruction_scores(jnp.asarray(x), jnp.asarray(noisy, jnp.float32))
    np.testing.assert_allclose(float(scores["psnr"]), np.mean(10 * np.log10(1 / mse)), rtol=1e-5)  # the mean of per-image PSNRs
    one = reconstruction_scores(jnp.asarray(x[:1]), jnp.asarray(noisy[:1], jnp.float32))
    np.testing.assert_allclose(float(one["psnr"]), 10 * math.log10(1 / mse[0]), rtol=1e-5)


@pytest.mark.parametrize("hwc", IMAGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_ssim_of_two_constant_images_is_its_luminance_term(hwc):
    """Constant images have no variance, so SSIM is (2 a b + C1) / (a^2 + b^2 + C1). This fails for 8x8 with
    dm-pix's default 11-tap window, which is longer than the image: its truncated weights give a constant
    image a nonzero variance (0.648 instead of 0.800 here)."""
    a, b = 0.3, 0.6
    scores = reconstruction_scores(jnp.full((2, *hwc), a), jnp.full((2, *hwc), b))
    # In float32 the variances E[x^2] - E[x]^2 are 0 only up to the rounding of the separable blur (two sums of
    # at most 11 taps, of values up to b^2), and the contrast term (2 cov + C2) / (var_a + var_b + C2) divides
    # that by C2: about 1e-3, against the 19% the default window is off by on 8x8.
    rtol = chain(11, 11) * b * b / SSIM_C2
    np.testing.assert_allclose(float(scores["ssim"]), (2 * a * b + SSIM_C1) / (a * a + b * b + SSIM_C1), rtol=rtol)


def test_reconstructions_are_clipped_to_the_unit_interval():
    x = images((2, 8, 8, 1))
    overshoot = x + np.where(x > 0.5, 2.0, -2.0).astype(np.float32)  # every pixel pushed past 0 or 1
    clipped = np.clip(overshoot, 0, 1)
    got, want = (reconstruction_scores(jnp.asarray(x), jnp.asarray(r)) for r in (overshoot, clipped))
    for name in want:
        assert float(got[name]) == float(want[name]), name


def test_a_leading_clients_axis_keeps_its_shape():
    clients, n = 3, 4
    x = images((clients, n, 28, 28, 1))
    recon = np.clip(x + np.random.default_rng(3).normal(scale=0.1, size=x.shape), 0, 1).astype(np.float32)
    scores = reconstruction_scores(jnp.asarray(x), jnp.asarray(recon))
    for name, value in scores.items():
        assert value.shape == (clients,), name
        for k in range(clients):
            alone = reconstruction_scores(jnp.asarray(x[k]), jnp.asarray(recon[k]))[name]
            np.testing.assert_allclose(float(value[k]), float(alone), rtol=1e-6, err_msg=name)


def test_reconstruction_scores_reject_mismatched_or_unbatched_images():
    with pytest.raises(ValueError, match="one shape"):
        reconstruction_scores(jnp.zeros((2, 8, 8, 1)), jnp.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match="one shape"):
        reconstruction_scores(jnp.zeros((8, 8, 1)), jnp.zeros((8, 8, 1)))
