"""Truth tables of AND, OR, NOT and XOR: the task on which McCulloch & Pitts's threshold logic is checked.

Every split is the full truth table (there is nothing to generalise to): inputs (x1, x2) ∈ {0, 1}², targets the four
gates' outputs, NOT taken of x1. The metric is the percentage of wrong truth-table entries; exact logic scores 0.
"""

from __future__ import annotations

import hashlib
import json

import lightning as L
import torch

from benchmarks.tasks.base import DataIdentity, Metric, Task
from benchmarks.tasks.interfaces import CLASS_SCORES
from benchmarks.tasks.loader import TensorBatches

GATES = ("AND", "OR", "NOT", "XOR")
INPUTS = [(0, 0), (0, 1), (1, 0), (1, 1)]
TRUTH = {
    "AND": [a & b for a, b in INPUTS],
    "OR": [a | b for a, b in INPUTS],
    "NOT": [1 - a for a, _ in INPUTS],
    "XOR": [a ^ b for a, b in INPUTS],
}


class LogicGatesData(L.LightningDataModule):
    def __init__(self, data_dir=None, batch_size: int = 4, seed: int = 0, download: bool = False):
        super().__init__()
        self.batch_size, self.seed = batch_size, seed
        self.x = torch.tensor(INPUTS, dtype=torch.uint8)  # (4, 2)
        self.y = torch.tensor([TRUTH[g] for g in GATES], dtype=torch.uint8).T  # (4, 4): row = input, column = gate

    @classmethod
    def example(cls, folder, batch_size: int, seed: int = 0) -> LogicGatesData:
        """The truth tables are small enough to be their own example."""
        return cls(None, batch_size, seed)

    @classmethod
    def declared_identity(cls) -> DataIdentity:
        """The truth tables are this module's constants: their checksum is computed from the code."""
        table = json.dumps({"inputs": INPUTS, **TRUTH}, sort_keys=True).encode()
        return DataIdentity(required={"truth-tables": "sha256:" + hashlib.sha256(table).hexdigest()})

    def identity(self) -> dict[str, str]:
        return dict(self.declared_identity().required)

    def _batches(self):
        return TensorBatches(self.x, self.y, self.batch_size, shuffle=False, scale=1.0)

    train_dataloader = val_dataloader = test_dataloader = _batches


TASKS = [
    Task(
        name="logic-gates",
        description="truth tables of AND, OR, NOT and XOR (4 input rows each)",
        metric=Metric("error", "min", 0.0, 100.0, unit="%"),
        target=0.0,
        min_seeds=1,
        interface=CLASS_SCORES,
        make_datamodule=LogicGatesData,
        model_inputs={},
        bundled=True,
        protocol="all 16 truth-table entries; % wrong",
    )
]
