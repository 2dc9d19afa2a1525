"""Spoken digits as a classification task (``fsdd-digits``): which digit does a recording say?

The same recordings, checks and split as the ``fsdd`` likelihood task (``fsdd.py``'s ``SpokenDigitData``): takes 0–4
of every (digit, speaker) are the test set (300), takes 5–9 validate (300), takes 10–49 train (2,400). Each recording
is heard as the WaveNet task's samples are: μ-law encoded and decoded (256 levels, so a classifier trained here hears
generated clips with the same quantisation), as float in [-1, 1] at the start of a fixed window of ``WINDOW`` = 8,000
samples (1 s at 8 kHz), zero-padded; the few longer recordings are cut at 8,000 (20 of the 3,000 in v1.0.10: 14
training, 4 validation, 2 test; the longest lasts 2.3 s). Batches are ``(x, y)``: (B, 1, 8000) and the digits.

The metric is the test error (%) of the best-validation checkpoint. The suite trains its spoken-digit judge here
(``milestones feature-net fsdd-digits``: the ``m5`` entry), which ``benchmarks/tasks/heard_digits.py`` uses to say
how often a generated clip of digit d is heard as d.
"""

from __future__ import annotations

import torch

from benchmarks.tasks.base import Metric, Task
from benchmarks.tasks.fsdd import SpokenDigitData
from benchmarks.tasks.interfaces import CLASS_SCORES
from benchmarks.tasks.loader import SplitLoaders
from benchmarks.tasks.spoken_digits import WINDOW, mu_law_decode, windows


class SpokenDigitClasses(SplitLoaders, SpokenDigitData):
    """FSDD's recordings as (window, digit) pairs, held in memory (on the GPU when training there)."""

    window = WINDOW
    # each process's loaders take their own share (TensorBatches, by the trainer's rank), as in inmemory.py
    shards_by_rank = True

    def __init__(self, data_dir, batch_size: int, seed: int = 0, download: bool = True, eval_batch_size: int = 100):
        super().__init__(data_dir, batch_size, seed, download, eval_batch_size=eval_batch_size)
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
        self.cut: dict[str, int] = {}  # recordings longer than the window, per split

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)  # reads and checks every recording; μ-law ids per split
        if self.splits is None:
            splits = {}
            for split, clips in self.clips.items():
                x = windows([mu_law_decode(c.ids.long()) for c in clips], self.window)  # (N, 1, 8000)
                y = torch.tensor([c.digit for c in clips], dtype=torch.long)  # (N,)
                splits[split] = (x, y)
                self.cut[split] = sum(len(c.ids) > self.window for c in clips)
            self.splits = splits
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        self.splits = {name: (x.to(device), y.to(device)) for name, (x, y) in self.splits.items()}

    def batch_units(self, batch) -> int:
        return len(batch[1])  # recordings

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch if batch[0].device == device else super().transfer_batch_to_device(batch, device, dataloader_idx)


TASKS = [
    Task(
        name="fsdd-digits",
        description="Free Spoken Digit Dataset v1.0.10 (8 kHz, μ-law): which digit a recording says, 10 classes",
        metric=Metric("error", "min", 0.0, 100.0, unit="%"),
        target=10.0,  # validation error, for time-to-target
        min_seeds=3,
        interface=CLASS_SCORES,
        make_datamodule=SpokenDigitClasses,
        model_inputs={"num_classes": 10, "input_shape": (1, WINDOW)},
        protocol=(
            "takes 0–4 test (the dataset's split), 5–9 validate, 10–49 train; 8 kHz, μ-law quantised, in a 1-s window "
            "(zero-padded, longer recordings cut); best-val checkpoint tested once; test error %"
        ),
        throughput_unit="recordings",
    )
]
