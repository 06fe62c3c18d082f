"""Outputs are written whole or not at all, and temporaries of killed writes are cleaned up."""

import os
import time

from lfmsl.io import atomic
from lfmsl.io.runlock import RunLock


def test_a_write_is_fsynced_and_leaves_no_temporary(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    target = tmp_path / "summary.json"
    atomic.write_text(target, "{}\n")
    atomic.write_text(target, '{"a": 1}\n')
    assert target.read_text() == '{"a": 1}\n' and len(synced) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "metrics.jsonl"
    atomic.write_text(target, "old\n")

    def broken(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    try:
        atomic.write_text(target, "new\n")
    except OSError:
        pass
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]


def test_the_next_writer_of_a_run_folder_removes_a_killed_writes_temporary(tmp_path):
    (tmp_path / ".metrics.jsonl.k1x2.tmp").write_text("half a fi")
    (tmp_path / "metrics.jsonl").write_text("kept\n")
    with RunLock(tmp_path):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lfmsl.lock", "metrics.jsonl"]


def test_without_a_lock_only_old_temporaries_are_removed(tmp_path):
    old, fresh = tmp_path / ".a.npz.1.tmp", tmp_path / ".b.npz.2.tmp"
    old.write_text("x"), fresh.write_text("y")
    an_hour_ago = time.time() - 3700
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert atomic.remove_leftovers(tmp_path, older_than_s=3600) == [old]
    assert fresh.exists() and not old.exists()
