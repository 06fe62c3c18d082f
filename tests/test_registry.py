"""The algorithm registry and the recipe's rules: each rule against a closed form, unknown rules
refused, and a toy algorithm registered here that runs through `lfmsl run`, the ledger and the
latency model like a built-in one."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lfmsl import cli

from lfmsl.costs import comm, latency
from lfmsl.algorithms import Exchange, get, names, registry, rules, validate
from lfmsl.algorithms.split import Recipe, split_entry
from lfmsl.config import Config
from lfmsl.errors import UsageError

OWN = jnp.arange(3 * 2 * 4, dtype=jnp.float32).reshape(3, 2, 4) - 10.0  # [N=3, B=2, 4]
WEIGHTS = jnp.array([0.5, 0.3, 0.2])


def test_downlink_rules_match_their_closed_forms():
    own, w = np.asarray(OWN, np.float64), np.asarray(WEIGHTS, np.float64)
    key = jax.random.key(0)
    np.testing.assert_array_equal(rules.own_gradient().receive(OWN, WEIGHTS, key), OWN)
    np.testing.assert_allclose(rules.global_gradient().receive(OWN, WEIGHTS, key), own * w[:, None, None], rtol=1e-6)
    mean = np.einsum("n,nbd->bd", w, own)
    np.testing.assert_allclose(rules.mean_gradient().receive(OWN, WEIGHTS, key), np.broadcast_to(mean, own.shape),
                               rtol=1e-6)
    np.testing.assert_array_equal(rules.no_gradient().receive(OWN, WEIGHTS, key), np.zeros(own.shape))
    assert not rules.no_gradient().sends and rules.own_gradient().sends


def test_gradmix_gives_the_chosen_subset_its_weighted_mean_and_the_others_their_own():
    got = np.asarray(rules.gradmix(2 / 3).receive(OWN, WEIGHTS, jax.random.key(3)))
    own, w = np.asarray(OWN, np.float64), np.asarray(WEIGHTS, np.float64)
    kept = [i for i in range(3) if np.array_equal(got[i], own[i])]
    mixed = [i for i in range(3) if i not in kept]
    assert len(mixed) == 2  # round(2/3 * 3) clients receive the subset's mean
    subset_mean = np.einsum("n,nbd->bd", w[mixed] / w[mixed].sum(), own[mixed])
    for i in mixed:
        np.testing.assert_allclose(got[i], subset_mean, rtol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: rules.client_grad_rule("averaged"),
    lambda: rules.gradmix(0.0),
    lambda: rules.DecoderRegulariser(loss_kind="l1"),
    lambda: rules.Averaging(parts=("lower", "head")),
    lambda: rules.Averaging(parts=("decoder",)),
    lambda: rules.Averaging(every=0),
    lambda: Exchange(schedule="gossip"),
    lambda: Exchange(averaged=("everything",)),
    lambda: registry.Entry("x", "X", build=None, exchange=None, reads=frozenset({"mix_strength"})),
])
def test_an_unknown_part_is_an_error_never_a_default(make):
    with pytest.raises(ValueError):
        make()


def test_a_name_is_registered_once_and_unknown_names_are_a_usage_error():
    with pytest.raises(ValueError, match="registered already"):
        registry.register(split_entry("psl", "another PSL", lambda config: None))
    with pytest.raises(UsageError, match="unknown --algorithm 'bogus'; choose one of sl, psl"):
        get("bogus")


def test_every_module_of_the_algorithms_folder_registers_the_algorithm_it_is_named_after():
    import importlib
    import pkgutil

    import lfmsl.algorithms as package

    found = pkgutil.iter_modules(package.__path__)
    modules = {m.name: importlib.import_module(f"{package.__name__}.{m.name}") for m in found}
    registering = {name for name, module in modules.items() if hasattr(module, "ENTRY")}
    assert registering == set(names()) and all(modules[name].ENTRY.name == name for name in registering)
    assert {"sl", "locfedmix", "fedavg"} <= registering and "registry" not in registering


def test_each_builtin_exchange_is_what_the_specification_says():
    sent = {name: get(name).exchange(Config(algorithm=name)) for name in names()}
    assert sent["sl"].schedule == "relay" and sent["centralized"].schedule == "central"
    assert sent["fedavg"].schedule == "local"
    assert sent["locfedmix"] == Exchange(local="decoder", averaged=("client", "decoder"), mixed_per_client=1)
    assert sent["locsplitfed"] == Exchange(grads_down=False, local="aux", averaged=("client", "aux"))
    assert sent["sflv1"] == Exchange(averaged=("client",), server_copies=True)
    assert sent["sflv2"] == Exchange(averaged=("client",), sequential_server=True)
    assert sent["psl"] == sent["sglr"] == Exchange()
    assert sent["mix2sfl"] == Exchange(averaged=("client",), mixed_per_client=1)
    switched = get("locfedmix").exchange(Config(mix=False, loc=False, fed=False))
    assert switched == sent["psl"]  # LocFedMix-SL with every part off is PSL


# ---------------------------------------------------------------------------------------------
# A toy algorithm: PSL whose clients receive the combined-loss gradient and average every round.

def _toy_recipe(config: Config) -> Recipe:
    return Recipe(server=rules.SharedServer(), downlink=rules.global_gradient(),
                  averaging=rules.Averaging(every=config.avg_every))


def _toy_check(config: Config) -> None:
    if config.clients > 5:
        raise UsageError("toyfed is a toy: --clients 5 or fewer")


@pytest.fixture
def toy():
    entry = registry.register(split_entry("toyfed", "ToyFed", _toy_recipe, reads=frozenset({"avg_every"}),
                                          check=_toy_check))
    yield entry
    registry.unregister("toyfed")
    assert "toyfed" not in names()


def test_a_toy_algorithm_registered_from_a_test_file_checks_its_own_configuration(toy):
    assert "toyfed" in names() and registry.label("toyfed") == "ToyFed"
    validate(Config(algorithm="toyfed", clients=4, avg_every=2))
    with pytest.raises(UsageError, match="toy"):
        validate(Config(algorithm="toyfed", clients=6))
    with pytest.raises(UsageError, match="--mix-alpha 0.5 does nothing here: --algorithm toyfed does not use it"):
        validate(Config(algorithm="toyfed", clients=4, mix_alpha=0.5))


def test_a_toy_algorithm_runs_through_lfmsl_run_the_ledger_and_the_latency_model(toy, tiny_data_dir, tmp_path):
    out = tmp_path / "toy"
    code = cli.main(["run", "--algorithm", "toyfed", "--clients", "3", "--rounds", "2", "--batch-size", "50",
                     "--test-size", "100", "--data-dir", str(tiny_data_dir), "--no-progress", "--out", str(out)])
    assert code == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2]
    config = Config(algorithm="toyfed", clients=3, rounds=2, batch_size=50, test_size=100)
    model = latency.model_for(config)
    iterations = 4  # 600 samples over 3 clients, batches of 50
    sizes = comm.part_sizes(model)
    smashed = math.prod(model.smashed_shape) * 4 * 50
    by_hand = {"smashed_up": 3 * iterations * smashed, "labels_up": 3 * iterations * 50 * 4,
               "grads_down": 3 * iterations * smashed,
               "client_weights_up": 3 * sizes["client"] * 4, "client_weights_down": 3 * sizes["client"] * 4}
    assert records[0]["comm_breakdown"] == {**dict.fromkeys(comm.CATEGORIES, 0), **by_hand}
    flops, profile = latency.forward_flops(model), latency.profile_for(config)
    up = (smashed + 50 * 4) * 8 / (profile.uplink_mbps * 1e6)
    down = smashed * 8 / (profile.downlink_mbps * 1e6)
    client = 50 * 3 * flops["client"] / profile.client_flops
    server = 3 * 50 * 3 * flops["server"] / profile.server_flops
    iteration = client + up + server + down
    lower_bits = sizes["client"] * 4 * 8
    average = lower_bits / (profile.uplink_mbps * 1e6) + lower_bits / (profile.downlink_mbps * 1e6)
    assert records[0]["sim_round_latency_s"] == pytest.approx(iterations * iteration + average, rel=1e-9)
