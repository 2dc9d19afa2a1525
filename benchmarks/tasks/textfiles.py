"""Plain-text corpora (one sentence per line, optionally gzip'd), read strictly: a bad line is an error naming the
file and the line, never a silently skipped or mangled sentence.

Checks: the bytes of every line are UTF-8; no line is empty (a blank line in a parallel corpus shifts every pair
after it); a source and a target file have the same number of lines. Used by the text tasks (Multi30k,
tiny-shakespeare) before their data reaches a tokenizer.

After that check the text tasks read their files as users of Hugging Face ``datasets`` do: ``load_dataset("text")``
into Arrow files under ``<cache>/hf-datasets``, tokenised with ``Dataset.map`` into more Arrow files found again by
their fingerprint. Both are derived data and checked, never trusted blindly (``text_dataset``, ``mapped``): the text
rows must equal the strict read, and a mapped file must match the sha256 recorded when it was written; a cache that
does not is named in one line and rebuilt, never blamed on the (md5-checked) text file.
"""

from __future__ import annotations

import gzip
import inspect
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.core import paths
from benchmarks.core.checksums import sha256_file
from benchmarks.core.results import write_atomic
from benchmarks.tasks.files import DataError
from benchmarks.tasks.tokenizer import corpus_checksum

CACHE_NAME = "hf-datasets"  # the datasets cache folder under <cache>, and the name of its lock


def _open(path: Path):
    return gzip.open(path, "rb") if Path(path).suffix == ".gz" else open(path, "rb")


def read_lines(path: Path, allow_empty: bool = False) -> list[str]:
    """Every line of ``path`` (.gz or plain) as text, without its line ending."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    lines = []
    try:
        with _open(path) as f:
            for number, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as error:
                    raise DataError(f"{path}:{number}: not UTF-8 (byte {raw[error.start]:#04x} at column "
                                    f"{error.start + 1})") from None  # fmt: skip
                if not line.strip() and not allow_empty:
                    raise DataError(f"{path}:{number}: empty line (a parallel corpus would be misaligned after it)")
                lines.append(line)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"{path}: cannot be read ({error}); re-download or restore it") from None
    return lines


def read_parallel(source: Path, target: Path) -> tuple[list[str], list[str]]:
    """Aligned sentence pairs from two files with one sentence per line each."""
    src, tgt = read_lines(source), read_lines(target)
    if len(src) != len(tgt):
        shorter = source if len(src) < len(tgt) else target
        raise DataError(f"{source} has {len(src)} lines but {target} has {len(tgt)}: the pairs are misaligned "
                        f"after line {min(len(src), len(tgt))} of {shorter}")  # fmt: skip
    return src, tgt


def read_text(path: Path) -> str:
    """The whole of ``path`` (.gz or plain) as text, with the UTF-8 check of ``read_lines`` (empty lines are text
    here) and line endings as Python's text mode reads them ("\\r\\n" and "\\r" become "\\n")."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        with _open(path) as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"{path}: cannot be read ({error}); re-download or restore it") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        number, start = raw.count(b"\n", 0, error.start) + 1, raw.rfind(b"\n", 0, error.start) + 1
        raise DataError(f"{path}:{number}: not UTF-8 (byte {raw[error.start]:#04x} at column "
                        f"{error.start - start + 1})") from None  # fmt: skip
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- through Hugging Face datasets ------------------------------------------------------------------------------------
def text_dataset(path: Path, lines: list[str], document: bool = False):
    """``datasets``' text rows of ``path`` (one a line; with ``document``, the whole text as one row, line endings
    kept), which must equal the strict read ``lines`` (``[text]`` for a document). Its Arrow cache is derived data: a
    cache that loads other rows (or fails to load) is named in one line and rebuilt from the file; rows that still
    differ are the file's doing (e.g. a line separator other than \\n). Checked and built under the cache's lock
    (processes reading the same text at once take turns)."""
    with paths.cache_lock(CACHE_NAME):
        return _checked_text_dataset(path, lines, document)


def _checked_text_dataset(path: Path, lines: list[str], document: bool):
    try:
        dataset = _load_text(path, "reuse_dataset_if_exists", document)
        problem = _differ(_rows(dataset), lines, document)
    except Exception as error:  # pyarrow and datasets raise their own errors on a damaged cache file
        problem = f"cannot be read ({error.__class__.__name__}: {error})"
    if problem is None:
        return dataset
    print(f"{path}: the datasets cache of this file {problem}; rebuilding it from the file", flush=True)
    dataset = _load_text(path, "force_redownload", document)
    rows = _rows(dataset)
    if _differ(rows, lines, document) is not None:
        what = "another text than a strict read" if document else f"{len(rows)} lines, a strict read {len(lines)}"
        raise DataError(f"{path}: datasets reads {what}; fix the file")
    return dataset


def _load_text(path: Path, mode: str, document: bool):
    import datasets

    datasets.disable_progress_bars()
    options = {"sample_by": "document", "keep_linebreaks": True} if document else {}
    cache = str(paths.cache_dir() / CACHE_NAME)
    return datasets.load_dataset(
        "text", data_files=str(path), split="train", cache_dir=cache, download_mode=mode, **options
    )


def _rows(dataset) -> list[str]:
    return dataset.with_format("arrow")["text"].to_pylist()  # one Arrow conversion (row by row is ~100x slower)


def _differ(rows: list[str], lines: list[str], document: bool) -> str | None:
    if rows == lines:
        return None
    if document:
        return "holds another text than the file's"
    return f"holds {len(rows)} rows that differ from the file's {len(lines)} lines"


def mapped(dataset, function: Callable, lines: list[str], key: list, **fn_kwargs):
    """``dataset.map(function)`` (batched, the text column replaced by ``function``'s ``ids``: int32 lists), cached by
    ``datasets`` in an Arrow file beside the text's and found again by its fingerprint. The fingerprint is set here,
    from the source code of ``function``, the checksum of the text ``lines`` the dataset holds and ``key`` (what
    else decides the ids: a tokenizer's sha256, special ids, limits), so a change to any of them maps again.
    ``fn_kwargs`` go to ``function`` and must be decided by ``key``.

    The mapped file is derived data too: its sha256 is recorded beside it (``cache-<fingerprint>.arrow.sha256``,
    written after it) and checked before each reuse; a file that is missing, altered or has no record is named in one
    line and mapped again. Checked, mapped and recorded under the cache's lock (processes take turns)."""
    from datasets.fingerprint import Hasher

    fingerprint = Hasher.hash([inspect.getsource(function), corpus_checksum(lines), key])
    with paths.cache_lock(CACHE_NAME):
        return _checked_map(dataset, function, fingerprint, fn_kwargs)


def _checked_map(dataset, function: Callable, fingerprint: str, fn_kwargs: dict):
    import datasets

    datasets.disable_progress_bars()
    file = Path(dataset.cache_files[0]["filename"]).with_name(f"cache-{fingerprint}.arrow")
    record = file.with_name(file.name + ".sha256")
    if file.exists() or record.exists():
        problem = _check_record(file, record)
        if problem is not None:
            print(f"{problem}; mapping the text to ids again", flush=True)
            file.unlink(missing_ok=True)
            record.unlink(missing_ok=True)
    result = dataset.map(
        function,
        batched=True,
        fn_kwargs=fn_kwargs,
        remove_columns=dataset.column_names,
        features=datasets.Features({"ids": datasets.Sequence(datasets.Value("int32"))}),
        cache_file_name=str(file),
        load_from_cache_file=True,
        new_fingerprint=fingerprint,
    )
    if not record.exists():  # mapped just now
        write_atomic(sha256_file(file) + "\n", record, overwrite=True)
    return result


def _check_record(file: Path, record: Path) -> str | None:
    """Why the mapped ``file`` may not be reused, or None."""
    if not file.exists():
        return f"{file}: missing (its checksum record is there)"
    try:
        recorded = record.read_text().strip()
    except FileNotFoundError:
        return f"{record}: missing (the record of the mapped datasets cache's checksum)"
    except (OSError, ValueError) as error:
        return f"{record}: unreadable ({error.__class__.__name__}: {error})"
    if sha256_file(file) != recorded:
        return f"{file}: sha256 differs from the one recorded when it was written (the file was altered)"
    return None


def id_tensors(dataset) -> list:
    """The ``ids`` rows of a mapped dataset as int64 tensors, through numpy: one conversion of the whole column, split
    into views (``with_format("torch")`` makes a tensor per row, ~150x slower on Multi30k's 29,000 sentences)."""
    import pyarrow as pa
    import torch

    column = dataset.with_format("arrow")["ids"]
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    values = torch.from_numpy(column.flatten().to_numpy(zero_copy_only=False).astype(np.int64))
    return list(values.split(column.value_lengths().to_numpy(zero_copy_only=False).tolist()))
