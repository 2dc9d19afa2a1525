"""LeNet-5 as people train it today (open division): ReLU, max-pooling, softmax cross-entropy, Adam, cosine decay.

The architecture follows Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-Based Learning Applied to Document
Recognition", Proceedings of the IEEE 86(11), 2278-2324 (1998): conv 6@5×5 → pool → conv 16@5×5 → pool → 120 → 84 →
10, but with the modern defaults that replace the paper's choices: ReLU for the scaled tanh, 2×2 max-pooling for
trainable subsampling, a full 6→16 connection for Table I, a linear softmax output with cross-entropy for the RBF
layer, PyTorch's default initialisation, and Adam (Kingma & Ba 2015) with a cosine learning-rate decay.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.base import Classifier


class LeNet5Modern(Classifier):
    def __init__(
        self,
        num_classes: int = 10,
        input_shape: tuple[int, ...] = (1, 28, 28),
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        mean: float = 0.1307,  # MNIST's pixel mean and std, for input standardisation
        std: float = 0.3081,
    ) -> None:
        super().__init__(num_classes)
        self.save_hyperparameters()
        channels = input_shape[0]
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, 6, 14, 14)
            nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),  # (B, 16, 5, 5)
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (B, 400)
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),  # (B, C) logits
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[-1](self.embed(x))  # (B, C) logits

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] → the 84 penultimate ReLU features (the generative tasks score samples in them)."""
        if x.shape[-2:] != (28, 28):  # smaller digit sets are scaled to MNIST's size
            x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
        x = (x - self.hparams.mean) / self.hparams.std
        return self.classifier[:-1](self.features(x))  # (B, 84)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x).float(), y.long())
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.trainer.max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
