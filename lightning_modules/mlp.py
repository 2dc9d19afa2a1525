"""The back-propagation multi-layer perceptron (1986): logistic units, squared error, gradient descent with momentum.

D. E. Rumelhart, G. E. Hinton and R. J. Williams, "Learning representations by back-propagating errors",
Nature 323, 533-536 (1986).

Faithful points: logistic (sigmoid) hidden and output units; the error E = ½ Σ_c (y_c − d_c)² against 0/1 targets;
the update Δw(t) = −ε ∂E/∂w + α Δw(t−1) (PyTorch's SGD momentum is the same recursion); small uniform random initial
weights to break symmetry. The paper's examples are tiny; the MNIST recipe (784-300-10) is LeCun et al. (1998)'s
"2-layer NN, 300 hidden units, mean square error", reported at 4.7 % test error.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lightning_modules.base import Classifier, one_hot


class BackpropMLP(Classifier):
    def __init__(
        self,
        num_classes: int = 10,
        input_shape: tuple[int, ...] = (1, 28, 28),
        hidden: int = 300,
        lr: float = 0.04,  # ε
        momentum: float = 0.9,  # α
        init_range: float = 0.1,  # weights ~ U(−r, r)
    ) -> None:
        super().__init__(num_classes)
        self.save_hyperparameters()
        self.hidden = nn.Linear(math.prod(input_shape), hidden)
        self.output = nn.Linear(hidden, num_classes)
        for layer in (self.hidden, self.output):
            nn.init.uniform_(layer.weight, -init_range, init_range)
            nn.init.uniform_(layer.bias, -init_range, init_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.sigmoid(self.hidden(x.flatten(1)))  # (B, hidden)
        return torch.sigmoid(self.output(h))  # (B, C) output activations in (0, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        targets = one_hot(y, self.hparams.num_classes)
        loss = 0.5 * (self(x).float() - targets).pow(2).sum(1).mean()  # E per pattern, averaged over the batch
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum)
