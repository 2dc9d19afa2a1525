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
    return fetch_all([remote], data_dir, download)[0]


def fetch_all(remotes: list[RemoteFile], data_dir: Path, download: bool) -> list[Path]:
    """The verified local paths of ``remotes``; one error names every file that is missing (not only the first)."""
    paths = [data_dir / remote.relpath for remote in remotes]
    for remote, path in zip(remotes, paths):
        if path.exists():
            actual = md5sum(path)
            if actual != remote.md5:
                raise DataError(
                    f"{path}: md5 is {actual}, expected {remote.md5} (truncated or corrupt); the file was not used. "
                    f"Delete it to download it again, or replace it with the original file."
                )
    missing = [(remote, path) for remote, path in zip(remotes, paths) if not path.exists()]
    if missing and not download:
        raise DataError(f"{_missing(missing)} and downloading is off: {_where(missing)}.")
    failed, errors = [], []
    for remote, path in missing:
        for url in remote.urls:
            try:
                _download(url, path, remote.md5)
                break
            except (OSError, DataError) as error:  # URLError is an OSError
                errors.append(f"{url}: {error}")
        else:
            failed.append((remote, path))
    if failed:
        raise DataError(
            f"{_missing(failed)} and could not be downloaded ({'; '.join(errors)}). With no network, {_where(failed)}."
        )
    return paths


def _missing(missing: list[tuple[RemoteFile, Path]]) -> str:
    if len(missing) == 1:
        return f"{missing[0][1]} is missing"
    return f"{len(missing)} files are missing ({', '.join(str(path) for _, path in missing)})"


def _where(missing: list[tuple[RemoteFile, Path]]) -> str:
    """Where to put each missing file, by folder, with its md5."""
    by_folder: dict[Path, list[str]] = {}
    for remote, path in missing:
        by_folder.setdefault(path.parent, []).append(f"{path.name} (md5 {remote.md5})")
    put = "; ".join(f"put {', '.join(names)} in {folder}" for folder, names in by_folder.items())
    holds = ", ".join(remote.relpath for remote, _ in missing)
    return f"{put}, or point --data-dir / MILESTONES_DATA at a folder that holds {holds}"


def _download(url: str, path: Path, md5: str) -> None:
    created = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
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
        if not path.exists():  # a failed download leaves no empty folders behind (e.g. in the default data folder)
            for folder in created:  # innermost first
                try:
                    folder.rmdir()
                except OSError:
                    break


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
