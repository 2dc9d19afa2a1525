"""The variational auto-encoder (2013): a Gaussian MLP encoder and a Bernoulli MLP decoder trained by AEVB.

D. P. Kingma and M. Welling, "Auto-Encoding Variational Bayes", arXiv:1312.6114 (2013), ICLR 2014. The MNIST model
of §3, §5 and Appendix C, checked against the paper's text (v10) and the authors' code of the time (anglepy):

- decoder p_θ(x|z), a Bernoulli MLP with one hidden layer (App. C.1, eq. 11): y = sigmoid(W2 tanh(W1 z + b1) + b2),
  log p(x|z) = Σ_i x_i log y_i + (1 − x_i) log(1 − y_i); prior p(z) = N(0, I) (§3);
- encoder q_φ(z|x) = N(μ, σ²I), a Gaussian MLP with one hidden layer (App. C.2, eq. 12, x and z swapped):
  h = tanh(W3 x + b3), μ = W4 h + b4, log σ² = W5 h + b5; 500 hidden units in each net for MNIST (§5);
- the SGVB estimator B (§2.3, eq. 7) in its Gaussian form (§3, eq. 10): the KL term to N(0, I) analytically
  (App. B), ½ Σ_j (1 + log σ_j² − μ_j² − σ_j²), plus log p(x|z) at L = 1 sample z = μ + σ ⊙ ε, ε ~ N(0, I) (§2.4);
- §5: minibatches of M = 100, all parameters initialised from N(0, 0.01²) (the authors' code: std 1e-2), Adagrad
  with a global step size chosen from {0.01, 0.02, 0.1} on the training bound of the first iterations, and a weight
  decay equal to the prior p(θ) = N(0, I): the MAP objective Σ_i L(x_i) − ½‖W‖², which per datapoint is
  mean_i L(x_i) − ‖W‖² / (2N) with N the training set size (the authors' code adds the prior's gradient scaled by
  M/N to the minibatch sum, on the weight matrices of both nets and not on the biases, as here).

The latent size is one of Fig. 2's panels (Nz ∈ {3, 5, 10, 20, 200}); the default is Nz = 20. The images are taken as
the Bernoulli means' targets as they come, grey levels in [0, 1] (the cross-entropy of eq. 11), as the authors' code
does unless asked to binarise. ``generate(z)`` returns the decoder's Bernoulli means y, not binary draws from them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.base import ImageGenerator


class VAE(ImageGenerator):
    def __init__(
        self,
        input_shape: tuple[int, ...] = (1, 28, 28),
        latent_dim: int = 20,  # Nz, one of Fig. 2's MNIST panels
        hidden: int = 500,  # §5: 500 hidden units for MNIST, in the encoder and the decoder alike
        init_std: float = 0.01,  # every weight and bias ~ N(0, 0.01²)
        lr: float = 0.01,  # Adagrad's global step size, from {0.01, 0.02, 0.1} (see the config for the choice)
        n_train: int = 50_000,  # N in the weight decay ‖W‖² / (2N): the task's training images
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        pixels = math.prod(input_shape)
        self.encoder = nn.Sequential(nn.Linear(pixels, hidden), nn.Tanh())  # h = tanh(W3 x + b3)
        self.mean = nn.Linear(hidden, latent_dim)  # μ = W4 h + b4
        self.log_var = nn.Linear(hidden, latent_dim)  # log σ² = W5 h + b5
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.Tanh(),  # tanh(W1 z + b1)
            nn.Linear(hidden, pixels),  # (B, 784) logits; sigmoid(logits) = y, the Bernoulli means
        )  # fmt: skip
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, init_std)
                nn.init.normal_(module.bias, 0.0, init_std)

    # --- the ImageGenerator interface -------------------------------------------------------------------------------
    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = generator.device if generator is not None else self.device
        return torch.randn(n, self.hparams.latent_dim, generator=generator, device=device)  # (n, Nz) ~ p(z)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's Bernoulli means y for latents z: (n, 1, 28, 28) in [0, 1]."""
        return torch.sigmoid(self.decoder(z)).view(len(z), *self.hparams.input_shape)

    # --- the LowerBound interface: the estimator that training maximises --------------------------------------------
    def lower_bound(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """L̃^B(θ, φ; x) of eq. 10 for each image, in nats: (N, 1, 28, 28) in [0, 1] → (N,). ε is drawn from
        ``generator`` (on its device) when one is given, so an evaluation is reproducible."""
        x = images.flatten(1)  # (N, 784) in [0, 1]
        h = self.encoder(x)  # (N, 500)
        mean, log_var = self.mean(h), self.log_var(h)  # (N, Nz) each
        device = generator.device if generator is not None else mean.device
        eps = torch.randn(mean.shape, generator=generator, device=device).to(mean)  # (N, Nz) ~ N(0, I)
        z = mean + torch.exp(0.5 * log_var) * eps  # the reparameterisation, §2.4
        logits = self.decoder(z).float()  # (N, 784)
        log_px = -F.binary_cross_entropy_with_logits(logits, x.float(), reduction="none").sum(1)  # eq. 11
        mean, log_var = mean.float(), log_var.float()
        neg_kl = 0.5 * (1 + log_var - mean.square() - log_var.exp()).sum(1)  # −D_KL(q(z|x) ‖ N(0, I)), App. B
        return neg_kl + log_px  # (N,)

    # --- training ---------------------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        images, _ = batch
        bound = self.lower_bound(images).mean()  # the minibatch estimator (eq. 8) divided by N: per datapoint
        # −log p(θ) / N for the prior N(0, I) on the weight matrices (constants dropped): the §5 weight decay
        weights = sum(m.weight.square().sum() for m in self.modules() if isinstance(m, nn.Linear))
        loss = -bound + weights / (2 * self.hparams.n_train)
        self.log("train/lower_bound", bound, prog_bar=True)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        images, _ = batch
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)  # the same ε every epoch
        self.log("val/lower_bound", self.lower_bound(images, generator).mean())  # nats per image

    def configure_optimizers(self):
        return torch.optim.Adagrad(self.parameters(), lr=self.hparams.lr)
