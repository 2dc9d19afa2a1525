"""A LightningDataModule for JPEG image sets named by a manifest, decoded once into a cache (``imagecache``).

Subclasses say where the files are (``root``), which they are (``records`` and ``manifest_sha256``) and how to get them
(``fetch``, the only place that may download). This class verifies the files against the manifest before the cache is
built, holds out a fixed validation split of the training images, and hands out batches: augmented crops for
training, whole stored images for evaluation (the model takes the centre crop or ten crops).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch

from benchmarks import paths
from benchmarks.tasks.imagecache import (
    AugmentedBatches,
    CacheSpec,
    EvalBatches,
    cache_path,
    ensure_cache,
    open_split,
    pca_lighting_basis,
)
from benchmarks.tasks.manifest import ImageRecord, read_manifest, sha256_file, verify


class ImageSetData(L.LightningDataModule):
    cache_name = "images"  # the cache folder's prefix
    storage_size = 256  # AlexNet §2: images are stored at 256×256
    crop_size = 224  # training crops
    val_size = 500  # training images held out for model selection and the plateau schedule
    split_seed = 0  # fixed: every run validates on the same images
    train_split, test_split = "train", "val"
    lighting_std = 0.1  # AlexNet §4.1: α ~ N(0, 0.1)
    eval_batch_size = 200

    def __init__(self, data_dir: Path | None, batch_size: int, seed: int = 0, download: bool = True,
                 cache_dir: Path | None = None) -> None:  # fmt: skip
        super().__init__()
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.batch_size, self.seed, self.download = batch_size, seed, download
        self.cache_dir = Path(cache_dir) if cache_dir is not None else paths.cache_dir()
        self.stores: dict | None = None
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
        folder = cache_path(self.cache_dir, self.cache_name, self.spec, digest)
        if not (folder / "meta.json").exists():
            verify(records, self.root())  # only before a build: a finished cache is already the verified pixels
            ensure_cache(records, self.root(), digest, self.spec, self.cache_dir, self.cache_name)
        return folder

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
            self.stores = stores
        if device.type == "cuda":  # the whole uint8 set lives on the GPU: batches never cross the bus
            self.stores = {split: (torch.as_tensor(np.asarray(x)).to(device), y.to(device))
                           for split, (x, y) in self.stores.items()}  # fmt: skip

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
            lighting=self.lighting, lighting_std=self.lighting_std, device=self._device(), rank=rank, world_size=world,
        )  # fmt: skip

    def val_dataloader(self):
        store, labels = self.stores[self.train_split]
        return EvalBatches(store, labels, self.val_indices, self.eval_batch_size, self._device(), *self._rank())

    def test_dataloader(self):
        store, labels = self.stores[self.test_split]
        return EvalBatches(
            store, labels, torch.arange(len(labels)), self.eval_batch_size, self._device(), *self._rank()
        )

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch if batch[0].device == device else super().transfer_batch_to_device(batch, device, dataloader_idx)
