"""Slow devices (--device-spread S) and the round deadline (--round-deadline): the draw, the per-client
latency model against the identical-client one and hand-computed cases, and who misses the deadline."""


import numpy as np
import pytest

from lfmsl.algorithms import validate
from lfmsl.config import Config
from lfmsl.costs import comm, devices
from lfmsl.costs.latency import model_for, profile_for, stages, timing
from lfmsl.errors import UsageError
from synthetic import tiny_dataset


def test_device_factors_are_log_normal_around_the_profile_and_fixed_by_the_seed():
    drawn = devices.draw(seed=4, num_clients=20000, spread=0.7)
    for factors in (drawn.compute, drawn.uplink, drawn.downlink):
        logs = np.log(factors)
        assert abs(np.median(factors) - 1.0) < 0.03 and abs(np.std(logs) - 0.7) < 0.02 and abs(np.mean(logs)) < 0.02
    assert abs(np.corrcoef(np.log(drawn.compute), np.log(drawn.uplink))[0, 1]) < 0.03  # drawn independently
    np.testing.assert_array_equal(devices.draw(4, 20000, 0.7).uplink, drawn.uplink)
    assert not np.array_equal(devices.draw(5, 20000, 0.7).uplink, drawn.uplink)
    assert np.all(devices.draw(4, 10, 0.0).compute == 1.0)


def stages_of(**options):
    config = Config(clients=4, batch_size=8, **options)
    model = model_for(config)
    traffic = comm.traffic(config, model, 10)
    return config, model, traffic, stages(config, model, traffic, profile_for(config))


ALIKE = devices.Devices(np.ones(4), np.ones(4), np.ones(4))


@pytest.mark.parametrize("options", [
    dict(algorithm="psl"), dict(algorithm="locfedmix"), dict(algorithm="locfedmix", overlap=False), dict(algorithm="locsplitfed"),
    dict(algorithm="locsplitfed", overlap=False), dict(algorithm="sl"), dict(algorithm="fedavg"), dict(algorithm="sflv2"),
    dict(algorithm="mix2sfl"),
])
def test_clients_alike_give_the_latency_models_own_numbers(options):
    config, model, traffic, st = stages_of(**options)
    same = timing(config, model, traffic, profile_for(config))
    assert devices.iteration_seconds(st, ALIKE) == pytest.approx(same.per_iteration, rel=1e-12)
    assert devices.average_seconds(st, ALIKE) == pytest.approx(same.per_average, rel=1e-12)
    assert devices.relay_seconds(st, ALIKE) == pytest.approx(same.per_relay, rel=1e-12, abs=1e-15)


def test_a_synchronous_iteration_waits_for_the_last_upload_and_the_last_download_by_hand():
    _, _, _, st = stages_of(algorithm="psl")
    two = devices.Devices(np.array([1.0, 0.1]), np.array([0.5, 2.0]), np.array([1.0, 0.25]))
    c, up, down = st.client / two.compute, st.up / two.uplink, st.down / two.downlink
    by_hand = max(c[0] + up[0], c[1] + up[1]) + 2 * st.server_step + max(down)
    assert devices.iteration_seconds(st, two) == pytest.approx(by_hand, rel=1e-12)
    assert devices.iteration_seconds(st, two) >= st.client / 0.1  # no faster than its slowest client's compute
    _, _, _, relay = stages_of(algorithm="sl")  # sequential SL: the clients' times add up, no one waits
    one_each = [devices.iteration_seconds(relay, devices.Devices(*(np.array([a[i]]) for a in (two.compute, two.uplink, two.downlink))))
                for i in range(2)]
    assert devices.iteration_seconds(relay, two) == pytest.approx(sum(one_each), rel=1e-12)


def test_the_decoder_pass_overlaps_the_wait_of_each_client_by_hand():
    _, _, _, st = stages_of(algorithm="locfedmix")
    two = devices.Devices(np.array([1.0, 0.05]), np.ones(2), np.ones(2))
    c, local = st.client / two.compute, st.local_pass / two.compute
    wait_end = max(c + st.up) + 2 * (1 + st.mixed_per_client) * st.server_step + st.down
    assert devices.iteration_seconds(st, two) == pytest.approx(max(np.max(c + local), wait_end), rel=1e-12)


def simulation(**options):
    from lfmsl.experiments.simulation import Simulation

    config = Config(**{**dict(algorithm="psl", clients=8, rounds=2, batch_size=4, eval_clients=0, executor="vmap"), **options})
    return Simulation(config, tiny_dataset(train=48))


@pytest.mark.slow
def test_the_deadline_leaves_out_the_participants_whose_round_takes_longer():
    spread = simulation(device_spread=1.0, clients_per_round=4)
    times = spread.costs.device_rounds.own_times(0)
    deadline = float(np.median(times))  # about half of them miss it
    cut = simulation(device_spread=1.0, clients_per_round=4, round_deadline=deadline)
    late = times > deadline
    assert late.any() and not late.all()
    np.testing.assert_array_equal(cut.schedule.survivors(0), ~late)
    fields = cut.costs.record_fields(0)
    assert fields["missed_deadline"] == late.sum()
    assert fields["sim_round_latency_s"] >= deadline  # the round lasts until the deadline
    assert fields["slowest_to_median"] == pytest.approx(times.max() / np.median(times))
    record = next(cut.rounds(0, 1))
    assert record["dropped"] == late.sum() and record["missed_deadline"] == late.sum() and record["participants"] == 4
    # The participants that made it set the round's time where none misses it.
    lenient = simulation(device_spread=1.0, clients_per_round=4, round_deadline=float(times.max()) * 2)
    assert lenient.costs.record_fields(0)["sim_round_latency_s"] == spread.costs.record_fields(0)["sim_round_latency_s"]
    assert lenient.schedule.survivors(0).all()


def test_no_spread_and_no_deadline_is_todays_latency_model():
    plain, alike = simulation(), simulation(device_spread=0.0)
    assert alike.costs.device_rounds is None and not alike.schedule.fails
    assert plain.costs.record_fields(1) == alike.costs.record_fields(1)
    slow = simulation(device_spread=1.5)
    assert slow.costs.record_fields(0)["sim_round_latency_s"] > plain.costs.record_fields(0)["sim_round_latency_s"]
    assert slow.costs.record_fields(0)["slowest_to_median"] > 1.0


@pytest.mark.parametrize("values, message", [
    (dict(device_spread=-0.5), "--device-spread is a log-standard-deviation"),
    (dict(device_spread=float("inf")), "--device-spread is a log-standard-deviation"),
    (dict(round_deadline=0.0), "--round-deadline must be a positive number"),
    (dict(round_deadline=-3.0), "--round-deadline must be a positive number"),
    (dict(algorithm="centralized", device_spread=1.0), "trains one learner on all the data"),
    (dict(algorithm="centralized", round_deadline=1.0), "trains one learner on all the data"),
])
def test_impossible_devices_are_refused(values, message):
    with pytest.raises(UsageError, match=message):
        validate(Config(clients=4, **values))
