"""Whole datasets as NumPy arrays, loaded once through tensorflow-datasets.

Training runs on arrays held in memory, so a dataset is decoded once and cached as an
uncompressed ``.npz`` file under ``<data_dir>/lfmsl_cache``; later runs (and machines without
TensorFlow) read only that file. TensorFlow and tfds are imported lazily for that reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import re
import shutil
import sys
import zipfile
import zlib
from pathlib import Path
from types import ModuleType
from typing import Iterator

import numpy as np

from lfmsl.datasets import DATASETS, SPECS
from lfmsl.errors import UsageError, first_line

_MANUAL_HINT = ("pass --manual-dir DIR or set LFMSL_MANUAL_DIR to a folder with a '{name}/' subfolder of the "
                "original files")
_CHUNK = 10_000  # batch_size=-1 breaks under tfds.testing.mock_data; fixed chunks work everywhere.
_DOWNLOAD_HOST = ("storage.googleapis.com", 443)  # where tfds downloads these datasets from
_TF_NODE = re.compile(r"\{\{[^}]*\}\}\s*|\s*\[Op:[^\]]*\]( name:\S*)?")  # TensorFlow's op names around an op's error
LEFTOVER_AGE_S = 3600  # a cache temporary this old belongs to a killed write, not a slow live one


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test splits; images uint8 [n, H, W, C], labels int32 [n]."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        h, w, c = self.x_train.shape[1:]
        return int(h), int(w), int(c)


def default_data_dir() -> Path:
    """``$LFMSL_DATA_DIR``, else tfds' usual ``~/tensorflow_datasets``."""
    return Path(os.environ.get("LFMSL_DATA_DIR") or Path.home() / "tensorflow_datasets").expanduser()


def cache_path(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`load_dataset` keeps the NumPy copy of a dataset."""
    return Path(data_dir or default_data_dir()).expanduser() / "lfmsl_cache" / f"{name}.npz"


def load_dataset(
    name: str,
    *,
    manual_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    cache: bool = True,
) -> Dataset:
    """Load a dataset: from the npz cache, else tfds (prepared, from ``manual_dir``, or downloaded).

    ``manual_dir`` (default ``$LFMSL_MANUAL_DIR``) holds one subfolder of original files per dataset.
    ``cache=False`` neither reads nor writes the npz cache.
    """
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    data_dir = Path(data_dir or default_data_dir()).expanduser()
    path = cache_path(name, data_dir)
    if cache and (dataset := _cached(name, path, announce=False)) is not None:
        return dataset
    with _preparing(name, data_dir):  # one process prepares; another one waits, then reads its cache
        if cache and (dataset := _cached(name, path)) is not None:
            return dataset
        dataset = _load_with_tfds(name, data_dir, manual_dir)
        if cache:
            try:
                _write_cache(dataset, path)
            except OSError as error:  # A read-only data_dir costs speed next time, not this run.
                print(f"lfmsl: could not write the cache {path}: {error}", file=sys.stderr)
    return dataset


def _cached(name: str, path: Path, announce: bool = True) -> Dataset | None:
    """The npz cache, or None when it is missing or damaged (then it is rebuilt, saying so where `announce`)."""
    if not path.is_file():
        return None
    _remove_old_leftovers(path.parent)  # a killed write's temporary, also when the cache was rebuilt since
    try:
        return _read_cache(name, path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):  # cut short or damaged
        if announce:
            print(f"lfmsl: the data cache {path} is damaged; rebuilding it", file=sys.stderr)
        return None


@contextlib.contextmanager
def _preparing(name: str, data_dir: Path) -> Iterator[None]:
    """Hold `<data_dir>/.lfmsl-<name>.lock` while preparing: two processes preparing one dataset at
    once shared tfds' extraction folder, and the first to finish deleted it under the other. Where the
    lock cannot be taken (a read-only folder, no fcntl), preparation goes on without it."""
    try:
        import fcntl

        lock_path = data_dir / f".lfmsl-{name}.lock"
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a")
    except (ImportError, OSError):
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def import_tfds() -> ModuleType:
    """Import tfds quietly, with TensorFlow kept off accelerators (JAX owns their memory)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # Else TF prints a notice on import.
    if "importlib_resources" not in sys.modules:
        try:
            import importlib_resources  # noqa: F401
        except ImportError:
            # tfds 4.9.10 imports this backport although it declares it only for Python < 3.9;
            # the standard library module has the one attribute it uses (abc.Traversable).
            import importlib.resources
            import importlib.resources.abc  # noqa: F401

            sys.modules["importlib_resources"] = importlib.resources
    import tensorflow as tf
    import tensorflow_datasets as tfds

    tf.get_logger().setLevel("ERROR")
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)  # tfds warns of every empty dataset folder it looks into
    tf.config.set_visible_devices([], "GPU")
    return tfds


def _load_with_tfds(name: str, data_dir: Path, manual_dir: str | os.PathLike | None) -> Dataset:
    """Read the tfds preparation, preparing it first where it is missing. Prepared files that do not read
    (a truncated record: TensorFlow's DataLossError) are prepared anew where the original files are at
    hand, else refused in one line saying what to remove."""
    tfds = import_tfds()
    builder = tfds.builder(name, data_dir=str(data_dir))
    if not builder.is_prepared():
        _prepare(tfds, builder, name, data_dir, manual_dir)
    try:
        return _read_prepared(tfds, builder, name)
    except _Unreadable as error:
        if _manual_folder(name, manual_dir) is None:
            raise UsageError(f"{error}; remove that folder and run again to prepare them anew") from None
        print(f"lfmsl: {error}; preparing them anew from the original files", file=sys.stderr)
    shutil.rmtree(builder.data_dir, ignore_errors=True)
    _prepare(tfds, tfds.builder(name, data_dir=str(data_dir)), name, data_dir, manual_dir)
    builder = tfds.builder(name, data_dir=str(data_dir))  # reads the new preparation's splits
    try:
        return _read_prepared(tfds, builder, name)
    except _Unreadable as error:
        raise UsageError(f"{error} even after preparing them anew; check the original files and the disk") from None


class _Unreadable(Exception):
    """Prepared tfds files that do not read; its text names the folder and TensorFlow's error."""


def _read_prepared(tfds: ModuleType, builder, name: str) -> Dataset:
    failure = None
    with _native_stderr_silenced():
        try:
            x_train, y_train = _split_arrays(tfds, builder, "train")
            x_test, y_test = _split_arrays(tfds, builder, "test")
        except Exception as error:  # noqa: BLE001 - TensorFlow's DataLossError and kin: the prepared files do not read
            failure = f"{type(error).__name__}: {first_line(_TF_NODE.sub('', str(error)))}"
        if failure is not None:
            gc.collect()  # the failed read's iterator warns as it goes: here, while its warnings are silenced
    if failure is not None:
        raise _Unreadable(f"the prepared tfds files of {name} in {builder.data_dir} do not read ({failure})")
    num_classes = int(builder.info.features["label"].num_classes)
    return Dataset(name, x_train, y_train, x_test, y_test, num_classes)


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null while TensorFlow reads records: its C++ logging (absl, not
    governed by TF_CPP_MIN_LOG_LEVEL since TF 2.16) writes three warnings around a truncated record's
    DataLossError, which reaches Python as an exception anyway. Where fd 2 cannot be duplicated, nothing changes."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    sys.stderr.flush()
    with open(os.devnull, "wb") as sink:
        os.dup2(sink.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _prepare(tfds: ModuleType, builder, name: str, data_dir: Path, manual_dir) -> None:
    """Build the tfds files from the manual folder if it has this dataset, else by download.

    Without internet, tfds retries a download for minutes; that case is told in seconds here,
    naming the files looked for.
    """
    dataset_manual = _manual_folder(name, manual_dir)
    if dataset_manual is None:
        if not _online():
            where = manual_dir or os.environ.get("LFMSL_MANUAL_DIR")
            looked = f"looked for them in {Path(where).expanduser() / name}/" if where else "no manual folder was given"
            raise UsageError(f"{name} is not prepared in {data_dir} and there is no internet to download it; "
                             f"its original files are {', '.join(SPECS[name].manual_files)} ({looked}); "
                             f"{_MANUAL_HINT.format(name=name)}")
        print(f"lfmsl: {name} is not in {data_dir} nor in a manual folder; downloading it", file=sys.stderr)
    # MNIST and Fashion-MNIST share file names: a shared extract_dir would silently mix them.
    extract_dir = data_dir / "downloads" / "extracted" / name
    config = tfds.download.DownloadConfig(
        manual_dir=str(dataset_manual) if dataset_manual else None,
        extract_dir=str(extract_dir),
        try_download_gcs=dataset_manual is None,
    )
    try:
        builder.download_and_prepare(download_config=config)
    except Exception as error:  # tfds raises network, checksum and assertion errors alike.
        where = f"from {dataset_manual}" if dataset_manual else "by download"
        # Files given and still failing: the hint is about the files, not about giving them.
        hint = (f"check that {dataset_manual} holds the original files ({', '.join(SPECS[name].manual_files)}), whole"
                if dataset_manual else _MANUAL_HINT.format(name=name))
        raise UsageError(f"could not prepare {name} {where} ({type(error).__name__}: {first_line(error)}); "
                         f"{hint}") from error
    finally:
        shutil.rmtree(extract_dir, ignore_errors=True)  # Decompressed copies are not needed afterwards.


def _manual_folder(name: str, manual_dir: str | os.PathLike | None) -> Path | None:
    """`<manual>/<name>` when it holds every file tfds reads for `name`; None when no manual folder
    is given or it lacks the dataset's subfolder. A subfolder missing some files is an error."""
    manual_root = manual_dir or os.environ.get("LFMSL_MANUAL_DIR")
    if not manual_root:
        return None
    manual_root = Path(manual_root).expanduser()
    if not manual_root.is_dir():
        raise UsageError(f"manual data folder {manual_root} does not exist; {_MANUAL_HINT.format(name=name)}")
    folder = manual_root / name
    if not folder.is_dir():
        return None
    missing = [file for file in SPECS[name].manual_files if not (folder / file).is_file()]
    if missing:
        raise UsageError(f"the manual folder {folder} lacks {', '.join(missing)}; add the original files "
                         f"or remove the folder to download {name}")
    return folder


def _online(timeout_s: float = 3.0) -> bool:
    """Whether tfds' download host answers; assumed so behind a proxy, which a direct probe would miss."""
    import socket

    if any(os.environ.get(key) for key in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")):
        return True
    try:
        socket.create_connection(_DOWNLOAD_HOST, timeout=timeout_s).close()
        return True
    except OSError:
        return False


def _split_arrays(tfds: ModuleType, builder, split: str) -> tuple[np.ndarray, np.ndarray]:
    chunks = tfds.as_numpy(builder.as_dataset(split=split, batch_size=_CHUNK, as_supervised=True))
    xs, ys = zip(*chunks)
    return np.concatenate(xs).astype(np.uint8, copy=False), np.concatenate(ys).astype(np.int32)


def _read_cache(name: str, path: Path) -> Dataset:
    with np.load(path, allow_pickle=False) as f:
        return Dataset(
            name, f["x_train"], f["y_train"], f["x_test"], f["y_test"], int(f["num_classes"])
        )


def _remove_old_leftovers(folder: Path) -> None:
    """Delete temporaries of cache writes killed an hour ago or more (a live write of another
    process may still be using a newer one); a read-only folder is left as it is."""
    from lfmsl.io.atomic import remove_leftovers

    try:
        remove_leftovers(folder, older_than_s=LEFTOVER_AGE_S)
    except OSError:
        pass


def _write_cache(dataset: Dataset, path: Path) -> None:
    """Write atomically, so that a concurrent or interrupted run never reads half a file."""
    import io

    from lfmsl.io.atomic import write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_old_leftovers(path.parent)
    arrays = {f.name: getattr(dataset, f.name) for f in dataclasses.fields(dataset) if f.name != "name"}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes(path, buffer.getvalue())
