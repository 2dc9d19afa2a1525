"""M5: a fully convolutional network on raw waveforms (open division; the suite's judge of spoken digits).

W. Dai, C. Dai, S. Qu, J. Li and S. Das, "Very Deep Convolutional Neural Networks for Raw Waveforms", ICASSP 2017
(arXiv:1610.00087). §2 and Table 1 build networks of 3 to 34 weight layers on 8 kHz waveforms; M5 is the one with
4 convolutional layers:

- §2.1 a large receptive field and stride in the first layer, [80/4, 128] (80 samples = 10 ms at 8 kHz, like a bank
  of band-pass filters), then receptive fields of 3 only, and the resolution cut by max-pooling (×4) after every
  convolution, the feature maps doubling as the time axis shrinks (128 → 256 → 512);
- §2.2 fully convolutional: no fully connected layers and no dropout; a global average pooling over time turns the
  last feature maps into one vector, and a linear softmax layer reads the classes from it;
- §2.3 batch normalisation after every convolution, before the ReLU;
- §3 Adam, weight decay 1e-4 (L2 on the weights), cross-entropy.

Here it serves as the fixed classifier that hears generated spoken digits (``benchmarks/tasks/heard_digits.py``):
``embed`` returns the pooled 512 features (the ``Embedding`` interface), ``forward`` the 10 digit logits. The
convolutions of kernel 3 are padded by 1, as Table 1's output lengths (2000, 500, 125, 32) imply for every layer; the
first layer here is not (a deviation its config lists).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.base import Classifier


def conv_block(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """conv → BN → ReLU → max-pool ×4 (§2.1, §2.3)."""
    padding = 0 if stride > 1 else kernel // 2  # the first layer's 80/4 is unpadded; kernel 3 keeps the length
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),  # BN's shift replaces the bias
        nn.BatchNorm1d(c_out),
        nn.ReLU(),
        nn.MaxPool1d(4),
    )


class M5(Classifier):
    """M5 of Dai et al. 2017 (Table 1): [80/4, 128] · [3, 128] · [3, 256] · [3, 512], each followed by BN, ReLU and a
    max-pool of 4; global average pooling; a linear layer to the classes. 0.56 M parameters for 10 classes."""

    def __init__(
        self,
        num_classes: int = 10,
        input_shape: tuple[int, ...] = (1, 32000),  # the paper's 4-s clips at 8 kHz; any length works (global pooling)
        channels: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        cosine: bool = False,  # decay the learning rate to 0 over the budget (the paper does not say it does)
    ) -> None:
        super().__init__(num_classes)
        self.save_hyperparameters()
        self.num_features = 4 * channels
        self.features = nn.Sequential(  # shapes for an 8,000-sample input (1 s at 8 kHz)
            conv_block(input_shape[0], channels, 80, stride=4),  # (B, 128, 1981) → pool (B, 128, 495)
            conv_block(channels, channels, 3),  # (B, 128, 495) → pool (B, 128, 123)
            conv_block(channels, 2 * channels, 3),  # (B, 256, 123) → pool (B, 256, 30)
            conv_block(2 * channels, 4 * channels, 3),  # (B, 512, 30) → pool (B, 512, 7)
        )
        self.classifier = nn.Linear(4 * channels, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) waveforms in [-1, 1] → (B, 512) features, the time-averaged last feature maps (§2.2)."""
        return self.features(x).mean(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))  # (B, C) logits

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x).float(), y.long())
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if not self.hparams.cosine:
            return optimizer
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.trainer.max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
