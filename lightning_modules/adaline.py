"""ADALINE (Widrow & Hoff 1960): adaptive linear neurons trained by the least-mean-squares (LMS) rule.

B. Widrow and M. E. Hoff, "Adaptive Switching Circuits", IRE WESCON Convention Record, part 4, 96-104 (1960).
The rule in its normalised "α-LMS" form as B. Widrow and M. A. Lehr state it in "30 Years of Adaptive Neural
Networks: Perceptron, Madaline, and Backpropagation", Proc. IEEE 78(9), 1415-1442 (1990), eq. (4).

Faithful points: each unit is a linear combiner with a bias weight on a constant input of +1; inputs are at the
Adaline's ±1 switch levels (grey levels mapped linearly onto [−1, +1]); the desired response is ±1; the error is taken
at the linear output, before the quantiser — which is what distinguishes LMS from Rosenblatt's rule, where only
mistakes count — and every example moves the weights by ``α·ε·x / |x|²``, online, one example at a time. Weights start
at zero. Widrow & Lehr give 0.1 < α < 1 as the practical range; α = 0.1 is its conservative end.
Ten units, one per class (one-vs-rest, each a 1960 Adaline), read out by the largest linear output.
Reference on MNIST: a linear classifier has 12.0 % test error (LeCun et al. 1998, trained otherwise).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lightning_modules.base import Classifier, one_hot


class Adaline(Classifier):
    def __init__(self, num_classes: int = 10, input_shape: tuple[int, ...] = (1, 28, 28), alpha: float = 0.1) -> None:
        super().__init__(num_classes)
        self.save_hyperparameters()
        self.automatic_optimization = False  # the LMS rule updates the weights itself, example by example
        self.register_buffer("weight", torch.zeros(num_classes, math.prod(input_shape) + 1))  # (C, D+1), bias last

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1).float() * 2 - 1  # [0, 1] grey → [−1, +1] switch levels
        return torch.cat([x, x.new_ones(len(x), 1)], dim=1)  # (B, D+1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._inputs(x) @ self.weight.T  # (B, C) linear outputs

    def training_step(self, batch, batch_idx):
        x, y = batch
        with torch.autocast(self.device.type, enabled=False):  # the rule is plain fp32 arithmetic
            inputs = self._inputs(x)  # (B, D+1)
            targets = one_hot(y, self.hparams.num_classes, low=-1.0, high=1.0)  # (B, C) desired responses
            update = self._lms_cpu if self.device.type == "cpu" else self._lms
            squared_error = update(inputs, targets)
        mse = torch.as_tensor(squared_error / inputs.numel(), dtype=torch.float32, device=self.device)
        self.log("train/mse", mse, prog_bar=True)  # mean ε² over the step's examples and units, before each update
        return mse

    def _lms(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """α-LMS, one example after another: each update sees the weights the previous one left."""
        total = torch.zeros((), device=self.device)
        for x_i, d_i in zip(inputs, targets):
            error = d_i - self.weight @ x_i  # (C,) ε at the linear output
            self.weight.addr_(error, x_i, alpha=self.hparams.alpha / float(x_i @ x_i))  # w += α ε xᵀ / |x|²
            total += error.square().sum()
        return total

    def _lms_cpu(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        """The same rule through NumPy views of the same memory (tiny ops cost ~1 µs there, ~20 µs in torch)."""
        weight, xs, ds = self.weight.numpy(), inputs.numpy(), targets.numpy()  # views: updates land in the buffer
        alpha = np.float32(self.hparams.alpha)
        total = 0.0
        for x_i, d_i in zip(xs, ds):
            error = d_i - weight @ x_i  # (C,)
            weight += np.outer(error * (alpha / (x_i @ x_i)), x_i)  # w += α ε xᵀ / |x|²
            total += float(error @ error)
        return total

    def configure_optimizers(self):
        return None
