"""A LightningDataModule for JPEG image sets named by a manifest, decoded once into a cache (``imagecache``).

Subclasses say where the files are (``root``), which they are (``records`` and ``manifest_sha256``) and how to get them
(``fetch``, the only place that may download). This class verifies the files against the manifest before the cache is
built, holds out a fixed validation split of the training images, and hands out batches: augmented crops for
training, the centre crop for validation (and ``trainer.test``), and the ten crops of AlexNet §4.1 for the test
(``ten_crop_dataloader``, which the task's evaluation runs). The model only ever sees crops of ``crop_size``.

Every batch is normalised as the entry's config names it (``data.init_args.normalisation``, one per entry):

- ``mean-image``: AlexNet §2, "subtracting the mean activity over the training set from each pixel": raw 0–255 RGB
  minus the mean image (3, S, S) of the training images (the ones the model trains on: the held-out and test images
  are not in it), subtracted at the stored pixel before a crop or flip, alike for training, validation and test.
  Computed once from the decoded cache and kept beside it with its own checksum (``imagecache.cached_mean_image``).
- ``imagenet-channel``: torchvision's ``Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))`` of pixels
  in [0, 1], the input its ImageNet models (and its AlexNet weights) are trained with.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L
import numpy as np
import torch

from benchmarks.core import paths
from benchmarks.tasks.imagecache import (
    AugmentedBatches,
    CacheSpec,
    EvalBatches,
    Normalisation,
    TenCropBatches,
    cached_mean_image,
    ensure_cache,
    open_split,
    pca_lighting_basis,
)
from benchmarks.tasks.manifest import ImageRecord, read_manifest, scan_folder, sha256_file, verify, write_manifest

NORMALISATIONS = ("mean-image", "imagenet-channel")
TORCHVISION_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet per-channel mean and std, [0, 1] scale
TORCHVISION_STD = (0.229, 0.224, 0.225)


def derived_manifest(path: Path, scan) -> Path:
    """A manifest the suite builds itself (``scan()`` → records: hashing a folder it extracted, or the user's images),
    kept at ``path`` with a record of its sha256 (``<path>.sha256``), and checked against it on every use.

    Such a manifest is derived data: it is written atomically (through a temporary file), its record last, and one
    that is missing its record, unreadable, or altered since prints one line naming it and the reason and is built
    again; the same files give the same bytes (``write_manifest`` is reproducible).
    """
    record = path.with_name(path.name + ".sha256")
    if path.exists() or record.exists():
        problem = _manifest_problem(path, record)
        if problem is None:
            return path
        print(f"{problem}; building the manifest again", flush=True)
        record.unlink(missing_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    digest = write_manifest(scan(), partial)
    os.replace(partial, path)
    record.write_text(json.dumps({"sha256": digest, "what": f"sha256 of {path.name} when it was built"}) + "\n")
    return path


def _manifest_problem(path: Path, record: Path) -> str | None:
    try:
        recorded = json.loads(record.read_text())["sha256"]
    except FileNotFoundError:
        return f"{record}: missing (the record of the manifest's checksum)"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{record}: unreadable ({error!r})"
    try:
        actual = sha256_file(path)
    except OSError as error:
        return f"{path}: unreadable ({error})"
    return None if actual == recorded else f"{path}: sha256 differs from the one recorded when it was built"


class ImageSetData(L.LightningDataModule):
    cache_name = "images"  # the cache folder's prefix
    storage_size = 256  # AlexNet §2: images are stored at 256×256
    # each process decodes only its share of the images (imagecache's batches, by the trainer's rank); under DDP the
    # harness sets ``batch_size`` to the share of the global batch (running/distributed.py)
    shards_by_rank = True
    crop_size = 224  # training crops
    val_size = 500  # training images held out for model selection and the plateau schedule
    split_seed = 0  # fixed: every run validates on the same images
    train_split, test_split = "train", "val"
    lighting_std = 0.1  # AlexNet §4.1: α ~ N(0, 0.1)
    eval_batch_size = 200  # images per validation batch; crops per ten-crop test batch (20 images × 10 views)

    def __init__(self, data_dir: Path | None, batch_size: int, seed: int = 0, download: bool = True,
                 cache_dir: Path | None = None, normalisation: str = "mean-image") -> None:  # fmt: skip
        super().__init__()
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation {normalisation!r}: one of {', '.join(NORMALISATIONS)}")
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.batch_size, self.seed, self.download = batch_size, seed, download
        self.cache_dir = Path(cache_dir) if cache_dir is not None else paths.cache_dir()
        self.normalisation_name = normalisation
        self.stores: dict | None = None
        self.normalisation: Normalisation | None = None  # set up with the stores
        self.device: torch.device | None = None  # without a trainer (tools, tests): where batches are made

    # --- what a subclass provides -------------------------------------------------------------------------------
    def root(self) -> Path:
        """The folder that holds ``<split>/<class>/<image>``."""
        raise NotImplementedError

    def fetch(self) -> None:
        """Make ``root()`` exist: find it in the data folder, or download it when allowed; else a DataError."""
        raise NotImplementedError

    def manifest_file(self) -> Path:
        """The gzip'd CSV manifest (``manifest.py``) of the set's files: committed, or built once from the files."""
        raise NotImplementedError

    def identity(self) -> dict[str, str]:
        """What a result records as the data it used, e.g. {"imagenette2-320.tgz": "md5:..."}."""
        raise NotImplementedError

    @classmethod
    def example(cls, folder: Path, batch_size: int, seed: int = 0, **init_args) -> ImageSetData:
        """The task's tiny example in the set's own layout: 10 classes of random-noise JPEGs (2 training images each,
        of which 6 validate; 1 test image each) written under ``folder``, with their manifest, then read by the same
        code: verified, decoded into a cache beside them, cropped, normalised and batched."""
        root = Path(folder) / "example-images"
        manifest = Path(folder) / "example-manifest.csv.gz"
        if not manifest.exists():
            write_example_images(root, {cls.train_split: 2, cls.test_split: 1})
            write_manifest(scan_folder(root, (cls.train_split, cls.test_split)), manifest)
        example = type(f"Example{cls.__name__}", (ExampleImageSet, cls), {"val_size": 6, "example_root": root,
                                                                         "example_manifest": manifest})  # fmt: skip
        return example(None, batch_size, seed, download=False, cache_dir=Path(folder) / "cache", **init_args)

    # --- shared machinery ---------------------------------------------------------------------------------------
    def records(self) -> list[ImageRecord]:
        return read_manifest(self.manifest_file())

    def manifest_sha256(self) -> str:
        return sha256_file(self.manifest_file())

    @property
    def spec(self) -> CacheSpec:
        return CacheSpec(self.storage_size)

    def cache_folder(self) -> Path:
        self.fetch()
        records = self.records()
        digest = self.manifest_sha256()
        # The source files are checked against the manifest only before a build: a cache that passes its own checks
        # (ensure_cache: every chunk's checksum) is already the verified pixels.
        return ensure_cache(records, self.root(), digest, self.spec, self.cache_dir, self.cache_name,
                            before_build=lambda: verify(records, self.root()))  # fmt: skip

    def prepare_data(self) -> None:
        self.cache_folder()

    def setup(self, stage: str | None = None) -> None:
        device = self._device()
        if self.stores is None:
            folder = self.cache_folder()
            records = self.records()
            classes = sorted({r.label for r in records})
            index = {label: i for i, label in enumerate(classes)}
            stores = {}
            for split in (self.train_split, self.test_split):
                labels = [index[r.label] for r in records if r.split == split]
                stores[split] = (open_split(folder, split, len(labels)), torch.tensor(labels))
            order = torch.randperm(len(stores[self.train_split][1]),
                                   generator=torch.Generator().manual_seed(self.split_seed))  # fmt: skip
            self.val_indices, self.train_indices = order[: self.val_size].sort().values, order[self.val_size :]
            train_store = stores[self.train_split][0]
            self.lighting = pca_lighting_basis(train_store, self.train_indices.numpy())
            self.normalisation = self.make_normalisation(folder, train_store)
            self.stores = stores
        if device.type == "cuda":  # the whole uint8 set lives on the GPU: batches never cross the bus
            self.stores = {split: (torch.as_tensor(np.asarray(x)).to(device), y.to(device))
                           for split, (x, y) in self.stores.items()}  # fmt: skip
            self.normalisation = self.normalisation.to(device)

    def make_normalisation(self, folder: Path, train_store) -> Normalisation:
        """The config's normalisation as (mean (3, S, S), std (3,)) on the 0–255 scale (see the module's docstring)."""
        size = train_store.shape[-1]
        if self.normalisation_name == "mean-image":  # the training images only: never the held-out or test ones
            mean = cached_mean_image(folder, self.train_split, train_store, self.train_indices.numpy())
            return Normalisation(torch.from_numpy(mean), torch.ones(3))
        mean = (torch.tensor(TORCHVISION_MEAN) * 255.0).view(3, 1, 1).expand(3, size, size).contiguous()
        return Normalisation(mean, torch.tensor(TORCHVISION_STD) * 255.0)

    def _rank(self):
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _device(self) -> torch.device:
        if self.trainer is not None:
            return self.trainer.strategy.root_device
        return self.device or torch.device("cpu")

    def train_dataloader(self):
        store, labels = self.stores[self.train_split]
        rank, world = self._rank()
        trainer = self.trainer
        return AugmentedBatches(
            store, labels, self.train_indices, self.batch_size, self.crop_size, seed=self.seed,
            epoch=(lambda: trainer.current_epoch) if trainer is not None else (lambda: 0),
            lighting=self.lighting, lighting_std=self.lighting_std, normalisation=self.normalisation,
            device=self._device(), rank=rank, world_size=world,
        )  # fmt: skip

    def val_dataloader(self):
        """The centre crop of the held-out images: checkpoint selection and the plateau schedule (cheap)."""
        store, labels = self.stores[self.train_split]
        return EvalBatches(store, labels, self.val_indices, self.eval_batch_size, self._device(), *self._rank(),
                           crop_size=self.crop_size, normalisation=self.normalisation)  # fmt: skip

    def test_dataloader(self):
        """The centre crop of the test images, for ``trainer.test``; the task's evaluation uses the ten crops."""
        store, labels = self.stores[self.test_split]
        return EvalBatches(store, labels, torch.arange(len(labels)), self.eval_batch_size, self._device(),
                           *self._rank(), crop_size=self.crop_size, normalisation=self.normalisation)  # fmt: skip

    def ten_crop_dataloader(self) -> TenCropBatches:
        """The test images as AlexNet §4.1's ten views each (bare tensors, for ``trainer.predict``), with ``labels``."""
        store, labels = self.stores[self.test_split]
        rank, world = self._rank()
        return TenCropBatches(
            store, labels, torch.arange(len(labels)), max(1, self.eval_batch_size // TenCropBatches.views),
            self._device(), self.crop_size, self.normalisation, rank, world,
        )  # fmt: skip

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        first = batch if isinstance(batch, torch.Tensor) else batch[0]
        return batch if first.device == device else super().transfer_batch_to_device(batch, device, dataloader_idx)


class ExampleImageSet:
    """Mixed in before an image set's class: the example's folder and manifest instead of the set's own."""

    example_root: Path
    example_manifest: Path
    cache_name = "example"

    def root(self) -> Path:
        return self.example_root

    def fetch(self) -> None:
        pass

    def manifest_file(self) -> Path:
        return self.example_manifest

    def identity(self) -> dict[str, str]:
        return {"example/manifest": "sha256:" + self.manifest_sha256()}


def write_example_images(root: Path, per_class: dict[str, int], classes: int = 10, size: int = 48) -> None:
    """``root/<split>/n0000000k/<i>.JPEG``: random-noise images (a fixed seed), ``per_class[split]`` per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in per_class.items():
        for k in range(classes):
            label = root / split / f"n{k:08d}"
            label.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(label / f"{i}.JPEG", quality=90)
