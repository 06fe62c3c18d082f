"""The latency model against hand-computed cases, and the summary's target accuracy."""

import pytest

from lfmsl.costs import latency
from lfmsl.costs.run_costs import RunCosts
from lfmsl.algorithms import validate
from lfmsl.config import Config
from lfmsl.errors import UsageError

B, I = 32, 5
F = None  # forward FLOPs per sample of each part, read once


def flops():
    global F
    if F is None:
        F = latency.forward_flops(latency.model_for(Config()))
    return F


def round_seconds(round_index=0, iterations=I, **options) -> float:
    config = Config(**{"dataset": "fashion_mnist", "batch_size": B, **options})
    return RunCosts(config, latency.model_for(config), iterations).round(round_index)[1]


def psl_iteration(n, f_c=10e9, f_s=1e12, up=100e6, down=100e6) -> float:
    """The spec's formula, written out: T = B F_c/f_c + B (q + l)/R_up + N B F_s/f_s + B q/R_down."""
    q_bits, label_bits = 7 * 7 * 64 * 32, 32
    return (B * 3 * flops()["client"] / f_c + B * (q_bits + label_bits) / up + n * B * 3 * flops()["server"] / f_s
            + B * q_bits / down)


def test_psl_matches_the_formula():
    assert round_seconds(algorithm="psl", clients=10) == pytest.approx(I * psl_iteration(10), rel=1e-12)


def test_profile_values_can_be_overridden():
    options = dict(algorithm="psl", clients=4, client_flops=2e9, server_flops=5e11, uplink_mbps=20.0, downlink_mbps=50.0)
    assert round_seconds(**options) == pytest.approx(I * psl_iteration(4, 2e9, 5e11, 20e6, 50e6), rel=1e-12)
    iot = latency.PROFILES["iot"]
    assert round_seconds(algorithm="psl", clients=4, latency_profile="iot") == pytest.approx(
        I * psl_iteration(4, iot.client_flops, iot.server_flops, iot.uplink_mbps * 1e6, iot.downlink_mbps * 1e6), rel=1e-12)


def test_mixup_adds_the_mixed_samples_to_the_server():
    n, partners = 6, 2
    mixed = I * n * partners * B * 3 * flops()["server"] / 1e12
    no_fed = dict(algorithm="locfedmix", clients=n, mix_partners=partners, fed=False, loc=False)
    assert round_seconds(**no_fed) - round_seconds(algorithm="psl", clients=n) == pytest.approx(mixed, rel=1e-9)


def test_the_decoder_pass_overlaps_the_wait_for_the_server_unless_serial():
    """T = client + max(decoder, up + server + down) by default; client + decoder + wait with --no-overlap."""
    n = 6
    decoder = B * 3 * flops()["decoder"] / 10e9
    client = B * 3 * flops()["client"] / 10e9
    no_fed = dict(algorithm="locfedmix", clients=n, fed=False)
    wait = round_seconds(**no_fed, loc=False) / I - client  # up + server (with the mixed samples) + down
    assert round_seconds(**no_fed) == pytest.approx(I * (client + max(decoder, wait)), rel=1e-9)
    assert round_seconds(**no_fed, overlap=False) == pytest.approx(I * (client + decoder + wait), rel=1e-9)
    # On slow links the decoder hides entirely in the wait; on fast ones the wait hides in the decoder.
    assert round_seconds(**no_fed, uplink_mbps=1.0) == pytest.approx(round_seconds(**no_fed, loc=False, uplink_mbps=1.0), rel=1e-9)
    fast = dict(uplink_mbps=1e6, downlink_mbps=1e6, server_flops=1e15)
    assert round_seconds(**no_fed, **fast) == pytest.approx(I * (client + decoder), rel=1e-3)


def test_averaging_adds_one_upload_and_download_of_the_averaged_parts():
    client, decoder = 18816, 18753  # parameters (see test_comm)
    per_average = 2 * (client + decoder) * 32 / 100e6
    on, off = round_seconds(algorithm="locfedmix", clients=4), round_seconds(algorithm="locfedmix", clients=4, fed=False)
    assert on - off == pytest.approx(per_average, rel=1e-9)
    # Averaging every 2 of 5 iterations: rounds 0, 1 hold 2 and 3 averaging steps.
    assert round_seconds(0, algorithm="locfedmix", clients=4, avg_every=2) - off == pytest.approx(2 * per_average, rel=1e-9)
    assert round_seconds(1, algorithm="locfedmix", clients=4, avg_every=2) - off == pytest.approx(3 * per_average, rel=1e-9)


def test_sequential_sl_grows_with_clients_and_parallel_algorithms_do_not():
    """Same work per client (I iterations each): SL serves clients one by one, the others in parallel."""
    relay = 18816 * 32 / 100e6 + 18816 * 32 / 100e6  # up to the server, down to the next client
    for n in (2, 10, 50):
        assert round_seconds(1, algorithm="sl", clients=n) == pytest.approx(n * I * psl_iteration(1) + n * relay, rel=1e-9)
    sl_growth = round_seconds(1, algorithm="sl", clients=50) / round_seconds(1, algorithm="sl", clients=2)
    assert sl_growth > 20
    for algorithm in ("psl", "sflv1", "sflv2", "locsplitfed", "locfedmix", "sglr", "mix2sfl"):
        growth = round_seconds(1, algorithm=algorithm, clients=50) / round_seconds(1, algorithm=algorithm, clients=2)
        assert growth < 1.1, algorithm  # only the server's (fast) share grows


def test_locsplitfed_pipelines_and_never_waits():
    n = 10
    stages = [B * 3 * (flops()["client"] + flops()["aux"]) / 10e9, B * (7 * 7 * 64 * 32 + 32) / 100e6, n * B * 3 * flops()["server"] / 1e12]
    averaging = 2 * (18816 + 31370) * 32 / 100e6
    assert round_seconds(algorithm="locsplitfed", clients=n) == pytest.approx(I * max(stages) + averaging, rel=1e-9)
    assert round_seconds(algorithm="locsplitfed", clients=n) < round_seconds(algorithm="sflv2", clients=n)
    serial = round_seconds(algorithm="locsplitfed", clients=n, overlap=False)
    assert serial == pytest.approx(I * sum(stages) + averaging, rel=1e-9)


def test_fedavg_and_centralized_train_the_full_model_on_clients_and_server():
    full = B * 3 * (flops()["client"] + flops()["server"])
    averaging = 2 * (18816 + 402826) * 32 / 100e6
    assert round_seconds(algorithm="fedavg", clients=3) == pytest.approx(I * full / 10e9 + averaging, rel=1e-9)
    assert round_seconds(algorithm="centralized", clients=3, iterations=40) == pytest.approx(40 * full / 1e12, rel=1e-9)


def test_sl_relay_time_is_an_upload_plus_a_download():
    one_way = 18816 * 32  # bits of the client model
    with_slow_down = round_seconds(1, algorithm="sl", clients=4, downlink_mbps=25.0)
    slow_iterations = 4 * I * psl_iteration(1, down=25e6)
    assert with_slow_down == pytest.approx(slow_iterations + 4 * (one_way / 100e6 + one_way / 25e6), rel=1e-9)


def test_records_are_cumulative():
    config = Config(algorithm="sl", clients=3, batch_size=B)
    costs = RunCosts(config, latency.model_for(config), I)
    third = costs.record_fields(2)
    assert third["sim_latency_s"] == pytest.approx(sum(costs.round(r)[1] for r in range(3)))
    assert third["comm_bytes"] == sum(sum(costs.round(r)[0].values()) for r in range(3))
    assert third["comm_round_bytes"] == sum(third["comm_breakdown"].values())
    assert costs.record_fields(0)["comm_breakdown"]["relay"] < third["comm_breakdown"]["relay"]


def test_summary_reports_the_first_round_reaching_the_target():
    history = [{"round": r, "test_accuracy": a, "sim_latency_s": 2.0 * r, "comm_bytes": 10 * r, "wall_time_s": 3.0 * r}
               for r, a in ((1, 0.5), (2, 0.81), (3, 0.79), (4, 0.9))]
    fields = latency.summary_fields(history, 0.8)
    assert (fields["rounds_to_target"], fields["sim_latency_to_target_s"], fields["wall_time_to_target_s"]) == (2, 4.0, 6.0)
    assert (fields["sim_latency_s"], fields["comm_bytes"]) == (8.0, 40)
    missed = latency.summary_fields(history, 0.95)
    assert missed["rounds_to_target"] is None and missed["sim_latency_to_target_s"] is None


@pytest.mark.parametrize("options, message", [
    (dict(latency_profile="nope"), "--latency-profile"),
    (dict(target_accuracy=85.0), "--target-accuracy"),
    (dict(uplink_mbps=0.0), "--uplink-mbps"),
    (dict(client_flops=-1.0), "--client-flops"),
    (dict(algorithm="psl", overlap=False), "--no-overlap"),
    (dict(algorithm="locfedmix", loc=False, overlap=False), "--no-overlap"),
])
def test_bad_latency_options_are_usage_errors(options, message):
    with pytest.raises(UsageError, match=message):
        validate(Config(**options))


def test_simulated_work_does_not_depend_on_the_convolution_formulation():
    """--conv patches and --conv xla compute the same model: the same FLOPs, the same latency."""
    patches, xla = (latency.forward_flops(latency.model_for(Config(conv=c))) for c in ("patches", "xla"))
    assert patches == xla


def test_epoch_mode_counts_only_the_clients_in_each_iteration():
    """Three clients of 3, 2 and 1 batches: iterations with 3, 2 and 1 clients taking part."""
    config = Config(algorithm="psl", clients=3, batch_size=B, round_mode="epoch")
    costs = RunCosts(config, latency.model_for(config), 3, active=(3, 2, 1))
    sent, seconds = costs.round(0)
    assert seconds == pytest.approx(psl_iteration(3) + psl_iteration(2) + psl_iteration(1), rel=1e-12)
    assert sent["smashed_up"] == (3 + 2 + 1) * B * 7 * 7 * 64 * 4 and sent["labels_up"] == 6 * B * 4
    sl = Config(algorithm="sl", clients=3, batch_size=B, round_mode="epoch")
    sl_seconds = RunCosts(sl, latency.model_for(sl), 3, active=(3, 2, 1)).round(0)[1]
    relay = 2 * (18816 * 32 / 100e6)  # two hand-overs in the first round, each up and down
    assert sl_seconds == pytest.approx(6 * psl_iteration(1) + 2 * relay, rel=1e-9)
