"""McCulloch-Pitts threshold logic (1943): fixed-weight binary neurons that compute logic, with no learning at all.

W. S. McCulloch and W. Pitts, "A Logical Calculus of the Ideas Immanent in Nervous Activity",
Bulletin of Mathematical Biophysics 5, 115-133 (1943).

A neuron fires (outputs 1) when the number of its active excitatory inputs reaches its threshold and none of its
inhibitory inputs is active: inhibition is absolute, as in the paper. AND, OR and NOT are single neurons; XOR needs
two layers, (x1 AND NOT x2) OR (x2 AND NOT x1), because no single threshold unit separates it.
"""

from __future__ import annotations

import torch
from torchmetrics.classification import BinaryAccuracy

from lightning_modules.base import Classifier


def mp_neuron(excitatory: list[torch.Tensor], inhibitory: list[torch.Tensor], threshold: int) -> torch.Tensor:
    """One McCulloch-Pitts unit over binary (B,) inputs: fires iff Σ excitatory ≥ threshold and no inhibition."""
    excitation = torch.stack(excitatory).sum(0) if excitatory else 0
    inhibited = torch.stack(inhibitory).amax(0) > 0 if inhibitory else False
    return ((excitation >= threshold) & ~torch.as_tensor(inhibited)).to(torch.uint8)


class McCullochPitts(Classifier):
    """The four gates of the ``logic-gates`` task: input (B, 2) binary, output (B, 4) = AND, OR, NOT x1, XOR."""

    def __init__(self, and_threshold: int = 2, or_threshold: int = 1) -> None:
        super().__init__(num_classes=2)
        self.save_hyperparameters()
        self.automatic_optimization = False  # nothing is learned: the weights are fixed by design

    def make_accuracy(self, num_classes: int):
        return BinaryAccuracy()  # over every truth-table entry

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x[:, 0].round().long(), x[:, 1].round().long()
        gate_and = mp_neuron([x1, x2], [], self.hparams.and_threshold)
        gate_or = mp_neuron([x1, x2], [], self.hparams.or_threshold)
        gate_not = mp_neuron([], [x1], 0)  # fires unless inhibited
        x1_only = mp_neuron([x1], [x2], 1)  # layer 1
        x2_only = mp_neuron([x2], [x1], 1)
        gate_xor = mp_neuron([x1_only, x2_only], [], 1)  # layer 2
        return torch.stack([gate_and, gate_or, gate_not, gate_xor], dim=1)  # (B, 4)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return (self(x) != y).float().mean()  # the truth-table error; nothing to update

    def configure_optimizers(self):
        return None
