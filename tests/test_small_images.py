"""The 32×32 tasks (benchmarks/tasks/small_images.py): imagenette-32's derivation (deterministic, checked, rebuilt
when its cache is damaged) on a tiny generated Imagenette folder; cifar10's binary archive on a tiny generated archive
in the official layout (never the network); the offline error."""

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.tasks import get_task
from benchmarks.tasks.files import DataError, RemoteFile
from benchmarks.tasks.manifest import ImageRecord, write_manifest
from benchmarks.tasks.small_images import CIFAR_MEMBERS, RECORD, CIFAR10Data, Imagenette32Data, derive


def test_examples_need_no_data():
    for name in ("imagenette-32", "cifar10"):
        x, y = get_task(name).example_batch(4)
        assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")  # lossless: the derivation's arithmetic can be checked
    return buffer.getvalue()


def test_derive_is_the_rounded_mean_of_each_7x7_block():
    pixels = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    out = derive(png(pixels))
    blocks = pixels.reshape(32, 7, 32, 7, 3).mean((1, 3)).transpose(2, 0, 1)  # (3, 32, 32)
    assert out.shape == (3, 32, 32) and out.dtype == np.uint8
    assert np.abs(out.astype(float) - blocks).max() <= 1  # rounding


@pytest.fixture
def imagenette(tmp_path, monkeypatch):
    """A 6-image imagenette2-224 folder (4 train, 2 val) with its own manifest, and an empty cache folder."""
    monkeypatch.setenv("MILESTONES_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    records = []
    listed = [("train", "n01440764"), ("train", "n02102040"), ("train", "n01440764"), ("train", "n03888257"),
              ("val", "n01440764"), ("val", "n03888257")]  # fmt: skip
    for i, (split, wnid) in enumerate(listed):
        path = f"{split}/{wnid}/img{i}.JPEG"
        data = png(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8))
        (tmp_path / "data" / "imagenette2-224" / split / wnid).mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "imagenette2-224" / path).write_bytes(data)
        records.append(ImageRecord(split, path, wnid, hashlib.sha256(data).hexdigest()))
    manifest = tmp_path / "manifest.csv.gz"
    write_manifest(records, manifest)
    data = type("TinyImagenette32", (Imagenette32Data,), {"manifest_path": manifest, "val_size": 1})
    return data, tmp_path


def test_imagenette32_derives_once_splits_and_rebuilds_a_damaged_cache(imagenette, capsys):
    data, tmp_path = imagenette
    first = data(tmp_path / "data", 2)
    first.prepare_data()
    first.setup("fit")
    assert [len(first.splits[s][1]) for s in ("train", "val", "test")] == [3, 1, 2]
    assert first.splits["test"][1].tolist() == [0, 9]  # sorted WNIDs: tench 0, parachute 9
    built = first.derived()
    assert "deriving" in capsys.readouterr().out
    array = next((tmp_path / "cache" / "imagenette-32").glob("*/images.u8"))
    raw = bytearray(array.read_bytes())
    raw[100] ^= 0xFF  # one damaged byte: named, rebuilt, not used
    array.write_bytes(bytes(raw))
    again = data(tmp_path / "data", 2).derived()
    assert "damaged" in capsys.readouterr().out and np.array_equal(again, built)  # deterministic
    assert np.array_equal(data(tmp_path / "data", 2).derived(), built) and not capsys.readouterr().out  # trusted now
    record = array.with_name("record.json")
    record.write_text(record.read_text().replace("imagenette-32 v1", "imagenette-32 v0"))  # another derivation
    assert np.array_equal(data(tmp_path / "data", 2).derived(), built)
    assert "another derivation" in capsys.readouterr().out


def test_imagenette32_refuses_an_image_the_manifest_does_not_name(imagenette):
    data, tmp_path = imagenette
    next((tmp_path / "data" / "imagenette2-224" / "val").rglob("*.JPEG")).write_bytes(b"not the image")
    with pytest.raises(DataError, match="sha256 differs from the manifest"):
        data(tmp_path / "data", 2).prepare_data()


def test_imagenette32_without_its_folder_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MILESTONES_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError) as error:
        Imagenette32Data(tmp_path, 2).prepare_data()
    assert "\n" not in str(error.value) and "MILESTONES_DATA" in str(error.value)


def cifar_archive(path, per_batch: int = 4, members=CIFAR_MEMBERS) -> bytes:
    """An archive in the official binary layout: per member, records of a label byte and 3,072 pixel bytes."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for name in members:
            rows = rng.integers(0, 256, (per_batch, RECORD), dtype=np.uint8)
            rows[:, 0] %= 10
            info = tarfile.TarInfo(name)
            info.size = rows.nbytes
            tar.addfile(info, io.BytesIO(rows.tobytes()))
    return path.read_bytes()


def tiny_cifar(folder, **kwargs):
    data = cifar_archive(folder / "cifar-10-binary.tar.gz", **kwargs)
    remote = RemoteFile("cifar-10-binary.tar.gz", hashlib.md5(data).hexdigest(), ("https://example.invalid/x",))
    return type("TinyCIFAR10", (CIFAR10Data,), {"archive": remote, "val_size": 5})


def test_cifar10_reads_the_binary_layout(tmp_path):
    data = tiny_cifar(tmp_path)(tmp_path, 4, download=False)
    data.prepare_data()
    data.setup("fit")
    assert [len(data.splits[s][1]) for s in ("train", "val", "test")] == [15, 5, 4]
    with tarfile.open(tmp_path / "cifar-10-binary.tar.gz") as tar:
        test = np.frombuffer(tar.extractfile(CIFAR_MEMBERS[5]).read(), dtype=np.uint8).reshape(-1, RECORD)
    images, labels = data.splits["test"]
    assert labels.tolist() == test[:, 0].tolist()
    assert images[0, 0, 0, :5].tolist() == test[0, 1:6].tolist()  # red plane first, row by row
    assert images[0, 2, 31, 31] == test[0, -1]  # the last byte: blue, bottom right
    x, _ = next(iter(data.train_dataloader()))
    assert x.shape == (4, 3, 32, 32)


def test_cifar10_offline_without_the_archive_is_one_line_naming_it_and_its_md5(tmp_path):
    with pytest.raises(DataError) as error:
        CIFAR10Data(tmp_path, 4, download=False).prepare_data()
    message = str(error.value)
    assert "\n" not in message and "cifar-10-binary.tar.gz" in message and CIFAR10Data.archive.md5 in message


def test_cifar10_refuses_a_wrong_archive(tmp_path):
    cifar_archive(tmp_path / "cifar-10-binary.tar.gz")
    with pytest.raises(DataError, match="md5 is"):  # not the official file: never used
        CIFAR10Data(tmp_path, 4, download=False).prepare_data()
    data = tiny_cifar(tmp_path, members=CIFAR_MEMBERS[:5])(tmp_path, 4, download=False)  # md5 right, a member absent
    with pytest.raises(DataError, match="holds no cifar-10-batches-bin/test_batch.bin"):
        data.setup("fit")
