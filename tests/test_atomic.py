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


def test_a_written_file_has_the_mode_a_plain_open_gives_or_keeps_the_replaced_ones(tmp_path):
    """Before: every output (config, metrics, summary, plots, tables, the data cache) was 0600, mkstemp's mode."""
    previous = os.umask(0o027)
    try:
        with open(tmp_path / "plain", "w"):
            pass
        atomic.write_text(tmp_path / "summary.json", "{}\n")
        assert (tmp_path / "summary.json").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777 == 0o640
        os.umask(0o022)
        atomic.write_text(tmp_path / "results.md", "x\n")
        assert (tmp_path / "results.md").stat().st_mode & 0o777 == 0o644
        os.chmod(tmp_path / "summary.json", 0o600)  # a file made private by hand stays so
        atomic.write_text(tmp_path / "summary.json", '{"a": 1}\n')
        assert (tmp_path / "summary.json").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(previous)


def plant(folder, name, age_s):
    path = folder / name
    path.write_text("half a fi")
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def test_old_temporaries_of_the_data_cache_and_the_sweep_tables_are_removed(tmp_path):
    """Before: a cache hit never cleaned the cache folder, and a sweep folder was never cleaned."""
    import numpy as np

    from lfmsl.experiments import sweep
    from lfmsl.io.data import cache_path, load_dataset
    from synthetic import tiny_dataset

    path = cache_path("fashion_mnist", tmp_path / "data")
    path.parent.mkdir(parents=True)
    d = tiny_dataset()
    np.savez(path, x_train=d.x_train, y_train=d.y_train, x_test=d.x_test, y_test=d.y_test, num_classes=d.num_classes)
    old, live = plant(path.parent, ".fashion_mnist.npz.k3j9.tmp", 3 * 3600), plant(path.parent, ".fashion_mnist.npz.a1b2.tmp", 10)
    assert len(load_dataset("fashion_mnist", data_dir=tmp_path / "data").y_train) == len(d.y_train)  # a cache hit
    assert not old.exists() and live.exists()  # a write in flight elsewhere is spared

    grid = tmp_path / "grid"
    grid.mkdir()
    old, live = plant(grid, ".results.csv.q1w2.tmp", 2 * 3600), plant(grid, ".results.md.e3r4.tmp", 10)
    sweep.write_tables([], grid)
    assert not old.exists() and live.exists() and (grid / "results.md").exists()
