"""A LightningDataModule for small image sets held whole in memory as uint8 tensors (on the GPU when training there).

Subclasses say how to get the files (``prepare_data``, the only place that may download) and how to decode them
(``load_splits``). This class adds the fixed validation split and the device placement; SplitLoaders (loader.py)
the batch iterators.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from benchmarks.tasks.loader import SplitLoaders


class InMemoryImageData(SplitLoaders, L.LightningDataModule):
    image_shape: tuple[int, ...] = (1, 28, 28)  # (C, H, W) of one image, as stored
    num_classes = 10
    scale = 255.0  # raw value that maps to 1.0
    val_size = 5_000  # images held out of the training set for model selection
    split_seed = 0  # fixed: every run, entry and machine validates on the same images
    shuffle_split = True  # False: the last ``val_size`` training images validate, in file order
    # each process's loaders take their own share (TensorBatches, by the trainer's rank); under DDP the harness sets
    # ``batch_size`` to the share of the global batch (running/distributed.py)
    shards_by_rank = True

    def __init__(
        self, data_dir: Path | None, batch_size: int, seed: int = 0, download: bool = True, eval_batch_size=1000
    ):
        super().__init__()
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.batch_size, self.seed, self.download = batch_size, seed, download
        self.eval_batch_size = eval_batch_size
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None

    # --- what a subclass provides -------------------------------------------------------------------------------
    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Return {"train": (images, labels), "test": (images, labels)}; images uint8 (N, C, H, W) or (N, D)."""
        raise NotImplementedError

    def identity(self) -> dict[str, str]:
        """Checksums that name exactly which data a result used, e.g. {"MNIST/raw/...gz": "md5:..."}."""
        raise NotImplementedError

    @classmethod
    def example(cls, folder: Path, batch_size: int, seed: int = 0, **init_args) -> InMemoryImageData:
        """The task's tiny example: random images of this set's shape and scale and random labels (96 training, of
        which 16 validate, and 32 test), through the same splitting, placement and batches. Nothing is written."""
        example = type(f"Example{cls.__name__}", (ExampleImages, cls), {"val_size": 16})
        return example(None, batch_size, seed, download=False, **init_args)

    # --- shared machinery ---------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            splits = self.load_splits()
            images, labels = splits["train"]
            n = len(labels)
            if self.shuffle_split:
                order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
            else:
                order = torch.cat([torch.arange(n - self.val_size, n), torch.arange(n - self.val_size)])
            val, train = order[: self.val_size], order[self.val_size :]
            splits = {
                "train": (images[train], labels[train]),
                "val": (images[val], labels[val]),
                "test": splits["test"],
            }
            self.splits = {name: (x.contiguous(), y.long()) for name, (x, y) in splits.items()}
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        self.splits = {name: (x.to(device), y.to(device)) for name, (x, y) in self.splits.items()}

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch if batch[0].device == device else super().transfer_batch_to_device(batch, device, dataloader_idx)


class ExampleImages:
    """Mixed in before an in-memory image set's class: generated splits instead of its files."""

    def prepare_data(self) -> None:
        pass

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(0)  # one example for every run: it tests code, not seeds
        high = int(self.scale) + 1

        def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            images = torch.randint(high, (n, *self.image_shape), generator=generator, dtype=torch.uint8)
            return images, torch.randint(self.num_classes, (n,), generator=generator, dtype=torch.uint8)

        return {"train": split(96), "test": split(32)}

    def identity(self) -> dict[str, str]:
        return {"example": "generated (random images and labels, seed 0)"}
