"""Strict reading of plain-text corpora: bad lines are errors that name the file and the line."""

from __future__ import annotations

import gzip

import pytest

from benchmarks.tasks.files import DataError
from benchmarks.tasks.textfiles import read_lines, read_parallel


def write(path, data: bytes, gz: bool = True):
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def test_lines_round_trip_gz_and_plain(tmp_path):
    text = "Ein Hund läuft.\nZwei Männer stehen.\n".encode()
    assert read_lines(write(tmp_path / "a.de.gz", text)) == ["Ein Hund läuft.", "Zwei Männer stehen."]
    assert read_lines(write(tmp_path / "a.de", text, gz=False)) == ["Ein Hund läuft.", "Zwei Männer stehen."]


def test_empty_line_names_file_and_line(tmp_path):
    path = write(tmp_path / "val.en.gz", b"A dog runs.\n\nA cat sits.\n")
    with pytest.raises(DataError, match=r"val\.en\.gz:2: empty line"):
        read_lines(path)


def test_non_utf8_bytes_name_file_line_and_byte(tmp_path):
    path = write(tmp_path / "train.de.gz", b"Ein Hund.\nEin M\xe4dchen.\n")  # Latin-1 ä
    with pytest.raises(DataError, match=r"train\.de\.gz:2: not UTF-8 \(byte 0xe4 at column 6\)"):
        read_lines(path)


def test_line_count_mismatch_names_both_files(tmp_path):
    src = write(tmp_path / "train.de.gz", b"Ein Hund.\nEine Katze.\n")
    tgt = write(tmp_path / "train.en.gz", b"A dog.\n")
    with pytest.raises(DataError, match=r"train\.de\.gz has 2 lines but .*train\.en\.gz has 1"):
        read_parallel(src, tgt)


def test_truncated_gzip_is_a_clear_error(tmp_path):
    full = write(tmp_path / "full.gz", b"A dog runs.\n" * 2000).read_bytes()
    cut = tmp_path / "cut.gz"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match="cannot be read"):
        read_lines(cut)


def test_real_multi30k_is_aligned_and_clean(real_data_dir):
    folder = real_data_dir / "multi30k"
    if not folder.exists():
        pytest.skip("no multi30k in the data folder")
    src, tgt = read_parallel(folder / "train.de.gz", folder / "train.en.gz")
    assert len(src) == len(tgt) == 29_000
    assert len(read_parallel(folder / "test_2016_flickr.de.gz", folder / "test_2016_flickr.en.gz")[0]) == 1_000
