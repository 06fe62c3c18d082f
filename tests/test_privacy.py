"""What the server can rebuild of the clients' inputs: the attacks work where they should and fail where they must,
NoPeek lowers the leakage it targets, zero-strength defences change nothing, and a run writes its measures."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lfmsl import models
from lfmsl.algorithms import build, context
from lfmsl.config import Config
from lfmsl.experiments.leakage import auxiliary_indices, measured_rounds, probe_indices
from lfmsl.models.heads import Decoder
from lfmsl.privacy import attacks
from lfmsl.privacy.measures import reconstruction_scores
from lfmsl.privacy.threats import Holdings, attacks_for, holdings
from lfmsl.algorithms import exchange


def smooth_images(count: int, seed: int) -> jax.Array:
    """8 x 8 grey images of random plane waves: a distribution an inverse network can learn in a few hundred steps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:8, 0:8] / 7.0
    c = rng.uniform(0, 1, (count, 3, 1, 1))
    return jnp.asarray((0.5 + 0.25 * np.sin(3 * (c[:, 0] * xx + c[:, 1] * yy) + 6 * c[:, 2]))[..., None], jnp.float32)


@pytest.fixture(scope="module")
def identity_model():
    """A split model whose 'smashed data' has the image's own shape, and whose inverse network fits it."""
    base = models.get_model("allconv", (8, 8, 1), 10, cut=1)
    return dataclasses.replace(base, decoder=Decoder(1, 0, conv_impl="patches"), smashed_shape=(8, 8, 1))


@pytest.mark.parametrize("segment", ["identity", "constant"])
def test_an_inverse_network_rebuilds_what_an_identity_segment_sends_and_nothing_of_a_constant_one(identity_model, segment):
    """The inverse attack against the two extremes of a client segment, on probes it never trained on: the identity
    leaks everything (MSE far below the images' variance), a constant nothing (no better than the mean image)."""
    encode = (lambda x, key: x) if segment == "identity" else (lambda x, key: jnp.zeros_like(x))
    aux, probes = smooth_images(512, 0), smooth_images(32, 1)
    inverse = jax.jit(lambda key: attacks.fit_inverse(identity_model, encode, aux, 300, 1e-2, key))(jax.random.key(0))
    scores = reconstruction_scores(probes[None], attacks.rebuild(identity_model, inverse, encode(probes, None)[None]))
    variance = float(jnp.var(probes))
    if segment == "identity":
        assert float(scores["mse"][0]) < 0.05 * variance and float(scores["ssim"][0]) > 0.9
    else:
        assert float(scores["mse"][0]) > 0.8 * variance and float(scores["ssim"][0]) < 0.5


def test_noise_leaves_a_zero_sigma_alone_and_draws_from_the_key():
    x = jnp.ones((2, 3))
    assert attacks.add_noise(x, 0.0, None) is x  # no key is drawn: the program without noise
    noisy = attacks.add_noise(x, 0.5, jax.random.key(0))
    np.testing.assert_array_equal(noisy, attacks.add_noise(x, 0.5, jax.random.key(0)))
    assert not np.allclose(noisy, x)


def test_the_server_holds_what_each_algorithm_hands_it():
    """Read off what each algorithm exchanges, against docs/PRIVACY.md's table."""
    held = lambda algorithm, **options: holdings(exchange(Config(algorithm=algorithm, **options)))
    assert held("psl") == Holdings(smashed=True, client_segment=False, decoder=False, aux_head=False)
    assert held("sl") == Holdings(smashed=True, client_segment=True, decoder=False, aux_head=False)  # relayed through it
    assert held("sglr") == held("psl")  # SGLR's clients keep their own segments (docs/ALGORITHMS.md)
    for algorithm in ("sflv1", "sflv2", "mix2sfl"):
        assert held(algorithm) == Holdings(smashed=True, client_segment=True, decoder=False, aux_head=False), algorithm
    assert held("locsplitfed") == Holdings(smashed=True, client_segment=True, decoder=False, aux_head=True)
    assert held("locfedmix") == Holdings(smashed=True, client_segment=True, decoder=True, aux_head=False)
    assert held("locfedmix", average_decoders=False).decoder is False
    assert held("locfedmix", fed=False) == Holdings(smashed=True, client_segment=False, decoder=False, aux_head=False)
    assert not held("fedavg").smashed and not held("centralized").smashed
    assert attacks_for("auto", held("locfedmix")) == ("decoder", "inverse", "shadow")
    assert attacks_for("auto", held("psl")) == ("shadow",)


def test_measured_rounds_probes_and_the_auxiliary_set():
    assert measured_rounds(Config(rounds=10, privacy_every=4)) == {1, 4, 8, 10}
    assert measured_rounds(Config(rounds=10)) == set()
    client_indices = [np.array([5, 6, 7]), np.array([0, 1])]
    config = Config(privacy_probes=4, aux_size=3, seed=1)
    np.testing.assert_array_equal(probe_indices(config, client_indices, np.array([0, 1])), [[5, 6, 7, 5], [0, 1, 0, 1]])
    aux = auxiliary_indices(config, 10, client_indices)
    assert len(aux) == 3 and not set(aux) & {0, 1, 5, 6, 7}
    np.testing.assert_array_equal(aux, auxiliary_indices(config, 10, client_indices))  # from the seed alone


def lowered_round(**options) -> str:
    config = Config(algorithm="psl", clients=2, batch_size=4, model="cnn", **options)
    model = models.get_model("cnn", (28, 28, 1), 10)
    from lfmsl.core.batching import make_client_data

    data = make_client_data(np.zeros((8, 28, 28, 1), np.uint8), np.zeros(8, np.int32), [np.arange(4), np.arange(4, 8)])
    algorithm = build(config, context(config, model, 2, 1, "vmap"))
    state = jax.eval_shape(algorithm.init, jax.random.key(0))
    return jax.jit(algorithm.round).lower(state, data, jax.random.key(1)).as_text()


def test_zero_strength_defences_are_the_program_without_them():
    """At zero the defences are skipped when tracing, so the run is the very program (bit for bit); above zero they
    are in it."""
    plain = lowered_round()
    assert lowered_round(smash_noise=0.0, nopeek_weight=0.0) == plain
    assert lowered_round(smash_noise=0.1) != plain
    assert lowered_round(nopeek_weight=0.5) != plain


@pytest.mark.slow
def test_a_measured_run_writes_its_leakage_and_nopeek_lowers_it(tiny_data_dir, tmp_path):
    """PSL on 600 Fashion-MNIST images, with and without NoPeek: the measures reach metrics.jsonl, summary.json,
    TensorBoard and privacy.png, and NoPeek's penalty lowers the distance correlation it penalises."""
    import lfmsl
    from cli_runs import expected_tensorboard_scalars, tensorboard_scalars

    common = dict(algorithm="psl", clients=2, samples_per_client=150, rounds=3, batch_size=16, privacy_every=2, aux_size=200,
                  privacy_probes=64, attack_steps=20, test_size=50, seed=3, lr=3e-3)
    dcor = {}
    for alpha in (0.0, 5.0):
        out = tmp_path / f"nopeek-{alpha}"
        result = lfmsl.run(Config(**common, nopeek_weight=alpha), out=out, data_dir=tiny_data_dir, progress=False)
        rounds = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert all({"privacy_dcor", "privacy_shadow_mse", "privacy_shadow_psnr", "privacy_shadow_ssim"} <= set(r) for r in rounds)
        assert not any(key.startswith(("privacy_decoder", "privacy_inverse")) for key in rounds[-1])  # PSL keeps its segments
        assert [("privacy_dcor" in r) for r in rounds] == [True, True, True]  # after round 1, every 2nd and the last
        assert result.summary["final_privacy_dcor"] == rounds[-1]["privacy_dcor"] and result.summary["privacy_round"] == 3
        board = tensorboard_scalars(out)
        assert board == expected_tensorboard_scalars(out) and any("privacy_shadow_ssim" in tags for tags in board.values())
        assert (out / "privacy.png").stat().st_size > 0
        dcor[alpha] = rounds[-1]["privacy_dcor"]
    # measured: 0.946 without NoPeek and 0.928 with alpha 5 after 3 rounds (64 probes a client, whose V-statistic is
    # biased towards 1 in these 784 and 3136 dimensions); rounding moves it by 1e-6
    assert dcor[5.0] < dcor[0.0] - 0.005, dcor
