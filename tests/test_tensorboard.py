"""Every run writes its metrics as TensorBoard scalars, read back here by TensorFlow's own event reader."""

import json

import pytest

from cli_runs import expected_tensorboard_scalars, metrics, tensorboard_scalars

from lfmsl.io.tensorboard import TensorBoardLog

pytestmark = pytest.mark.slow  # compiles training rounds: not in the fast part (.ci/python312)


def test_a_run_writes_every_metric_per_round_and_accuracy_against_simulated_latency(reference_run):
    written = tensorboard_scalars(reference_run)
    assert written == expected_tensorboard_scalars(reference_run)
    assert [step for step, _ in written["rounds"]["test_accuracy"]] == [1, 2, 3, 4, 5]
    assert "comm_breakdown/smashed_up" in written["rounds"] and "round" not in written["rounds"]
    steps = [step for step, _ in written["simulated_latency"]["vs_latency_ms/test_accuracy"]]
    assert steps == sorted(steps) and steps[0] > 0


def test_a_resumed_log_is_rebuilt_so_each_round_appears_once(reference_run, tmp_path):
    records = metrics(reference_run, timing=True)
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    board = TensorBoardLog(tmp_path / "tensorboard", records[:4])  # a session that got to round 4
    board.close()
    board = TensorBoardLog(tmp_path / "tensorboard", records[:2])  # resumed from the checkpoint after round 2
    for record in records[2:]:
        board.add(record)
    board.close()
    assert tensorboard_scalars(tmp_path) == expected_tensorboard_scalars(tmp_path)
    assert [len(list((tmp_path / "tensorboard" / stream).iterdir())) for stream in ("rounds", "simulated_latency")] == [1, 1]
