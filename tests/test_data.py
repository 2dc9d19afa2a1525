"""Data modules: in-memory batches, fixed splits, checksums, and a clear error for every kind of bad data."""

from __future__ import annotations

import gzip
import shutil
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from benchmarks.tasks.digits import DigitsData
from benchmarks.tasks.files import DataError, RemoteFile, fetch, md5sum, read_idx_gz
from benchmarks.tasks.loader import TensorBatches
from benchmarks.tasks.mnist import MNIST_MD5, FashionMNISTData, MNISTData


def idx_bytes(array: np.ndarray) -> bytes:
    header = (0x0800 | array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_gz(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(data)
    return path


def test_idx_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(7, 28, 28))
    path = write_gz(tmp_path / "x.gz", idx_bytes(images))
    assert (read_idx_gz(path) == images).all()


def test_truncated_gz_cannot_be_decoded(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(50, 28, 28))
    full = write_gz(tmp_path / "full.gz", idx_bytes(images)).read_bytes()
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match="truncated.gz.*cannot be decompressed"):
        read_idx_gz(truncated)


def test_missing_file_offline_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError) as info:
        MNISTData(tmp_path, batch_size=8, download=False).prepare_data()
    message = str(info.value)
    assert "4 files are missing" in message and "\n" not in message
    for name, md5 in MNIST_MD5.items():  # every missing file at once, not only the first
        assert f"MNIST/raw/{name}" in message and md5 in message
    assert "--data-dir" in message and "MILESTONES_DATA" in message


def test_missing_file_with_no_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    data_dir = tmp_path / "data"
    with pytest.raises(
        DataError, match="4 files are missing.*could not be downloaded.*no route to host.*With no network, put"
    ):
        MNISTData(data_dir, batch_size=8, download=True).prepare_data()
    assert not list(tmp_path.rglob("*.part")), "no partial download is left behind"
    assert not data_dir.exists(), "no empty folders are left in the data folder when nothing was downloaded"


def test_download_verifies_the_checksum(tmp_path, monkeypatch):
    payload = b"not the real file"

    class Response:
        def __init__(self):
            self.sent = False

        def read(self, n):
            if self.sent:
                return b""
            self.sent = True
            return payload

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Response())
    remote = RemoteFile("X/raw/file.gz", "0" * 32, ("https://example.invalid/file.gz",))
    with pytest.raises(DataError, match="downloaded file has md5"):
        fetch(remote, tmp_path, download=True)
    assert not (tmp_path / "X/raw/file.gz").exists()


def test_checksum_mismatch_is_never_used_or_overwritten(tmp_path, monkeypatch):
    bad = tmp_path / "MNIST/raw/train-images-idx3-ubyte.gz"
    write_gz(bad, b"garbage")
    before = bad.read_bytes()
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("must not re-download over it"))
    with pytest.raises(DataError) as info:
        MNISTData(tmp_path, batch_size=8, download=True).prepare_data()
    message = str(info.value)
    assert str(bad) in message and md5sum(bad) in message and MNIST_MD5["train-images-idx3-ubyte.gz"] in message
    assert "not used" in message and bad.read_bytes() == before


def test_truncated_real_file_is_rejected_by_checksum(tmp_path, real_data_dir):
    source = real_data_dir / "MNIST/raw/t10k-labels-idx1-ubyte.gz"
    target = tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte.gz"
    target.parent.mkdir(parents=True)
    target.write_bytes(source.read_bytes()[:1000])
    for name in MNIST_MD5:
        if name != target.name:
            shutil.copy(real_data_dir / "MNIST/raw" / name, tmp_path / "MNIST/raw" / name)
    with pytest.raises(DataError, match="truncated or corrupt"):
        MNISTData(tmp_path, batch_size=8, download=False).prepare_data()


@pytest.mark.parametrize("cls,folder", [(MNISTData, "MNIST"), (FashionMNISTData, "FashionMNIST")])
def test_real_data_splits(real_data_dir, cls, folder):
    dm = cls(real_data_dir, batch_size=64, download=False)
    dm.prepare_data()
    dm.setup()
    sizes = {name: len(y) for name, (x, y) in dm.splits.items()}
    assert sizes == {"train": 55_000, "val": 5_000, "test": 10_000}
    assert dm.splits["train"][0].dtype == torch.uint8 and dm.splits["train"][0].shape[1:] == (1, 28, 28)
    again = cls(real_data_dir, batch_size=64, download=False)
    again.setup()
    assert torch.equal(dm.splits["val"][1], again.splits["val"][1]), "the validation split is fixed"
    assert all(key.startswith(f"{folder}/raw/") for key in dm.identity())
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and x.shape == (64, 1, 28, 28)


def test_digits_split_is_fixed_and_disjoint():
    dm = DigitsData(None, batch_size=32)
    dm.setup()
    sizes = {name: len(y) for name, (x, y) in dm.splits.items()}
    assert sizes == {"train": 1200, "val": 200, "test": 397}
    x, _ = next(iter(dm.val_dataloader()))
    assert x.max() <= 1.0 and x.shape[1:] == (1, 8, 8)
    assert dm.identity()["sklearn/datasets/data/digits.csv.gz"].startswith("sha256:")


def test_batches_order_is_a_function_of_seed_and_epoch():
    images, labels = torch.arange(100, dtype=torch.uint8).view(100, 1), torch.arange(100)
    epoch = {"now": 0}

    def order(seed):
        loader = TensorBatches(images, labels, 10, shuffle=True, seed=seed, epoch=lambda: epoch["now"])
        return torch.cat([y for _, y in loader])

    first = order(0)
    assert torch.equal(first, order(0)) and not torch.equal(first, order(1))
    assert sorted(first.tolist()) == list(range(100))
    epoch["now"] = 1
    assert not torch.equal(first, order(0)), "each epoch is shuffled anew"


def test_batches_shard_by_rank_without_overlap():
    images, labels = torch.zeros(103, 1, dtype=torch.uint8), torch.arange(103)
    seen = []
    for rank in range(4):
        loader = TensorBatches(images, labels, 8, shuffle=True, seed=3, rank=rank, world_size=4)
        ys = torch.cat([y for _, y in loader])
        assert len(ys) == 25 and len(loader) == 4
        seen += ys.tolist()
    assert len(set(seen)) == 100, "ranks are disjoint and equal-sized (3 left over are dropped this epoch)"
