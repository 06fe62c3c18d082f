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
