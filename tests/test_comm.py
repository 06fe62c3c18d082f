"""The communication ledger against closed forms, counted by hand for the cnn model."""

import dataclasses

import pytest

from lfmsl.costs import comm
from lfmsl.algorithms import names
from lfmsl.config import Config

ALGORITHMS = names()
from lfmsl.costs.latency import model_for

# Hand-counted parameters of the cnn on 28x28x1 images (weights + biases).
CLIENT = (3 * 3 * 1 * 32 + 32) + (3 * 3 * 32 * 64 + 64)  # 18816
SERVER = (7 * 7 * 64 * 128 + 128) + (128 * 10 + 10)  # 402826
DECODER = (3 * 3 * 64 * 32 + 32) + (3 * 3 * 32 * 1 + 1)  # 18753
AUX = 7 * 7 * 64 * 10 + 10  # 31370
SMASHED = 7 * 7 * 64  # values per sample
N, B, I = 10, 32, 7  # clients, batch, iterations per round


def ledger(round_index=0, **options):
    config = Config(**{"dataset": "fashion_mnist", "clients": N, "batch_size": B, **options})
    return comm.round_bytes(comm.traffic(config, model_for(config), I), config, round_index)


def expected(**nonzero):
    return {k: nonzero.get(k, 0) for k in comm.CATEGORIES}


EXCHANGE = dict(smashed_up=N * I * B * SMASHED * 4, labels_up=N * I * B * 4, grads_down=N * I * B * SMASHED * 4)


def test_part_sizes_match_the_hand_count():
    assert comm.part_sizes(model_for(Config())) == {"client": CLIENT, "server": SERVER, "decoder": DECODER, "aux": AUX}


@pytest.mark.parametrize("algorithm", ["psl", "sglr"])
def test_no_averaging_exchanges_only_smashed_data_labels_and_gradients(algorithm):
    assert ledger(algorithm=algorithm) == expected(**EXCHANGE)


def test_sflv2_and_mix2sfl_add_one_client_model_exchange_per_round():
    weights = N * CLIENT * 4
    for algorithm in ("sflv2", "mix2sfl"):
        assert ledger(algorithm=algorithm) == expected(**EXCHANGE, client_weights_up=weights, client_weights_down=weights)


def test_sflv1_also_averages_its_server_copies():
    weights = N * CLIENT * 4
    assert ledger(algorithm="sflv1") == expected(**EXCHANGE, client_weights_up=weights, client_weights_down=weights,
                                                 server_copies=2 * N * SERVER * 4)


def test_locsplitfed_sends_no_gradients_and_averages_its_auxiliary_heads():
    no_grads = {**EXCHANGE, "grads_down": 0}
    assert ledger(algorithm="locsplitfed") == expected(**no_grads, client_weights_up=N * CLIENT * 4, client_weights_down=N * CLIENT * 4,
                                                       aux_weights_up=N * AUX * 4, aux_weights_down=N * AUX * 4)


def test_locfedmix_switches():
    lower, decoder = N * CLIENT * 4, N * DECODER * 4
    full = expected(**EXCHANGE, client_weights_up=lower, client_weights_down=lower, aux_weights_up=decoder, aux_weights_down=decoder)
    assert ledger(algorithm="locfedmix") == full
    assert ledger(algorithm="locfedmix", mix=False) == full  # mixing happens at the server: no traffic
    assert ledger(algorithm="locfedmix", average_decoders=False) == {**full, "aux_weights_up": 0, "aux_weights_down": 0}
    assert ledger(algorithm="locfedmix", loc=False) == {**full, "aux_weights_up": 0, "aux_weights_down": 0}
    assert ledger(algorithm="locfedmix", fed=False) == expected(**EXCHANGE)  # = PSL


def test_sequential_sl_relays_the_client_model_between_clients_through_the_server():
    handover = 2 * CLIENT * 4  # up to the server and down to the next client
    assert ledger(0, algorithm="sl") == expected(**EXCHANGE, relay=(N - 1) * handover)
    assert ledger(1, algorithm="sl") == expected(**EXCHANGE, relay=N * handover)  # plus last -> first across rounds
    config = Config(algorithm="sl", clients=1, batch_size=B)
    assert comm.round_bytes(comm.traffic(config, model_for(config), I), config, 3)["relay"] == 0


def test_sflv1_server_copies_stay_out_of_the_link_totals():
    from lfmsl.costs.run_costs import RunCosts

    config = Config(algorithm="sflv1", clients=N, batch_size=B)
    record = RunCosts(config, model_for(config), I).record_fields(0)
    weights = N * CLIENT * 4
    links = EXCHANGE["smashed_up"] + EXCHANGE["labels_up"] + EXCHANGE["grads_down"] + 2 * weights
    assert record["comm_breakdown"]["server_copies"] == 2 * N * SERVER * 4  # still in the breakdown
    assert record["comm_round_bytes"] == record["comm_bytes"] == links


def test_fedavg_moves_full_models_and_centralized_nothing():
    full = N * (CLIENT + SERVER) * 4
    assert ledger(algorithm="fedavg") == expected(client_weights_up=full, client_weights_down=full)
    assert ledger(algorithm="centralized") == expected()


@pytest.mark.parametrize("avg_every", [1, 2, 3, 4, 7, 9, 20])
def test_averaging_steps_follow_the_iteration_counter(avg_every):
    """A brute-force walk of the counter, as the algorithms do: average when (step + 1) % T_c == 0."""
    step = 0
    for round_index in range(6):
        count = 0
        for _ in range(I):
            step += 1
            count += step % avg_every == 0
        assert comm.averaging_steps(round_index, I, avg_every) == count
        assert ledger(round_index, algorithm="sflv2", avg_every=avg_every)["client_weights_up"] == count * N * CLIENT * 4


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_has_a_ledger_that_scales_with_the_batch(algorithm):
    small, large = ledger(algorithm=algorithm), ledger(algorithm=algorithm, batch_size=2 * B)
    for key in ("smashed_up", "labels_up", "grads_down"):
        assert large[key] == 2 * small[key]
    for key in ("client_weights_up", "server_copies", "relay"):
        assert large[key] == small[key]  # weights do not depend on the batch
