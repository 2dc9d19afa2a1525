"""The CIFAR ResNet and its plain control (He, Zhang, Ren & Sun 2015, §4.2), as one readable file.

K. He, X. Zhang, S. Ren and J. Sun, "Deep Residual Learning for Image Recognition", arXiv:1512.03385 (CVPR 2016).
§4.2 studies very deep but thin networks on 32×32 CIFAR-10 images, 6n + 2 weighted layers:

    3×3 conv, 16 filters                                          (B, 16, 32, 32)
    stage 1: 2n 3×3 convs, 16 filters on 32×32 maps               (B, 16, 32, 32)
    stage 2: 2n 3×3 convs, 32 filters on 16×16 maps               (B, 32, 16, 16)   the first conv has stride 2
    stage 3: 2n 3×3 convs, 64 filters on  8×8 maps                (B, 64,  8,  8)   the first conv has stride 2
    global average pooling, 10-way fully connected layer, softmax (B, 10)

n = 3, 9 give ResNet-20 and ResNet-56 (0.27 M and 0.85 M parameters, Table 6). Every conv is followed by batch
normalisation before its ReLU (§3.4); there is no dropout. With ``shortcuts=True`` each pair of convs is a residual
block, y = ReLU(F(x) + x), with the paper's option A shortcut (§3.3, §4.2): the identity, and where the number of
filters doubles, the input subsampled by 2 and the new channels zero: it has no parameters, so a ResNet has exactly
as many weights as the plain net of the same depth (``shortcuts=False``: the paper's control, "plain-20/56").

The recipe (§3.4, §4.2): SGD with momentum 0.9 and weight decay 1e-4, batch 128, learning rate 0.1 divided by 10 at
32k and 48k of 64k iterations, i.e. at 50 % and 75 % of the iterations: here those fractions of whatever budget the
entry gives (the trainer's total steps). Weights: He et al. 2015's initialisation ("Delving deep", N(0, 2/n), with
n = k² · output channels as in the authors' fb.resnet.torch), BN's scale 1 and shift 0.

Data (§4.2): the per-pixel mean of the training images is subtracted; training images are padded by 4 pixels on each
side and a random 32×32 crop of the padded image or its horizontal flip is taken; the test uses the single original
32×32 view. The task serves the plain images in [0, 1]; the mean and the augmentation live here, in
``on_train_start`` and ``training_step``, on whole batch tensors and drawn from torch's global RNG, so Lightning's
seeding and the harness's RNG checkpoints make them reproducible and resumable, and every entry on the task sees the
same data. The mean is subtracted before padding, so the padding is the mean image's value (zero after subtraction).

``train/error`` is the error of the training batches as they were trained on (augmented, in train mode), averaged
over the epoch: the training-error curve of Fig. 6.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.base import Classifier


class ResNetCIFAR(Classifier):
    def __init__(
        self,
        depth: int = 20,  # 6n + 2 weighted layers: 20, 32, 44, 56, 110
        shortcuts: bool = True,  # False: the plain net of the same depth (the paper's control)
        num_classes: int = 10,
        input_shape: tuple[int, ...] = (3, 32, 32),
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        lr_drops: tuple[float, ...] = (0.5, 0.75),  # fractions of the iterations: 32k and 48k of 64k
        padding: int = 4,  # augmentation: pad 4 pixels, random crop back to the input size, random flip
        channels_last: bool = True,  # memory layout only (the same numbers, faster convolutions on the CPU)
    ) -> None:
        super().__init__(num_classes)
        self.save_hyperparameters()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"depth must be 6n + 2 with n ≥ 1 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        channels = input_shape[0]
        # the per-pixel mean of the training images (§4.2), set when training starts (on_train_start); a buffer, so the
        # checkpoint that is tested carries it
        self.register_buffer("pixel_mean", torch.zeros(input_shape))
        self.stem = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)
        )  # (B, 16, 32, 32)
        stages, width = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):  # (B, 16, 32, 32) → (B, 32, 16, 16) → (B, 64, 8, 8)
            for i in range(n):
                stages.append(Block(width, planes, stride if i == 0 else 1, shortcuts))
                width = planes
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(64, num_classes)  # after global average pooling: (B, 64) → (B, C) logits
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")  # std √(2 / (9 · out))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, 32, 32) images in [0, 1], as the task serves them → (B, C) logits."""
        return self.network(self.normalise(x))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.pixel_mean  # (B, 3, 32, 32) minus the training images' per-pixel mean

    def network(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) mean-subtracted images → (B, C) logits."""
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.stages(self.stem(x))  # (B, 64, 8, 8)
        return self.fc(x.mean((2, 3)))  # global average pooling → (B, 64) → (B, C)

    # --- data: the mean image and the augmentation of §4.2 --------------------------------------------------------
    def on_train_start(self) -> None:
        """The per-pixel mean of the training split, summed over every process's share (the same mean on each).
        Its loader draws nothing from the global RNG (the data order is the task's own function of seed and epoch)."""
        total, count = torch.zeros_like(self.pixel_mean, dtype=torch.float64), torch.zeros((), dtype=torch.float64)
        for x, _ in self.trainer.train_dataloader:
            total += x.to(total.device, torch.float64).sum(0)
            count += len(x)
        total, count = self.trainer.strategy.reduce(torch.stack([*total.flatten(), count]), reduce_op="sum").split(
            [total.numel(), 1]
        )
        self.pixel_mean.copy_((total / count).view_as(self.pixel_mean))

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) mean-subtracted → each image zero-padded by p, cropped at a random (H, W) window, and
        mirrored with probability 1/2 (§4.2). Offsets and flips come from torch's global RNG."""
        b, _, h, w = x.shape
        p = self.hparams.padding
        padded = F.pad(x, (p, p, p, p))  # (B, C, H + 2p, W + 2p)
        top = torch.randint(0, 2 * p + 1, (b,), device=x.device)
        left = torch.randint(0, 2 * p + 1, (b,), device=x.device)
        flip = torch.rand(b, device=x.device) < 0.5
        rows = top[:, None] + torch.arange(h, device=x.device)  # (B, H)
        cols = left[:, None] + torch.arange(w, device=x.device)  # (B, W)
        cols = torch.where(flip[:, None], cols.flip(1), cols)  # a mirrored crop reads its columns backwards
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.network(self.augment(self.normalise(x)))  # (B, C)
        loss = F.cross_entropy(logits.float(), y.long())
        error = (logits.argmax(-1) != y).float().mean() * 100
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/error", error, on_step=False, on_epoch=True, sync_dist=True)  # Fig. 6's dashed curves
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum,
                                    weight_decay=self.hparams.weight_decay)  # fmt: skip
        steps = self.trainer.estimated_stepping_batches  # the budget's iterations; the drops at its 50 % and 75 %
        milestones = [max(1, round(fraction * steps)) for fraction in self.hparams.lr_drops]
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class Block(nn.Module):
    """Two 3×3 convs, each followed by BN; ReLU after the first, and after the sum with the shortcut (Fig. 2).
    (B, in, H, W) → (B, out, H / stride, W / stride). Without ``shortcut``, the same two layers with nothing added."""

    def __init__(self, width: int, planes: int, stride: int, shortcut: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, planes, 3, stride=stride, padding=1, bias=False)  # subsamples when stride 2
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = OptionA(width, planes, stride) if shortcut else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)  # (B, out, H', W')
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)  # y = F(x) + x: the residual learning of Eq. 1
        return F.relu(out)


class OptionA(nn.Module):
    """The parameter-free shortcut (§3.3 option A): the identity; where the block halves the maps and doubles the
    filters, every second pixel of the input (stride 2) and zero for the new channels. (B, in, H, W) → (B, out, H/s,
    W/s)."""

    def __init__(self, width: int, planes: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = planes - width, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]  # (B, in, H/2, W/2)
        if self.extra:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra))  # zeros appended as channels: (B, out, H/2, W/2)
        return x
