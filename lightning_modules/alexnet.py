"""AlexNet (2012) as published: two-tower grouped convolutions, local response normalisation, overlapping pooling.

A. Krizhevsky, I. Sutskever and G. E. Hinton, "ImageNet Classification with Deep Convolutional Neural Networks",
NIPS 25 (2012). Reported on full ImageNet: ILSVRC-2010 test top-1 / top-5 error 37.5 % / 17.0 %; ILSVRC-2012
validation top-5 error 18.2 % for one network. Those are 1000-class numbers, not comparable with a 10-class subset.

Faithful points (section numbers are the paper's):
- conv1 96@11×11 stride 4 → ReLU → LRN → max-pool 3×3 stride 2 (overlapping, §3.4) → conv2 256@5×5 in two groups →
  ReLU → LRN → pool → conv3 384@3×3 (connected across both towers) → conv4 384@3×3 and conv5 256@3×3 in two groups →
  pool → FC6 4096 → FC7 4096 → FC8 (one unit per class) with softmax (§3.5, Fig. 2). The two groups are the paper's
  two-GPU split: a grouped layer sees only the kernel maps of its own tower (§3.2).
- ReLU everywhere (§3.1); LRN b = a / (k + α Σ a²)^β over n = 5 adjacent maps, k = 2, α = 1e-4, β = 0.75 (§3.3),
  written out below with its gradient (PyTorch's ``nn.LocalResponseNorm`` divides α by n, and is 2× slower on CPU).
- dropout 0.5 on the outputs of FC6 and FC7 (§4.2);
- weights N(0, 0.01); biases 1 in conv2, conv4, conv5, FC6, FC7 and 0 elsewhere (§5);
- SGD, batch 128, momentum 0.9, weight decay 5e-4, learning rate 0.01 divided by 10 when the validation error stops
  improving (§5). The paper divided by hand; here ``ReduceLROnPlateau`` does it after ``lr_patience`` epochs without
  a new best validation error.
- input: the mean RGB value of the training set is subtracted from raw 0-255 pixel values (§2). Random 224 crops of
  256-pixel images, horizontal flips and PCA lighting noise (§4.1) are applied to whole batches by the data module.
- test: the centre crop, or optionally the average softmax of ten crops (four corners and centre, and their mirror
  images, §4.1) — ``test_crops`` is recorded with the result.

Deviation (documented): conv1 is padded by 2 so that a 224 input gives the 55×55 maps of Fig. 2 (the paper's 224 and
55 are inconsistent without padding). PyTorch's SGD folds weight decay and momentum as v ← 0.9 v + g + 5e-4 w,
w ← w − ε v; the paper's v ← 0.9 v − 5e-4 ε w − ε g is the same update while ε is constant.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_modules.base import Classifier

IMAGENET_MEAN_RGB = (123.68, 116.78, 103.94)  # mean pixel of the ILSVRC-2012 training set, 0-255 scale


class AlexNet(Classifier):
    def __init__(
        self,
        num_classes: int = 1000,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        lr_factor: float = 0.1,
        lr_patience: int = 2,
        dropout: float = 0.5,
        crop_size: int = 224,
        test_crops: Literal[1, 10] = 1,
        mean_rgb: tuple[float, float, float] = IMAGENET_MEAN_RGB,
    ) -> None:
        super().__init__(num_classes)
        self.save_hyperparameters()
        self.features = self.make_features()
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (B, 9216)
            nn.Linear(256 * 6 * 6, 4096), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),  # (B, C) logits; the softmax is in the loss
        )  # fmt: skip
        self.reset_parameters()
        self.register_buffer("mean_rgb", torch.tensor(mean_rgb).view(1, 3, 1, 1), persistent=False)
        self.val_top5 = MulticlassAccuracy(num_classes=num_classes, top_k=min(5, num_classes), average="micro")
        self.test_top5 = MulticlassAccuracy(num_classes=num_classes, top_k=min(5, num_classes), average="micro")

    def make_features(self) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=11, stride=4, padding=2), nn.ReLU(),  # (B, 96, 55, 55)
            LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0),
            nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 96, 27, 27)
            nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2), nn.ReLU(),  # (B, 256, 27, 27), 2 towers of 128
            LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0),
            nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 256, 13, 13)
            nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),  # (B, 384, 13, 13), both towers' maps
            nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2), nn.ReLU(),  # (B, 384, 13, 13)
            nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2), nn.ReLU(),  # (B, 256, 13, 13)
            nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 256, 6, 6)
        )  # fmt: skip

    def reset_parameters(self) -> None:
        """§5: every weight N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden FC layers, 0 elsewhere."""
        layers = [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        ones = {1, 3, 4, 5, 6}  # conv2, conv4, conv5, FC6, FC7 (0-based among the eight weight layers)
        for index, layer in enumerate(layers):
            nn.init.normal_(layer.weight, 0.0, 0.01)
            nn.init.constant_(layer.bias, 1.0 if index in ones else 0.0)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """x in [0, 1] (the harness's convention) → raw 0-255 values minus the training set's mean RGB (§2)."""
        return x * 255.0 - self.mean_rgb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalise(x)))  # (B, C) logits

    def predict(self, x: torch.Tensor, crops: int) -> torch.Tensor:
        """Class probabilities for evaluation images (B, 3, S, S) with S ≥ crop_size: centre crop or ten crops."""
        size = self.hparams.crop_size
        if crops == 1:
            top = (x.shape[-2] - size) // 2
            left = (x.shape[-1] - size) // 2
            return self(x[..., top : top + size, left : left + size]).float().softmax(-1)
        views = ten_crop(x, size)  # (10, B, 3, size, size)
        probabilities = torch.stack([self(view).float().softmax(-1) for view in views])
        return probabilities.mean(0)  # (B, C): §4.1 averages the softmax of the ten patches

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x).float(), y.long())
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        probabilities = self.predict(x, crops=1)  # model selection and the plateau schedule use the centre crop
        self.val_accuracy.update(probabilities, y)
        self.val_top5.update(probabilities, y)

    def test_step(self, batch, batch_idx):
        x, y = batch
        probabilities = self.predict(x, crops=self.hparams.test_crops)
        self.test_accuracy.update(probabilities, y)
        self.test_top5.update(probabilities, y)

    def on_validation_epoch_end(self):
        super().on_validation_epoch_end()
        self.log("val/top5_error", 100 - self.val_top5.compute().float() * 100)
        self.val_top5.reset()

    def on_test_epoch_end(self):
        super().on_test_epoch_end()
        self.log("test/top5_error", 100 - self.test_top5.compute().float() * 100)
        self.test_top5.reset()

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=hp.lr_factor, patience=hp.lr_patience
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/error"}}


class LocalResponseNorm(nn.Module):
    """§3.3: b_i = a_i / (k + α Σ_{j=i-n/2}^{i+n/2} a_j²)^β, the sum running over n adjacent kernel maps."""

    def __init__(self, size: int, alpha: float, beta: float, k: float) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        channels = torch.arange(a.shape[1], device=a.device)
        band = ((channels[:, None] - channels[None, :]).abs() <= self.size // 2).to(a.dtype)  # (C, C) 0/1 window
        return _LocalResponseNorm.apply(a, band, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class _LocalResponseNorm(torch.autograd.Function):
    """The window sum as a (C, C) band matrix product; the backward pass written out, so autograd keeps 3 tensors."""

    @staticmethod
    def forward(ctx, a, band, alpha, beta, k):
        window = torch.matmul((a * a).movedim(1, -1), band).movedim(-1, 1)  # (B, C, H, W): Σ a_j² over the window
        d = window.mul_(alpha).add_(k)  # k + α Σ a²
        scale = d.pow(-beta)
        ctx.save_for_backward(a, d, scale, band)
        ctx.alpha, ctx.beta = alpha, beta
        return a * scale

    @staticmethod
    def backward(ctx, grad):
        a, d, scale, band = ctx.saved_tensors
        # ∂L/∂a_j = g_j d_j^-β − 2αβ a_j Σ_{i: j in window(i)} g_i a_i d_i^(-β-1); the window is symmetric
        inner = torch.matmul((grad * a * scale / d).movedim(1, -1), band).movedim(-1, 1)
        return grad * scale - (2 * ctx.alpha * ctx.beta) * a * inner, None, None, None, None


def ten_crop(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    """The four corner crops and the centre crop of a batch (B, C, H, W), and their horizontal mirrors (§4.1)."""
    height, width = x.shape[-2:]
    top, left = (height - size) // 2, (width - size) // 2
    corners = [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size), (top, left)]
    crops = [x[..., i : i + size, j : j + size] for i, j in corners]
    return crops + [crop.flip(-1) for crop in crops]
