"""Shared fixtures: the offline benchmark data, prepared once into a git-ignored cache."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Every test process, and every run it starts, compiles with XLA's older CPU fusion emitters and LLVM at
# -O2 instead of -O3: together about a quarter of the default compile time (which is most of the suite's).
# The numbers stay within float rounding: bit for bit on the AVX-512 AMD EPYC that recorded tests/golden/metrics.json,
# a few losses one digit apart on an AMD EPYC without AVX-512 (whose own golden record was made with these flags).
# Set before JAX starts its backend; a level given later (fast_jit.py's, for a subprocess) wins.
SUITE_XLA_FLAGS = ("--xla_cpu_use_fusion_emitters=false", "--xla_backend_optimization_level=2")
for _flag in SUITE_XLA_FLAGS:
    if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_flag}".strip()


def pytest_configure(config):
    """LFMSL_MUTANT=NAME: run the tests against a deliberately broken variant of lfmsl (tests/mutants.py)."""
    if os.environ.get("LFMSL_MUTANT"):
        import mutants

        mutants.apply(os.environ["LFMSL_MUTANT"])


# The files that take longest, first (measured: tests/*.py by summed test time, idle): pytest-xdist hands
# out whole files (--dist loadfile) in collection order (--no-loadscope-reorder), and a long file handed
# out last runs alone at the end while the other process has nothing left to do.
LONGEST_FIRST = ("test_signals", "test_algorithms", "test_cuts", "test_study", "test_privacy_study", "test_privacy", "test_models",
                 "test_sharding", "test_cli", "test_participation", "test_checkpoint", "test_golden", "test_runlock")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: each file keeps its own order


@pytest.fixture(scope="session")
def manual_data_dir() -> Path:
    """The folder of original dataset files ($LFMSL_MANUAL_DIR, else ../shared/data)."""
    path = Path(os.environ.get("LFMSL_MANUAL_DIR") or REPO.parent / "shared" / "data")
    if not path.is_dir():
        pytest.skip(f"no offline data at {path}; set LFMSL_MANUAL_DIR")
    return path


TFDS_FOLDER = REPO / ".cache" / "tfds"


def prepared_by_tfds(name: str, manual_dir: Path) -> Path:
    """The persistent tfds folder (git-ignored), with `name` prepared and converted once: the first test
    process to ask prepares it while the others (pytest-xdist workers) wait (lfmsl's loader locks it),
    and then every process reads the finished cache."""
    from lfmsl.io.data import cache_path, load_dataset

    if not cache_path(name, TFDS_FOLDER).is_file():
        load_dataset(name, manual_dir=manual_dir, data_dir=TFDS_FOLDER)
    return TFDS_FOLDER


@pytest.fixture(scope="session")
def tfds_data_dir(manual_data_dir) -> Path:
    """The tfds folder with Fashion-MNIST prepared (MNIST too once `prepared_by_tfds` was asked for it)."""
    return prepared_by_tfds("fashion_mnist", manual_data_dir)


@pytest.fixture(scope="session")
def fashion_mnist(manual_data_dir, tfds_data_dir):
    from lfmsl.io.data import load_dataset

    return load_dataset("fashion_mnist", manual_dir=manual_data_dir, data_dir=tfds_data_dir)


@pytest.fixture(scope="session")
def fashion_mnist_slice(manual_data_dir):
    """2,000 training and 500 test images of the original Fashion-MNIST files, read without tfds."""
    from original_data import original_slice

    return original_slice(manual_data_dir, "fashion_mnist", train=2000, test=500)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory, fashion_mnist_slice) -> Path:
    """A data folder whose npz cache holds 600 training and 200 test images of Fashion-MNIST,
    so end-to-end runs of the command line take seconds (and need no tfds preparation)."""
    import numpy as np

    from lfmsl.io.data import cache_path

    folder = tmp_path_factory.mktemp("tiny_data")
    path = cache_path("fashion_mnist", folder)
    path.parent.mkdir(parents=True)
    d = fashion_mnist_slice
    np.savez(path, x_train=d.x_train[:600], y_train=d.y_train[:600], x_test=d.x_test[:200], y_test=d.y_test[:200], num_classes=d.num_classes)
    return folder


COMPILE_CACHE_LIMIT = 1 << 30  # bytes; one session writes about 50 MB


def machine_fingerprint() -> str:
    """XLA's CPU code is built for this CPU's instruction set, which JAX's cache key leaves out: a cache
    kept in a checkout that moves to another CPU must not load code compiled for this one."""
    import hashlib
    import platform

    from cpu import cpu_fields

    text = "\n".join(f"{key}: {value}" for key, value in cpu_fields().items()) or platform.processor()
    return hashlib.sha256(f"{text}\n{platform.machine()}".encode()).hexdigest()[:16]


KEPT_COMPILE_CACHE = REPO / ".cache" / "xla" / machine_fingerprint()


@pytest.fixture(scope="session")
def compile_cache(tmp_path_factory, worker_id) -> Path:
    """The persistent XLA compilation cache of the suite, shared by both pytest-xdist workers and the runs
    they start, and kept between sessions in the git-ignored .cache/xla/ (per CPU) like the prepared data:
    tests build the same programs again and again, and compiling is most of the suite's time. It can only
    hand back what the same program compiled to (JAX keys it on the program, the compiler's options and
    flags and the versions). LFMSL_TEST_FRESH_CACHE=1 starts this session from an empty cache instead, as
    a fresh clone (CI) does."""
    if os.environ.get("LFMSL_TEST_FRESH_CACHE") == "1":
        base = tmp_path_factory.getbasetemp()
        path = (base if worker_id == "master" else base.parent) / "xla_cache"
    else:
        path = KEPT_COMPILE_CACHE
    path.mkdir(parents=True, exist_ok=True)
    return path


def pytest_sessionstart(session):
    """Before any test process uses the kept cache (here, in the controlling process)."""
    if not hasattr(session.config, "workerinput") and KEPT_COMPILE_CACHE.is_dir():
        trim_least_recently_used(KEPT_COMPILE_CACHE, COMPILE_CACHE_LIMIT)


def trim_least_recently_used(folder: Path, limit: int) -> None:
    """Once `folder` holds more than `limit` bytes, remove its files used longest ago until half remains."""
    stats = [(entry, entry.stat()) for entry in folder.iterdir() if entry.is_file()]
    entries = sorted((max(stat.st_atime, stat.st_mtime), stat.st_size, entry) for entry, stat in stats)
    total = sum(size for _, size, _ in entries)
    if total <= limit:
        return
    for _, size, entry in entries:
        if total <= limit // 2:
            break
        entry.unlink(missing_ok=True)
        total -= size


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, tiny_data_dir, compile_cache) -> Path:
    """An uninterrupted 5-round locfedmix run on the tiny data, checkpointed every round."""
    from cli_runs import TINY, environment, run

    out = tmp_path_factory.mktemp("reference") / "run"
    done = run(["--data-dir", tiny_data_dir, *TINY, "--rounds", "5", "--checkpoint-every", "1", "--out", out], environment(compile_cache))
    assert done.returncode == 0, done.stderr
    return out


def _use_compile_cache(path: Path | None) -> dict:
    """Point this process's persistent XLA compilation cache at `path` (None: off), every program kept."""
    from lfmsl.core.compile_cache import point_at

    return point_at(path, jax_persistent_cache_min_compile_time_secs=0.0, jax_persistent_cache_min_entry_size_bytes=0)


def _restore_compile_cache(before: dict) -> None:
    from lfmsl.core.compile_cache import restore

    restore(before)


@pytest.fixture(scope="session", autouse=True)
def session_compile_cache(compile_cache):
    """Every test process loads what another test (of this session or an earlier one) compiled already."""
    before = _use_compile_cache(compile_cache)
    yield compile_cache
    _restore_compile_cache(before)


@pytest.fixture
def no_compile_cache():
    """For tests that count XLA compilations: every program compiles here, none is loaded."""
    before = _use_compile_cache(None)
    yield
    _restore_compile_cache(before)
