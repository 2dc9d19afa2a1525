"""Plain-text corpora (one sentence per line, optionally gzip'd), read strictly: a bad line is an error naming the
file and the line, never a silently skipped or mangled sentence.

Checks: the bytes of every line are UTF-8; no line is empty (a blank line in a parallel corpus shifts every pair
after it); a source and a target file have the same number of lines. Used by the text tasks (Multi30k,
tiny-shakespeare) before their data reaches a tokenizer.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from benchmarks.tasks.files import DataError


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
