"""The suite's kept compile cache: trimmed to the programs used last, per CPU."""

import os

from conftest import machine_fingerprint, trim_least_recently_used


def test_the_cache_keeps_the_most_recently_used_half_once_over_its_limit(tmp_path):
    for age, name in enumerate("abcde"):  # a: used last; e: used first
        path = tmp_path / name
        path.write_bytes(b"x" * 100)
        os.utime(path, (1_000_000 - 1000 * age, 1_000_000 - 1000 * age))
    trim_least_recently_used(tmp_path, limit=500)  # not over the limit: nothing goes
    assert sorted(p.name for p in tmp_path.iterdir()) == list("abcde")
    trim_least_recently_used(tmp_path, limit=400)  # over: down to half the limit, oldest first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_the_cache_folder_depends_on_the_cpu(monkeypatch):
    import cpu

    assert machine_fingerprint() == machine_fingerprint() and len(machine_fingerprint()) == 16
    with_avx512 = {"model name": "AMD EPYC", "cpu family": "25", "model": "17", "flags": "avx2 avx512f"}
    monkeypatch.setattr(cpu, "cpu_fields", lambda: with_avx512)
    first = machine_fingerprint()
    monkeypatch.setattr(cpu, "cpu_fields", lambda: dict(with_avx512, model="1", flags="avx2"))  # same name, other CPU
    assert machine_fingerprint() != first
