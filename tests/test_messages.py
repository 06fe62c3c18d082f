"""One-line messages read whole: an exception's text cut at a word, counts with their plural, and a data error that
says what to check when the files were given."""

import dataclasses
import shutil
from pathlib import Path

import pytest

from lfmsl.errors import UsageError, first_line, plural


def test_first_line_keeps_short_text_and_cuts_long_text_at_a_word():
    assert first_line(ValueError("a short reason\nand a second line")) == "a short reason"
    assert first_line(KeyError()) == "KeyError"
    cut = first_line(RuntimeError("word " * 100), limit=23)
    assert cut == "word word word word …"
    assert first_line(RuntimeError("x" * 300), limit=10) == "x" * 10 + " …"  # one word longer than the limit


def test_counts_take_their_plural():
    assert [plural(n, "round") for n in (0, 1, 2)] == ["0 rounds", "1 round", "2 rounds"]


def test_original_files_that_do_not_prepare_say_to_check_them_not_to_pass_them(tmp_path):
    """The files were given (--manual-dir) but are not the originals: the message says to check them."""
    from lfmsl.io.data import SPECS, load_dataset

    folder = tmp_path / "manual" / "mnist"
    folder.mkdir(parents=True)
    for name in SPECS["mnist"].manual_files:
        (folder / name).write_bytes(b"not a gzip file " * 8)
    with pytest.raises(UsageError) as error:
        load_dataset("mnist", manual_dir=tmp_path / "manual", data_dir=tmp_path / "data")
    message = str(error.value)
    assert "\n" not in message and f"check that {folder} holds the original files" in message and "pass --manual-dir" not in message


def test_64_bit_mode_and_xla_flags_are_named_for_the_run_s_first_line(monkeypatch):
    import jax

    from lfmsl.io import outputs

    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert outputs.numerics_note() == ""
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=AVX")
    jax.config.update("jax_enable_x64", True)
    try:
        note, settings = outputs.numerics_note(), outputs.numerics()
    finally:
        jax.config.update("jax_enable_x64", False)
    assert note == " (numbers differ from a default run's: JAX_ENABLE_X64 on, XLA_FLAGS='--xla_cpu_max_isa=AVX')"
    assert settings == {"jax_enable_x64": True, "jax_default_matmul_precision": None, "xla_flags": "--xla_cpu_max_isa=AVX"}


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_data_cache_is_rebuilt(tmp_path, monkeypatch, capsys, damage):
    """A cache cut short (a killed copy) or overwritten is read as missing: rebuilt from tfds, with one line."""
    from lfmsl.io import data
    from synthetic import tiny_dataset

    dataset = tiny_dataset(train=30, test=10)
    path = data.cache_path("fashion_mnist", tmp_path)
    path.parent.mkdir(parents=True)
    data._write_cache(dataset, path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2] if damage == "truncated" else b"\0" * len(whole))
    monkeypatch.setattr(data, "_load_with_tfds", lambda name, data_dir, manual_dir: dataset)  # the originals at hand
    loaded = data.load_dataset("fashion_mnist", data_dir=tmp_path)
    assert (loaded.x_train == dataset.x_train).all()
    assert (data._read_cache("fashion_mnist", path).x_train == dataset.x_train).all()  # rewritten whole
    assert capsys.readouterr().err.count("is damaged; rebuilding it") == 1


def damaged_tfds_copy(tmp_path, manual_data_dir) -> Path:
    """A copy of the prepared MNIST whose training record is cut to 4 KiB, as a killed copy leaves it."""
    from conftest import prepared_by_tfds

    shutil.copytree(prepared_by_tfds("mnist", manual_data_dir) / "mnist", tmp_path / "mnist")
    record = next((tmp_path / "mnist").glob("*/mnist-train.tfrecord-*"))
    record.write_bytes(record.read_bytes()[:4096])
    return record.parent


def test_prepared_tfds_files_that_do_not_read_are_one_line_saying_what_to_remove(tmp_path, manual_data_dir, monkeypatch):
    """Without the original files at hand: TensorFlow's DataLossError, one line that names the folder."""
    from lfmsl.io import data

    folder = damaged_tfds_copy(tmp_path, manual_data_dir)
    monkeypatch.delenv("LFMSL_MANUAL_DIR", raising=False)
    with pytest.raises(UsageError) as error:
        data.load_dataset("mnist", data_dir=tmp_path, cache=False)
    message = str(error.value)
    assert message.startswith(f"the prepared tfds files of mnist in {folder} do not read (DataLossError: truncated record at")
    assert message.endswith("; remove that folder and run again to prepare them anew") and "\n" not in message and "{{" not in message


def test_prepared_tfds_files_that_do_not_read_are_prepared_anew_from_the_original_files(tmp_path, manual_data_dir, monkeypatch, capsys):
    """With the original files at hand the folder is prepared again (faked here: a real preparation takes 20 s) and read."""
    from lfmsl.io import data

    folder = damaged_tfds_copy(tmp_path, manual_data_dir)
    prepared = []

    def prepare(tfds, builder, name, data_dir, manual_dir):  # stands for tfds' preparation: the originals, whole
        assert not folder.exists()  # the damaged files were removed first
        prepared.append(name)
        shutil.copytree(TFDS_FOLDER / "mnist" / folder.name, folder)

    from conftest import TFDS_FOLDER

    monkeypatch.setattr(data, "_prepare", prepare)
    dataset = data.load_dataset("mnist", data_dir=tmp_path, manual_dir=manual_data_dir, cache=False)
    assert prepared == ["mnist"] and dataset.x_train.shape == (60000, 28, 28, 1)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("; preparing them anew from the original files"), lines


def test_a_state_too_large_for_memory_is_refused_before_it_is_built(monkeypatch):
    """Before: --clients 60000 --batch-size 1 built client models until the kernel killed the process at 24 GB."""
    from lfmsl.config import Config
    from lfmsl.core import memory
    from lfmsl.experiments.simulation import Simulation
    from synthetic import tiny_dataset

    config = Config(algorithm="psl", clients=40, batch_size=1, model="cnn")
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 10 * 2**20)  # 10 MiB
    built = []
    monkeypatch.setattr("lfmsl.core.sharding.Placement.init_state", lambda *args: built.append(args))
    with pytest.raises(UsageError) as error:
        Simulation(config, tiny_dataset(train=40))
    message = str(error.value)
    assert message.startswith("the state of 40 clients") and "but only 0.0 GiB is available; use at most" in message
    fits = int(message.split("use at most ")[1].split()[0])
    assert 0 < fits < 40 and built == []
    assert Simulation(dataclasses.replace(config, clients=fits), tiny_dataset(train=40)) and built  # that many fit in 10 MiB


def test_a_sweep_whose_largest_run_cannot_fit_is_refused_before_its_first_run(tmp_path, monkeypatch, capsys):
    """Before: a sweep ran its small runs for hours and then met the one whose clients the kernel killed."""
    from lfmsl import cli
    from lfmsl.core import memory
    from lfmsl.io import data

    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 10 * 2**20)  # 10 MiB: 40 cnn clients do not fit
    monkeypatch.setattr(data, "load_dataset", lambda *args, **kwargs: pytest.fail("a dataset was loaded"))
    out = tmp_path / "sweep"
    code = cli.main(["sweep", "--algorithm", "psl,sflv2", "--clients", "2,40", "--batch-size", "1", "--out", str(out)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("lfmsl: error: the grid's psl run with 40 clients cannot fit: the state of 40 clients")
    assert not (out / "runs").exists() or not any((out / "runs").iterdir())
