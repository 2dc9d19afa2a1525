"""Data files with known checksums: found in the data folder and verified, or downloaded once when online.

A file that is present but fails its checksum is never used and never downloaded over: the error names the file, the
expected and actual checksums, and what to do. A missing file with no network gets an error that says where to put it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DataError(RuntimeError):
    """Missing, truncated or corrupt data. The message is one self-contained line for the user."""


@dataclass(frozen=True)
class RemoteFile:
    relpath: str  # inside the data folder, e.g. "MNIST/raw/train-images-idx3-ubyte.gz" (torchvision's layout)
    md5: str
    urls: tuple[str, ...]  # mirrors, tried in order


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fetch(remote: RemoteFile, data_dir: Path, download: bool) -> Path:
    """Return the verified local path of ``remote``, downloading it when it is absent and ``download`` is on."""
    path = data_dir / remote.relpath
    if path.exists():
        actual = md5sum(path)
        if actual != remote.md5:
            raise DataError(
                f"{path}: md5 is {actual}, expected {remote.md5} (truncated or corrupt); the file was not used. "
                f"Delete it to download it again, or replace it with the original file."
            )
        return path
    where = f"put {path.name} (md5 {remote.md5}) in {path.parent}, or point --data-dir / MILESTONES_DATA at a folder "
    where += f"that holds {remote.relpath}"
    if not download:
        raise DataError(f"{path} is missing and downloading is off: {where}.")
    errors = []
    for url in remote.urls:
        try:
            _download(url, path, remote.md5)
            return path
        except (OSError, DataError) as error:  # URLError is an OSError
            errors.append(f"{url}: {error}")
    raise DataError(f"{path} is missing and could not be downloaded ({'; '.join(errors)}). With no network, {where}.")


def _download(url: str, path: Path, md5: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    print(f"downloading {url} -> {path}", flush=True)
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
        actual = md5sum(partial)
        if actual != md5:
            raise DataError(f"downloaded file has md5 {actual}, expected {md5}")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def read_idx_gz(path: Path) -> np.ndarray:
    """Decode an IDX file (LeCun's MNIST format, gzip-compressed) into a uint8 array of its declared shape."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot be decompressed ({error}); delete it and download it again.") from error
    magic = int.from_bytes(raw[0:4], "big")
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte data
        raise DataError(f"{path}: not an IDX file of unsigned bytes (magic {magic:#x}).")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape} but holds {data.size} bytes of data.")
    return data.reshape(shape)
