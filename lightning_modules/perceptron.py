"""Rosenblatt's perceptron (1958): a retina of S-points, fixed random association units (A), trained responses (R).

F. Rosenblatt, "The Perceptron: A Probabilistic Model for Information Storage and Organization in the Brain",
Psychological Review 65(6), 386-408 (1958). The paper's text could not be consulted while this file was written; the
points below follow it as remembered, and the ones that could not be checked say so.

The machine, as the paper's "Organization of a Perceptron" lays it out:

- S-points (the retina) respond all-or-nothing: a pixel is on when its grey level is at least ``retina_threshold``.
- Each A-unit has ``excitatory`` + ``inhibitory`` origin points drawn at random from the retina (a different draw per
  unit, from the global torch generator, which the harness seeds with the run's seed). It fires, all-or-nothing, when
  the algebraic sum of its excitatory (+1) and inhibitory (-1) inputs is equal to or greater than its threshold θ.
  These connections never learn: they are a buffer, not a Parameter. The paper's projection area (A_I, origin points
  clustered around a centre) is omitted: origin points are spread over the whole retina.
- The responses R_1 … R_C are mutually exclusive; the dominant one is the response whose active inputs carry the
  largest total value (the paper's sum-discriminating, Σ-, system). Ties go to the lowest-numbered response.
- What learns is the value of the A → R connections. α-system ("uncompensated gain"): a reinforcement changes the value
  of every active A-unit's connection by one unit and the change is kept; inactive units are untouched (nothing is
  taken from them, as in the γ-system). Bivalent: values may become negative, and reinforcement is positive or
  negative (the paper's "Bivalent Systems").

Not the 1958 paper (the config lists these as deviations):

- When reinforcement is applied: only after a wrong response, and then the correct response's connections from the
  active A-units gain one unit and the wrongly dominant response's lose one. This is the error-correction procedure of
  Rosenblatt's later work (the 1960 convergence report; Principles of Neurodynamics, 1962). The 1958 paper's learning
  curves are for reinforcement on every stimulus (the correct response forced).
- Every A-unit feeds every response, and each A → R connection carries its own value. In the 1958 paper the value is
  a property of the A-unit and each response has its own source-set of A-units.

Values start at zero and are whole numbers, held in float64 so that the sums stay exact.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lightning_modules.base import Classifier


class Perceptron(Classifier):
    def __init__(
        self,
        num_classes: int = 10,
        input_shape: tuple[int, ...] = (1, 28, 28),
        association_units: int = 8000,
        excitatory: int = 5,
        inhibitory: int = 5,
        threshold: int = 2,
        retina_threshold: float = 0.5,
    ) -> None:
        super().__init__(num_classes)
        self.save_hyperparameters()
        self.automatic_optimization = False  # reinforcement of values, not gradient descent
        retina = math.prod(input_shape)
        origins_per_unit = excitatory + inhibitory
        if not 0 < origins_per_unit <= retina:
            raise ValueError(f"{origins_per_unit} origin points per A-unit on a retina of {retina} S-points")

        # S → A: each A-unit's origin points are distinct S-points, the first `excitatory` of them +1, the rest -1
        origins = torch.rand(association_units, retina).argsort(dim=1)[:, :origins_per_unit]  # (N_A, x+y)
        signs = torch.tensor([1.0] * excitatory + [-1.0] * inhibitory)  # (x+y,)
        connections = torch.zeros(association_units, retina)
        connections.scatter_(1, origins, signs.expand(association_units, -1))
        self.register_buffer("connections", connections.T.contiguous())  # (D, N_A), fixed: never reinforced
        # A → R: the values, one per connection, learned
        self.register_buffer("values", torch.zeros(num_classes, association_units, dtype=torch.float64))  # (C, N_A)

    def associate(self, x: torch.Tensor) -> torch.Tensor:
        """The A-units that fire for each stimulus: (B, N_A) of 0/1."""
        with torch.autocast(self.device.type, enabled=False):  # small whole numbers: exact in any precision
            retina = (x.flatten(1).float() >= self.hparams.retina_threshold).float()  # (B, D) S-points on/off
            excitation = retina @ self.connections  # (B, N_A) excitatory minus inhibitory inputs
            return (excitation >= self.hparams.threshold).to(torch.float64)  # (B, N_A) all-or-nothing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.associate(x) @ self.values.T  # (B, C) total value reaching each response

    def training_step(self, batch, batch_idx):
        x, y = batch
        active = self.associate(x)  # (B, N_A)
        update = self._reinforce_cpu if self.device.type == "cpu" else self._reinforce
        mistakes = update(active, y)
        error = torch.as_tensor(mistakes / len(y), dtype=torch.float32, device=self.device)
        self.log("train/mistakes", error, prog_bar=True)
        return error

    def _reinforce(self, active: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Error correction, one stimulus after another: each sees the values the previous one left."""
        mistakes = torch.zeros((), device=self.device)
        for a_i, c in zip(active, labels):
            response = torch.argmax(self.values @ a_i)  # the dominant response (first on a tie)
            wrong = (response != c).to(torch.float64)  # 1 when the response is wrong: no branch, no host sync
            self.values[c] += wrong * a_i  # the correct response's active connections gain a unit
            self.values[response] -= wrong * a_i  # the wrongly dominant response's lose one
            mistakes += wrong
        return mistakes

    def _reinforce_cpu(self, active: torch.Tensor, labels: torch.Tensor) -> int:
        """The same rule through NumPy views of the same memory (a tiny op costs ~1 µs there, ~20 µs in torch)."""
        values, actives = self.values.numpy(), active.numpy()  # views: changes land in the buffer
        mistakes = 0
        for a_i, c in zip(actives, labels.tolist()):
            response = int(np.argmax(values @ a_i))  # (C,) totals → the dominant response
            if response != c:
                values[c] += a_i
                values[response] -= a_i
                mistakes += 1
        return mistakes

    def configure_optimizers(self):
        return None
