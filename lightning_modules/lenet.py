"""LeNet-5 (1998) as published: scaled tanh, trainable subsampling, the C3 connection table, Euclidean RBF outputs.

Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-Based Learning Applied to Document Recognition",
Proceedings of the IEEE 86(11), 2278-2324 (1998). Reported: 0.95 % test error on MNIST without distortions (§III-C).

Faithful points (section numbers are the paper's):
- input: the 28×28 digit centred in a 32×32 field, background −0.1 and foreground 1.175 (§II-B);
- squashing f(a) = A·tanh(S·a) with A = 1.7159, S = 2/3 (Appendix A);
- S2/S4 subsampling: the sum of each 2×2 block times a trainable coefficient plus a trainable bias, then f (§II-B);
- C3: 16 maps, each connected to the subset of S2 maps given by Table I (60 of 96 connections);
- C5 (120 maps of 1×1), F6 (84 units), and an output layer of Euclidean RBF units y_i = Σ_j (x_j − w_ij)² whose
  parameters are fixed ±1 codes, stylised 7×12 bitmaps of each digit (§II-B, Fig. 3);
- the MAP loss of eq. (9): E = mean_p [ y_Dp(Z^p) + log(e^−j + Σ_i e^−y_i(Z^p)) ];
- initial weights uniform in ±2.4/F_i with F_i the fan-in (Appendix C); 20 passes over the training set.

Deviation (documented): the paper trains one example at a time with the stochastic diagonal Levenberg-Marquardt
method, whose per-parameter step is η/(μ + h_kk), with the global η schedule 5e-4 (passes 1-2), 2e-4 (3-5), 1e-4
(6-8), 5e-5 (9-12), 1e-5 (13-20) and μ = 0.02. Here the per-parameter Hessian factor 1/(μ + h_kk) is dropped: every
parameter takes the global step η per example, and the per-example gradients of a mini-batch of 16 are summed into one
step, which keeps the paper's schedule and per-example step size while making 20 passes affordable on a CPU.
(Taking the factor's upper bound 1/μ instead, i.e. steps 50× larger, saturates every unit within the first epoch.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.base import Classifier

# Table I: which S2 feature maps (rows 0-5) feed each C3 feature map (columns 0-15).
C3_TABLE = [
    {0, 1, 2}, {1, 2, 3}, {2, 3, 4}, {3, 4, 5}, {4, 5, 0}, {5, 0, 1},  # contiguous triples
    {0, 1, 2, 3}, {1, 2, 3, 4}, {2, 3, 4, 5}, {3, 4, 5, 0}, {4, 5, 0, 1}, {5, 0, 1, 2},  # contiguous quadruples
    {0, 1, 3, 4}, {1, 2, 4, 5}, {0, 2, 3, 5},  # non-contiguous quadruples
    {0, 1, 2, 3, 4, 5},  # all six
]  # fmt: skip

# Stylised 7×12 bitmaps of the digits, the RBF prototypes of Fig. 3: '#' = +1, '.' = −1 (84 = the width of F6).
DIGIT_BITMAPS = {
    0: ["..###..", ".#...#.", "#.....#", "#.....#", "#.....#", "#.....#",
        "#.....#", "#.....#", "#.....#", "#.....#", ".#...#.", "..###.."],
    1: ["...#...", "..##...", ".#.#...", "...#...", "...#...", "...#...",
        "...#...", "...#...", "...#...", "...#...", "...#...", ".#####."],
    2: [".#####.", "#.....#", "......#", "......#", ".....#.", "....#..",
        "...#...", "..#....", ".#.....", "#......", "#......", "#######"],
    3: [".#####.", "#.....#", "......#", "......#", "......#", "..####.",
        "......#", "......#", "......#", "......#", "#.....#", ".#####."],
    4: [".....#.", "....##.", "...#.#.", "..#..#.", ".#...#.", "#....#.",
        "#######", ".....#.", ".....#.", ".....#.", ".....#.", ".....#."],
    5: ["#######", "#......", "#......", "#......", "######.", "......#",
        "......#", "......#", "......#", "......#", "#.....#", ".#####."],
    6: ["..####.", ".#.....", "#......", "#......", "#.####.", "##....#",
        "#.....#", "#.....#", "#.....#", "#.....#", ".#...#.", "..###.."],
    7: ["#######", "......#", ".....#.", ".....#.", "....#..", "....#..",
        "...#...", "...#...", "..#....", "..#....", "..#....", "..#...."],
    8: [".#####.", "#.....#", "#.....#", "#.....#", ".#...#.", "..###..",
        ".#...#.", "#.....#", "#.....#", "#.....#", "#.....#", ".#####."],
    9: ["..###..", ".#...#.", "#.....#", "#.....#", "#.....#", ".#....#",
        "..#####", "......#", "......#", "......#", ".....#.", ".####.."],
}  # fmt: skip

A, S = 1.7159, 2.0 / 3.0  # f(a) = A tanh(S a): f(±1) = ±1


def squash(a: torch.Tensor) -> torch.Tensor:
    return A * torch.tanh(S * a)


def rbf_prototypes() -> torch.Tensor:
    rows = [[1.0 if c == "#" else -1.0 for line in DIGIT_BITMAPS[d] for c in line] for d in range(10)]
    return torch.tensor(rows)  # (10, 84)


class Subsampling(nn.Module):
    """S2/S4: 2×2 sum × trainable coefficient + trainable bias per map, then the squashing function."""

    def __init__(self, maps: int) -> None:
        super().__init__()
        fan_in = 4
        self.coefficient = nn.Parameter(torch.empty(maps).uniform_(-2.4 / fan_in, 2.4 / fan_in))
        self.bias = nn.Parameter(torch.empty(maps).uniform_(-2.4 / fan_in, 2.4 / fan_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        summed = F.avg_pool2d(x, 2) * 4  # (B, C, H/2, W/2)
        return squash(summed * self.coefficient.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1))


class PartialConv(nn.Conv2d):
    """C3: a 6→16 convolution whose weights are masked to Table I's connections."""

    def __init__(self) -> None:
        super().__init__(6, 16, kernel_size=5)
        mask = torch.zeros(16, 6, 1, 1)
        for out_map, inputs in enumerate(C3_TABLE):
            mask[out_map, list(inputs)] = 1.0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class LeNet5(Classifier):
    def __init__(
        self,
        num_classes: int = 10,
        input_shape: tuple[int, ...] = (1, 28, 28),
        lr_schedule: list[tuple[int, float]] = [(0, 5e-4), (2, 2e-4), (5, 1e-4), (8, 5e-5), (12, 1e-5)],  # noqa: B006
        j: float = 1.0,  # the constant of eq. (9) that keeps the competitive term from pushing forever
    ) -> None:
        super().__init__(num_classes)
        if num_classes != 10:
            raise ValueError("LeNet-5's RBF output layer has one fixed prototype per digit: num_classes must be 10")
        self.save_hyperparameters()
        self.c1 = nn.Conv2d(1, 6, kernel_size=5)  # (B, 6, 28, 28)
        self.s2 = Subsampling(6)  # (B, 6, 14, 14)
        self.c3 = PartialConv()  # (B, 16, 10, 10)
        self.s4 = Subsampling(16)  # (B, 16, 5, 5)
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)  # (B, 120, 1, 1)
        self.f6 = nn.Linear(120, 84)
        self.register_buffer("prototypes", rbf_prototypes())  # (10, 84), fixed
        for layer in (self.c1, self.c3, self.c5, self.f6):
            fan_in = layer.weight[0].numel() if layer is not self.c3 else None
            if layer is self.c3:  # fan-in differs per C3 map: 25 × number of connected S2 maps
                fan_ins = self.c3.mask.flatten(1).sum(1) * 25
                with torch.no_grad():
                    bound = (2.4 / fan_ins).view(-1, 1, 1, 1)
                    layer.weight.uniform_(-1, 1).mul_(bound)
                    layer.bias.uniform_(-1, 1).mul_(bound.flatten())
                continue
            nn.init.uniform_(layer.weight, -2.4 / fan_in, 2.4 / fan_in)
            nn.init.uniform_(layer.bias, -2.4 / fan_in, 2.4 / fan_in)

    def to_input_field(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images → the paper's 32×32 field, background −0.1 and foreground 1.175."""
        if x.shape[-2:] != (28, 28):  # other small digit sets (e.g. 8×8 `digits`) are scaled to MNIST's 28×28 first
            x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
        return F.pad(x * 1.275 - 0.1, (2, 2, 2, 2), value=-0.1)  # (B, 1, 32, 32)

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        x = self.to_input_field(x)
        x = self.s2(squash(self.c1(x)))
        x = self.s4(squash(self.c3(x)))
        x = squash(self.c5(x)).flatten(1)  # (B, 120)
        x = squash(self.f6(x)).float()  # (B, 84)
        return (x.unsqueeze(1) - self.prototypes).pow(2).sum(-1)  # (B, 10) RBF outputs y_i

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.distances(x)  # the closest prototype is the prediction

    def training_step(self, batch, batch_idx):
        x, y = batch
        dist = self.distances(x)
        j = torch.full_like(dist[:, :1], -self.hparams.j)
        competitive = torch.logsumexp(torch.cat([j, -dist], dim=1), dim=1)  # log(e^−j + Σ_i e^−y_i)
        loss_per_example = dist.gather(1, y.long().unsqueeze(1)).squeeze(1) + competitive
        self.log("train/loss", loss_per_example.mean(), prog_bar=True)
        return loss_per_example.sum()  # summed: one step ≈ the batch's per-example steps, as in online training

    def configure_optimizers(self):
        schedule = sorted(self.hparams.lr_schedule)
        optimizer = torch.optim.SGD(self.parameters(), lr=schedule[0][1])

        def factor(epoch: int) -> float:  # the global step η of the current pass, relative to the first
            return [eta for start, eta in schedule if start <= epoch][-1] / schedule[0][1]

        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor)}
