"""AlexNet (2012) as published: two-tower grouped convolutions, local response normalisation, overlapping pooling.

A. Krizhevsky, I. Sutskever and G. E. Hinton, "ImageNet Classification with Deep Convolutional Neural Networks",
NIPS 25 (2012). Reported on full ImageNet: ILSVRC-2010 test top-1 / top-5 error 37.5 % / 17.0 %; ILSVRC-2012
validation top-5 error 18.2 % for one network. Those are 1000-class numbers, not comparable with a 10-class subset.

Faithful points (section numbers are the paper's):
- conv1 96@11×11 stride 4 → ReLU → LRN → max-pool 3×3 stride 2 (overlapping, §3.4) → conv2 256@5×5 in two groups →
  ReLU → LRN → pool → conv3 384@3×3 (connected across both towers) → conv4 384@3×3 and conv5 256@3×3 in two groups →
  pool → FC6 4096 → FC7 4096 → FC8 (one unit per class) with softmax (§3.5, Fig. 2). The two groups are the paper's
  two-GPU split: a grouped layer sees only the kernel maps of its own tower (§3.2), so one device computes exactly
  the two GPUs' function.
- ReLU everywhere (§3.1); LRN b = a / (k + α Σ a²)^β over n = 5 adjacent maps, k = 2, α = 1e-4, β = 0.75 (§3.3),
  the sum clipped at map 0 and N − 1 with N all the layer's kernels as §3.3 writes it, written out below with its
  gradient (PyTorch's ``nn.LocalResponseNorm`` divides α by n, and is 2× slower on CPU).
- dropout 0.5 on the outputs of FC6 and FC7 (§4.2);
- weights N(0, 0.01); biases 1 in conv2, conv4, conv5, FC6, FC7 and 0 elsewhere (§5);
- SGD, batch 128, momentum 0.9, weight decay 5e-4, learning rate 0.01 divided by 10 "when the validation error rate
  stopped improving" (§5). The paper divided by hand and gives no count of epochs; here ``ReduceLROnPlateau`` does
  it with PyTorch's meaning of ``patience``: an epoch whose validation error is not a new best (relative threshold
  1e-4) is a bad epoch, and the rate is divided when the bad epochs in a row exceed ``lr_patience`` — with the
  default 2, at the end of the third. The validation error of a few hundred held-out images moves by several points
  from one epoch to the next, so two bad epochs are not yet a plateau.
- input (§2) and test (§4.1) are the data's and the task's, never this file's: the model is fed 224×224 crops of raw
  0-255 RGB minus the training set's mean image (the data module's ``normalisation: mean-image``, named in the
  entry's config), and the task averages the softmax of ten crops per test image (four corners and centre, and their
  mirror images). Random 224 crops of 256-pixel images, horizontal flips and PCA lighting noise (§4.1) are applied
  to whole batches by the data module.

Deviations (the entry's config lists each with its reason, with those of data, budget and protocol):
- conv1 is padded by 2 so that a 224 input gives the 55×55 maps of Fig. 2 (the paper's 224 and 55 are inconsistent
  without padding).
- dropout is PyTorch's inverted dropout: kept units are scaled by 2 while training and nothing at test, where §4.2
  keeps them as they are and multiplies the outputs by 0.5 at test. Mapping W = 2 W' makes the two networks the same
  function in training and at test, and then SGD on W' is SGD on W with 4× the learning rate: ours trains like the
  paper's network with FC7's and FC8's weights initialised at N(0, 0.02) and updated 4× faster (same decay rate).
- PyTorch's SGD folds weight decay and momentum as v ← 0.9 v + g + 5e-4 w, w ← w − ε v; the paper's
  v ← 0.9 v − 5e-4 ε w − ε g, w ← w + v is the same update while ε is constant, and differs for a few steps after a
  division of ε (the velocity then holds gradients scaled by the old rate in the paper's form, by the new in ours).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.base import Classifier


class AlexNet(Classifier):
    def __init__(
        self,
        num_classes: int = 1000,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        lr_factor: float = 0.1,
        lr_patience: int = 2,  # PyTorch's meaning: divide after lr_patience + 1 epochs in a row without a new best
        dropout: float = 0.5,
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, 224, 224) crops, normalised by the data module → (B, C) logits."""
        return self.classifier(self.features(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x).float(), y.long())
        self.log("train/loss", loss, prog_bar=True)
        return loss

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
        if size % 2 != 1:
            raise ValueError(f"LRN size must be odd (n/2 maps on each side), not {size}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return _LocalResponseNorm.apply(a, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class _LocalResponseNorm(torch.autograd.Function):
    """The formula and its gradient written out, the window sum as three shifted additions (no (C, C) band matrix),
    computed ~32 MB of images at a time so the temporaries stay in the CPU's cache (a layer's maps are 100-150 MB at
    batch 128). Bigger pieces touch memory more; smaller ones mean more, shorter operations, which lose most when
    other processes share the cores (each waits for its slowest thread).

    The sums run in float32 at least: under bf16 autocast, k + α Σ a² in bf16 is rounded to multiples of 2⁻⁶ near
    k = 2, which drops α Σ a² below 2⁻⁷ (Σ a² < 78) altogether. Output and gradient come back in the input's dtype.
    """

    @staticmethod
    def forward(ctx, a, size, alpha, beta, k):
        a = a.contiguous(memory_format=_memory_format(a))
        d = torch.empty_like(a, dtype=_sum_dtype(a))  # k + α Σ a², kept for the backward pass
        scale = torch.empty_like(d)  # d^-β
        out = torch.empty_like(a)
        padded = _padded_buffer(a, size, fill=k / size)  # padding maps hold k/n: the window then sums to k + α Σ a²
        for rows in _chunks(a):
            x = a[rows].to(d.dtype)
            n, maps = x.shape[0], x.shape[1]
            torch.addcmul(padded.new_tensor(k / size), x, x, value=alpha, out=padded[:n, size // 2 : size // 2 + maps])
            _window_sum(padded[:n], maps, size, out=d[rows])
            _power(d[rows], -beta, out=scale[rows])
            torch.mul(x, scale[rows], out=out[rows])
        ctx.save_for_backward(a, d, scale, out)  # out: the pooling layer after it keeps it anyway
        ctx.size, ctx.alpha, ctx.beta = size, alpha, beta
        return out

    @staticmethod
    def backward(ctx, grad):
        # ∂L/∂a_j = g_j d_j^-β − 2αβ a_j Σ_{i: j in window(i)} g_i a_i d_i^(-β-1); the window is symmetric
        a, d, scale, out = ctx.saved_tensors
        size = ctx.size
        grad_a = torch.empty_like(a)
        padded = _padded_buffer(a, size, fill=0.0)
        window = torch.empty_like(padded[:, : a.shape[1]])
        for rows in _chunks(a):
            x, g = a[rows].to(d.dtype), grad[rows].to(d.dtype)
            n, maps = x.shape[0], x.shape[1]
            torch.mul(g, out[rows], out=padded[:n, size // 2 : size // 2 + maps]).div_(d[rows])  # g a d^-β / d
            inner = _window_sum(padded[:n], maps, size, out=window[:n])
            torch.addcmul(g * scale[rows], x, inner, value=-2 * ctx.alpha * ctx.beta, out=grad_a[rows])
        return grad_a, None, None, None, None


def _memory_format(a: torch.Tensor) -> torch.memory_format:
    channels_last = a.dim() == 4 and a.is_contiguous(memory_format=torch.channels_last) and not a.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def _sum_dtype(a: torch.Tensor) -> torch.dtype:
    return torch.promote_types(a.dtype, torch.float32)


def _chunks(a: torch.Tensor, elements: int = 1 << 23) -> list[slice]:
    """Slices of whole images, about ``elements`` values each (32 MB in float32)."""
    rows = max(1, elements // max(1, a[0].numel()))
    return [slice(i, i + rows) for i in range(0, a.shape[0], rows)]


def _padded_buffer(a: torch.Tensor, size: int, fill: float) -> torch.Tensor:
    """(rows, C + 2·(n//2), ...) scratch for one chunk; the n//2 maps at each end hold ``fill``."""
    rows, half = _chunks(a)[0].stop, size // 2
    shape = (min(rows, a.shape[0]), a.shape[1] + 2 * half, *a.shape[2:])
    padded = torch.empty(shape, dtype=_sum_dtype(a), device=a.device, memory_format=_memory_format(a))
    padded[:, :half] = fill
    padded[:, a.shape[1] + half :] = fill
    return padded


def _window_sum(padded: torch.Tensor, maps: int, size: int, out: torch.Tensor) -> torch.Tensor:
    """out_i = Σ_{j=i}^{i+n-1} padded_j for i < maps: sums of adjacent pairs first, so n = 5 takes 3 additions."""
    if size == 1:
        return out.copy_(padded[:, :maps])
    pairs = padded[:, :-1] + padded[:, 1:]
    terms = [pairs[:, j : j + maps] for j in range(0, size - 1, 2)] + [padded[:, size - 1 : size - 1 + maps]]
    torch.add(terms[0], terms[1], out=out)
    for term in terms[2:]:
        out.add_(term)
    return out


def _power(d: torch.Tensor, exponent: float, out: torch.Tensor) -> torch.Tensor:
    """d^exponent; the paper's -0.75 as rsqrt(d) · sqrt(rsqrt(d)), three cheap operations instead of exp and log."""
    if exponent != -0.75:
        return torch.pow(d, exponent, out=out)
    torch.rsqrt(d, out=out)
    return out.mul_(out.sqrt())
