"""32×32 colour image tasks (He et al. 2015 §4.2's CIFAR-10 protocol): ``imagenette-32`` offline, ``cifar10`` online.

- ``imagenette-32``: the Imagenette images the suite already holds (``imagenette2-224/``, fixed by the committed
  manifest ``manifests/imagenette2-224.csv.gz``), each reduced to 32×32 RGB. The derivation is code (``DERIVATION``):
  every listed file is read, checked against the manifest's sha256, decoded by Pillow, converted to RGB and resized
  to 32×32 with ``Image.BOX``, an antialiasing filter that here averages each 7×7 block of the 224×224 image (224 =
  7 · 32), rounded to uint8. The 13,394 derived images (40 MB) are kept in the per-user cache folder with their own
  sha256 and the manifest's and derivation's names, checked on every use and rebuilt, never trusted, when they do not
  match (about 20 s on one core). Split: the 9,469 training images minus 500 held out (fixed seed 0) for selection;
  the 3,925 official validation images are the test. Its data identity is the manifest's checksum plus the
  derivation's name. It is its own task: pixels and classes differ from CIFAR-10's, and no number on it is one of
  the paper's.
- ``cifar10``: CIFAR-10 (Krizhevsky 2009) from the official binary archive ``cifar-10-binary.tar.gz`` (md5 below, as
  the dataset's page lists it), used from the data folder when present, downloaded when online. The binary version is
  read as bytes (a label byte and 3,072 pixel bytes per image), never unpickled. Split as §4.2: 45,000 training and
  5,000 held-out images (fixed seed 0) from the 50,000, the 10,000 test images as the test.

Protocol for both: the best-validation checkpoint is tested once on the single original 32×32 view of each test
image; the ranked metric is the test error %. Training error per epoch is recorded beside the validation error
(``curve_keys``), for the training/test curves of the paper's Fig. 6. Augmentation and mean subtraction are the
model's (the task serves the images in [0, 1]).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.core import paths
from benchmarks.tasks.base import DataIdentity, Metric, Task, count
from benchmarks.tasks.files import DataError, RemoteFile, fetch
from benchmarks.tasks.imagenette import CLASSES, MANIFESTS
from benchmarks.tasks.inmemory import InMemoryImageData
from benchmarks.tasks.interfaces import CLASS_SCORES
from benchmarks.tasks.manifest import read_manifest, sha256_file

SIZE = 32
# The derivation of imagenette-32, by name: a result records it beside the manifest's checksum. Change the code of
# ``derive`` and this name must change with it (and every result on the task with it).
DERIVATION = "imagenette-32 v1: Pillow RGB, resize 224→32 Image.BOX (7×7 block means), uint8, manifest order"


def derive(jpeg: bytes) -> np.ndarray:
    """One Imagenette JPEG (224×224) → (3, 32, 32) uint8: decoded, RGB, each 7×7 block averaged (``Image.BOX``)."""
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as image:
        small = image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8).transpose(2, 0, 1)  # (H, W, 3) → (3, H, W)


class Imagenette32Data(InMemoryImageData):
    """``<data>/imagenette2-224/`` (the manifest's files) → 32×32 tensors, derived once into the cache folder."""

    image_shape = (3, SIZE, SIZE)
    val_size = 500
    manifest_path = MANIFESTS / "imagenette2-224.csv.gz"

    def root(self) -> Path:
        return self.data_dir / "imagenette2-224"

    def cache_folder(self) -> Path:
        manifest = sha256_file(self.manifest_path)
        name = hashlib.sha256(DERIVATION.encode()).hexdigest()[:12]
        return paths.cache_dir() / "imagenette-32" / f"{manifest[:16]}-{name}"

    def prepare_data(self) -> None:
        self.derived()  # built (or checked) once, before any process loads it

    def load_splits(self):
        images = torch.from_numpy(self.derived())  # (13394, 3, 32, 32) uint8, manifest order
        records = read_manifest(self.manifest_path)
        index = {label: i for i, label in enumerate(sorted(CLASSES))}
        labels = torch.tensor([index[r.label] for r in records], dtype=torch.uint8)
        split = np.array([r.split for r in records])
        train, test = torch.from_numpy(split == "train"), torch.from_numpy(split == "val")
        return {"train": (images[train], labels[train]), "test": (images[test], labels[test])}

    def derived(self) -> np.ndarray:
        """The derived images from the cache, checked against their record; built again when it does not match."""
        folder = self.cache_folder()
        array, record = folder / "images.u8", folder / "record.json"
        count = len(read_manifest(self.manifest_path))
        problem = cache_problem(array, record, self.expected_record(count))
        if problem is None:
            return np.fromfile(array, dtype=np.uint8).reshape(count, 3, SIZE, SIZE)
        if array.exists() or record.exists():
            print(f"{problem}; deriving imagenette-32 again", flush=True)
        return self.build(folder, count)

    def expected_record(self, count: int) -> dict:
        import PIL

        return {"manifest": sha256_file(self.manifest_path), "derivation": DERIVATION, "count": count,
                "pillow": PIL.__version__}  # fmt: skip

    def build(self, folder: Path, count: int) -> np.ndarray:
        if self.data_dir is None or not (self.root() / "train").is_dir():
            raise DataError(
                f"{self.root() if self.data_dir else 'imagenette2-224/'} not found: imagenette-32 is derived from the "
                "Imagenette2 images re-encoded at 224×224 (imagenette2-224/, the files of the committed manifest); "
                "point --data-dir / MILESTONES_DATA at the folder that holds it"
            )
        print(f"deriving imagenette-32 from {self.root()} -> {folder} (once: about 20 s)", flush=True)
        out = np.empty((count, 3, SIZE, SIZE), dtype=np.uint8)
        for i, r in enumerate(read_manifest(self.manifest_path)):
            try:
                jpeg = (self.root() / r.path).read_bytes()
            except OSError as error:
                raise DataError(f"{self.root() / r.path}: unreadable ({error}); the manifest lists it") from error
            if hashlib.sha256(jpeg).hexdigest() != r.sha256:
                raise DataError(f"{self.root() / r.path}: sha256 differs from the manifest's (corrupt or replaced)")
            out[i] = derive(jpeg)
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".images.u8.{os.getpid()}.part"
        out.tofile(partial)
        os.replace(partial, folder / "images.u8")
        record = {**self.expected_record(count), "sha256": sha256_file(folder / "images.u8")}
        partial = folder / f".record.json.{os.getpid()}.part"
        partial.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(partial, folder / "record.json")  # the record last: a cache without one is never used
        return out

    @classmethod
    def declared_identity(cls) -> DataIdentity:
        """The committed manifest (its own checksum) and the derivation's name: both code in this repository."""
        return DataIdentity(required={"imagenette2-224/manifest": "sha256:" + sha256_file(cls.manifest_path),
                                      "imagenette-32/derivation": DERIVATION})  # fmt: skip

    def identity(self) -> dict[str, str]:
        return dict(self.declared_identity().required)


def cache_problem(array: Path, record: Path, expected: dict) -> str | None:
    """None when ``record`` describes this derivation and ``array`` has its recorded sha256; else the reason."""
    try:
        recorded = json.loads(record.read_text())
    except FileNotFoundError:
        return f"{record}: missing"
    except (OSError, ValueError) as error:
        return f"{record}: unreadable ({error!r})"
    if not isinstance(recorded, dict) or any(recorded.get(key) != value for key, value in expected.items()):
        return f"{record}: made by another derivation, manifest or Pillow version"
    try:
        actual = sha256_file(array)
    except OSError as error:
        return f"{array}: unreadable ({error})"
    if actual != recorded.get("sha256"):
        return f"{array}: sha256 {actual[:16]}…, its record says {str(recorded.get('sha256'))[:16]}… (damaged)"
    return None


# --- CIFAR-10 ----------------------------------------------------------------------------------------------------
CIFAR_MEMBERS = [f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)] + [
    "cifar-10-batches-bin/test_batch.bin"
]
RECORD = 1 + 3 * SIZE * SIZE  # one label byte, then 1,024 red, 1,024 green and 1,024 blue bytes, rows top to bottom


class CIFAR10Data(InMemoryImageData):
    """The official binary archive (``cifar-10-binary.tar.gz``, md5 as the dataset's page lists it)."""

    image_shape = (3, SIZE, SIZE)
    val_size = 5_000
    archive = RemoteFile(
        "cifar-10-binary.tar.gz",
        "c32a1d4ab5d03f1284b67883e8d87530",
        ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
    )

    def prepare_data(self) -> None:
        fetch(self.archive, self.data_dir, self.download)

    def load_splits(self):
        path = fetch(self.archive, self.data_dir, download=False)
        batches = read_cifar_binary(path)
        train = [batches[name] for name in CIFAR_MEMBERS[:5]]
        images, labels = torch.cat([x for x, _ in train]), torch.cat([y for _, y in train])
        return {"train": (images, labels), "test": batches[CIFAR_MEMBERS[5]]}

    @classmethod
    def declared_identity(cls) -> DataIdentity:
        return DataIdentity(required={cls.archive.relpath: f"md5:{cls.archive.md5}"})

    def identity(self) -> dict[str, str]:
        return {self.archive.relpath: f"md5:{self.archive.md5}"}


def read_cifar_binary(path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The six batches of the binary archive, by member name: (images (N, 3, 32, 32) uint8, labels (N,) uint8).
    Only those members are read (as bytes, nothing extracted); a missing or malformed one is a DataError."""
    out = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for name in CIFAR_MEMBERS:
                try:
                    member = tar.getmember(name)
                except KeyError:
                    raise DataError(f"{path}: holds no {name}; not the CIFAR-10 binary archive") from None
                raw = tar.extractfile(member).read() if member.isfile() else b""
                if not raw or len(raw) % RECORD:
                    raise DataError(f"{path}: {name} is {len(raw)} bytes, not a whole number of {RECORD}-byte records")
                rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD)
                if rows[:, 0].max() >= 10:
                    raise DataError(f"{path}: {name} has a label {rows[:, 0].max()} (CIFAR-10 has 10 classes)")
                images = torch.from_numpy(rows[:, 1:].reshape(-1, 3, SIZE, SIZE).copy())
                out[name] = (images, torch.from_numpy(rows[:, 0].copy()))
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"{path}: cannot be read as a .tar.gz ({error}); delete it and download it again") from error
    return out


# --- the tasks ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SmallImageTask(Task):
    """A 32×32 image task whose leaderboard plot is Fig. 6's: the training error (dashed) and validation error (solid)
    of each row against the iterations (``judging/curves.py``), not a bar chart of where the runs ended."""

    train_images: int = 0  # after the held-out split: what an epoch's iterations are counted from
    learning_curve: bool = True  # the leaderboard draws the curves (with ``curve_keys`` dashed)
    curve_unit: str = "iterations (mini-batches of the training split)"

    def units_per_epoch(self, config: dict) -> int:
        """Iterations in one epoch of a recorded config: the training split in batches (the last one partial)."""
        return math.ceil(self.train_images / count(config["data"]["batch_size"], "data.batch_size"))

    def budget(self, config: dict) -> str:
        """'6 epochs (426 iterations)': the paper counts iterations (64k), so the table says both."""
        return (
            f"{super().budget(config)} ({config['trainer']['max_epochs'] * self.units_per_epoch(config):,} iterations)"
        )


def small_image_task(name: str, description: str, datamodule, train_images: int, target: float, protocol: str):
    return SmallImageTask(
        name=name,
        description=description,
        metric=Metric("error", "min", 0.0, 100.0, unit="%"),
        target=target,  # validation error, for time-to-target
        min_seeds=3,
        make_datamodule=datamodule,
        interface=CLASS_SCORES,
        model_inputs={"num_classes": 10, "input_shape": (3, SIZE, SIZE)},
        protocol=protocol,
        curve_keys=("train/error",),
        train_images=train_images,
    )


TEST = "best-val checkpoint tested once on the single 32×32 view; test error %"
TASKS = [
    small_image_task(
        "imagenette-32",
        "Imagenette2 (224-px copy) reduced to 32×32 RGB (7×7 box filter), 10 ImageNet classes",
        Imagenette32Data,
        train_images=9_469 - 500,
        target=50.0,
        protocol=f"9,469 train − 500 held out (seed 0) / 3,925 official val as test; 32×32 by 7×7 box means; {TEST}",
    ),
    small_image_task(
        "cifar10",
        "CIFAR-10 (Krizhevsky 2009), official binary archive, 10 classes, 32×32 RGB",
        CIFAR10Data,
        train_images=45_000,
        target=10.0,
        protocol=f"45k train / 5k val (fixed seed 0) / 10k test, as He et al. §4.2; {TEST}",
    ),
]
