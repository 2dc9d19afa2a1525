"""The generative adversarial network (2014): an MLP generator against a maxout discriminator, trained by SGD.

I. J. Goodfellow, J. Pouget-Abadie, M. Mirza, B. Xu, D. Warde-Farley, S. Ozair, A. Courville and Y. Bengio,
"Generative Adversarial Nets", NIPS 2014 (arXiv:1406.2661). The MNIST recipe is the authors' released configuration
(github.com/goodfeli/adversarial, ``mnist.yaml``, ``AdversaryCost2``), which the paper's numbers come from:

- generator: 100-d Gaussian noise → 1200 ReLU → 1200 ReLU → 784 sigmoid; weights U(−0.05, 0.05), biases 0, the
  output bias set so that sigmoid(bias) is the training pixels' mean (clipped to [1e-7, 1 − 1e-7]);
- discriminator: maxout 240 units × 5 pieces → maxout 240 × 5 → 1 sigmoid; weights U(−0.005, 0.005); dropout on
  each layer's input, keeping 0.8 of the pixels and 0.5 of the hidden units (inverted scaling, as pylearn2's
  ``input_scales`` 1.25 and 2);
- losses: D minimises ½[BCE(D(x), 1) + BCE(D(G(z)), 0)]; G minimises BCE(D(G(z)), 1), the "−log D" form the paper
  recommends in §3. Both are computed from the same minibatch and its dropout masks, and both nets take one step per
  minibatch, as ``AdversaryCost2`` does (the paper's Algorithm 1 with k = 1, made simultaneous);
- SGD, batch 100, learning rate 0.1 divided by 1.000004 after every minibatch (floor 1e-6); momentum 0.5 rising
  linearly to 0.7 between epochs 1 and 250. PyTorch's momentum (v ← μv + g, θ ← θ − ηv) equals pylearn2's
  (v ← μv − ηg, θ ← θ + v) while η is constant; with η falling by 4e-6 per step the difference is negligible.

The discriminator's sigmoid and the cross-entropy are fused (``binary_cross_entropy_with_logits``): the same function,
without the log of a rounded-to-zero probability.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.base import AdversarialGenerator


class Maxout(nn.Module):
    """A linear map to ``units × pieces`` values and the maximum over each unit's pieces (Goodfellow et al. 2013)."""

    def __init__(self, in_features: int, units: int, pieces: int) -> None:
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)  # (B, units * pieces), each unit's pieces adjacent
        return z.view(*z.shape[:-1], self.units, self.pieces).amax(-1)  # (B, units)


class GAN(AdversarialGenerator):
    def __init__(
        self,
        input_shape: tuple[int, ...] = (1, 28, 28),
        latent_dim: int = 100,
        generator_hidden: int = 1200,
        discriminator_units: int = 240,
        discriminator_pieces: int = 5,
        generator_init: float = 0.05,  # weights ~ U(−r, r)
        discriminator_init: float = 0.005,
        input_keep: float = 0.8,  # dropout on the discriminator's input
        hidden_keep: float = 0.5,  # dropout on its hidden layers' inputs
        lr: float = 0.1,
        lr_decay: float = 1.000004,  # η ← η / decay after every minibatch
        min_lr: float = 1e-6,
        momentum: float = 0.5,
        final_momentum: float = 0.7,
        momentum_start: int = 1,  # momentum rises linearly from this epoch ...
        momentum_saturate: int = 250,  # ... to final_momentum at this one
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False  # two networks, two optimisers
        pixels = math.prod(input_shape)
        self.generator = nn.Sequential(
            nn.Linear(latent_dim, generator_hidden), nn.ReLU(),
            nn.Linear(generator_hidden, generator_hidden), nn.ReLU(),
            nn.Linear(generator_hidden, pixels),  # (B, 784) logits; the sigmoid is in generate()
        )  # fmt: skip
        units, pieces = discriminator_units, discriminator_pieces
        self.discriminator = nn.Sequential(
            nn.Dropout(1 - input_keep), Maxout(pixels, units, pieces),
            nn.Dropout(1 - hidden_keep), Maxout(units, units, pieces),
            nn.Dropout(1 - hidden_keep), nn.Linear(units, 1),  # (B, 1) logit of "real"
        )  # fmt: skip
        for net, r in ((self.generator, generator_init), (self.discriminator, discriminator_init)):
            for module in net.modules():
                if isinstance(module, nn.Linear):
                    nn.init.uniform_(module.weight, -r, r)
                    nn.init.zeros_(module.bias)

    # --- the ImageGenerator interface -------------------------------------------------------------------------------
    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = generator.device if generator is not None else self.device
        return torch.randn(n, self.hparams.latent_dim, generator=generator, device=device)  # (n, 100)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.generator(z)).view(len(z), *self.hparams.input_shape)  # (B, 1, 28, 28) in [0, 1]

    def discriminate(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.discriminator(images.flatten(1))).squeeze(1)  # (B,) P(real)

    # --- training ---------------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage == "fit" and self.trainer is not None and self.trainer.datamodule is not None:
            self.init_output_bias(self.trainer.datamodule.train_dataloader())

    @torch.no_grad()
    def init_output_bias(self, batches) -> None:
        """sigmoid(bias) = the training pixels' marginal means, as pylearn2's ``init_sigmoid_bias_from_marginals``."""
        total, count = 0.0, 0
        for images, _ in batches:
            total = total + images.flatten(1).double().sum(0)
            count += len(images)
        mean = (total / count).clamp(1e-7, 1 - 1e-7)
        self.generator[-1].bias.copy_(torch.logit(mean).to(self.generator[-1].bias))

    def training_step(self, batch, batch_idx):
        images, _ = batch
        real = images.flatten(1)  # (B, 784) in [0, 1]
        opt_d, opt_g = self.optimizers()
        self.set_schedule(batch_idx, opt_d, opt_g)

        fake = torch.sigmoid(self.generator(self.noise(len(real))))  # (B, 784)
        logit_real, logit_fake = self.discriminator(real).float(), self.discriminator(fake).float()  # (B, 1) each
        d_loss = 0.5 * (
            F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
            + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake))
        )
        g_loss = F.binary_cross_entropy_with_logits(logit_fake, torch.ones_like(logit_fake))  # −log D(G(z))

        opt_d.zero_grad(set_to_none=True)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(d_loss, inputs=list(self.discriminator.parameters()), retain_graph=True)
        self.manual_backward(g_loss, inputs=list(self.generator.parameters()))
        opt_d.step()
        opt_g.step()

        self.log_dict({"train/d_loss": d_loss, "train/g_loss": g_loss}, prog_bar=True)
        self.log("train/loss", d_loss + g_loss)
        return (d_loss + g_loss).detach()  # the harness stops a run whose loss is not finite

    def set_schedule(self, batch_idx: int, *optimizers) -> None:
        """η and μ as functions of (epoch, step), so a resumed run continues the schedule exactly."""
        hp = self.hparams
        step = self.current_epoch * self.trainer.num_training_batches + batch_idx
        lr = max(hp.lr / hp.lr_decay**step, hp.min_lr)
        ramp = (self.current_epoch - hp.momentum_start) / (hp.momentum_saturate - hp.momentum_start)
        momentum = hp.momentum + (hp.final_momentum - hp.momentum) * min(max(ramp, 0.0), 1.0)
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"], group["momentum"] = lr, momentum

    def configure_optimizers(self):
        hp = self.hparams
        return (
            torch.optim.SGD(self.discriminator.parameters(), lr=hp.lr, momentum=hp.momentum),
            torch.optim.SGD(self.generator.parameters(), lr=hp.lr, momentum=hp.momentum),
        )
