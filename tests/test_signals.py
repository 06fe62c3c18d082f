"""Ctrl-C and SIGTERM at any moment of a run end with exit 130 or 143, one line and no traceback,
and the folder stays resumable to exactly the metrics of an uninterrupted run.

Signals used to interrupt JAX's compiler or a checkpoint write, and the interpreter then crashed
on exit (139) in 3 of 4 tries; here they are sent at moments spread over a whole run: imports,
data loading, compilation, rounds, checkpoint saves and the summary.
"""

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from cli_runs import TINY, command, environment, metrics

pytestmark = pytest.mark.slow  # compiles training rounds: not in the fast part (.ci/python312)

SIGNALS_SENT = 20  # interruptions at spread-out moments, each followed by a resume
PHASES = {  # what the last line of stderr says, by where the signal landed
    "while loading the data": "data",
    "before round 1 ": "compile",
    "before round": "compile (resumed)",
    "after round": "rounds",
    "after the run finished": "summary",
    "after the work was done": "exit",
    "lfmsl: interrupted": "start-up",
    "lfmsl: terminated": "start-up",
}


PF_EXITING = 0x4  # Linux's flag of a process that has called exit: signals no longer reach it


def exiting(pid: int) -> bool:
    """Whether the process has ended its work: it has called exit (the kernel takes milliseconds to tear a
    large process down, while it looks alive and ignores signals) or is already a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:  # no /proc on this system: only send_signal's own check remains
        return False
    return fields[0] in ("Z", "X") or bool(int(fields[6]) & PF_EXITING)  # state; flags


def phase(stderr: str) -> str:
    last = stderr.strip().splitlines()[-1]
    return next((name for text, name in PHASES.items() if text in last), f"unknown: {last}")


def test_signals_spread_over_runs_each_resumed_give_the_uninterrupted_metrics(reference_run, tiny_data_dir, compile_cache, tmp_path):
    env = environment(compile_cache)
    fresh = ["--data-dir", tiny_data_dir, *TINY, "--rounds", "5", "--checkpoint-every", "1"]
    started = time.monotonic()
    timing = subprocess.run(command(*fresh, "--out", tmp_path / "timing"), env=env, capture_output=True, text=True, timeout=300)
    assert timing.returncode == 0, timing.stderr
    lifetime = time.monotonic() - started  # of a whole run in a fresh process, compile cache warm

    sent, landed, chains = 0, Counter(), 0
    out = tmp_path / "run0"
    for attempt in range(3 * SIGNALS_SENT):
        if sent == SIGNALS_SENT:
            break
        args = ["--resume", out] if (out / "config.json").exists() else [*fresh, "--out", out]
        process = subprocess.Popen(command(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        delay = lifetime * ((7 * attempt) % SIGNALS_SENT + 0.5) / SIGNALS_SENT  # spread over the run, not in order
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            signum = (signal.SIGINT, signal.SIGTERM)[sent % 2]
            if not exiting(process.pid):
                process.send_signal(signum)
                if process.returncode is None:  # send_signal found it running and sent the signal
                    sent += 1
                    stderr = process.communicate(timeout=300)[1]
                    assert process.returncode == 128 + signum, stderr
                    assert "Traceback" not in stderr, stderr
                    landed[phase(stderr)] += 1
                    continue
        stderr = process.communicate()[1]
        assert process.returncode == 0, stderr  # it had ended its work before the signal was due: the run is complete
        assert metrics(out) == metrics(reference_run), f"chain {chains} differs from the uninterrupted run"
        chains += 1
        out = tmp_path / f"run{chains}"
    assert sent == SIGNALS_SENT, f"only {sent} signals landed before their runs ended"
    last = ["--resume", out] if (out / "config.json").exists() else [*fresh, "--out", out]  # as the loop chooses
    final = subprocess.run(command(*last), env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert metrics(out) == metrics(reference_run)
    print(f"signals by phase: {dict(landed)}; {chains + 1} runs completed")
    assert not any(name.startswith("unknown") for name in landed), landed
    assert len(landed) >= 3, f"signals should land in several phases of a run, got {dict(landed)}"


def test_a_signal_after_the_work_is_done_still_says_one_line(tmp_path):
    """After the command's work, a signal ends the process at once: with the same line as earlier."""
    import sys

    probe = "import signal, lfmsl.__main__ as m; m._exit_at_once(signal.SIGTERM, None)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=environment(None), timeout=60)
    assert done.returncode == 143
    assert done.stderr.strip() == "lfmsl: stopped by SIGTERM, after the work was done"
