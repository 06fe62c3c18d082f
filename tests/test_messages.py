"""One-line messages read whole: an exception's text cut at a word, counts with their plural, and a data error that
says what to check when the files were given."""

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
