"""Mini-batches straight from tensors held in memory (on the GPU when training there): no per-sample Python.

The order of an epoch is a pure function of (seed, epoch) and the epoch is read from the trainer at iteration time,
so a run resumed from a checkpoint sees exactly the batches an uninterrupted run would. Each rank takes its own
slice of the permutation, so the loader is correct under DDP too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class TensorBatches:
    """Iterable of ``(x, y)`` batches over ``images`` (uint8, N×C×H×W or N×D) and ``labels``.

    ``images`` are converted to float in [0, 1] a batch at a time (``scale`` divides the raw values), so the data set
    costs one byte per pixel in memory.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        epoch: Callable[[], int] = lambda: 0,
        scale: float = 255.0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, epoch
        self.scale, self.drop_last, self.rank, self.world_size = scale, drop_last, rank, world_size

    def _indices(self) -> torch.Tensor:
        n = len(self.labels)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch())
            order = torch.randperm(n, generator=generator)
            n_even = n - n % self.world_size  # every rank must take the same number of training steps
            order = order[:n_even]
        else:
            order = torch.arange(n)
        return order[self.rank :: self.world_size].to(self.labels.device)

    def __len__(self) -> int:
        n = len(self.labels)
        if self.shuffle:
            n -= n % self.world_size
        per_rank = len(range(self.rank, n, self.world_size))
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def __iter__(self):
        indices = self._indices()
        for start in range(0, len(indices), self.batch_size):
            idx = indices[start : start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                break
            yield self.images[idx].float().div_(self.scale), self.labels[idx]


class SplitLoaders:
    """The three loaders of a data module that holds ``self.splits`` {"train" | "val" | "test": (x, y)} in memory:
    training batches shuffled by (seed, epoch), evaluation batches in order, each process its own share."""

    scale = 1.0  # raw value that maps to 1.0 (TensorBatches)

    def _batches(self, split: str, train: bool) -> TensorBatches:
        x, y = self.splits[split]
        trainer = self.trainer
        return TensorBatches(
            x,
            y,
            self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            seed=self.seed,
            epoch=(lambda: trainer.current_epoch) if trainer is not None else (lambda: 0),
            scale=self.scale,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
        )

    def train_dataloader(self):
        return self._batches("train", train=True)

    def val_dataloader(self):
        return self._batches("val", train=False)

    def test_dataloader(self):
        return self._batches("test", train=False)
