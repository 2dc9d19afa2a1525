"""The deep convolutional GAN (2015), sized for 28×28 digits.

A. Radford, L. Metz and S. Chintala, "Unsupervised Representation Learning with Deep Convolutional Generative
Adversarial Networks", ICLR 2016 (arXiv:1511.06434). The paper's architecture guidelines (§3), all kept:

- no pooling: strided convolutions in the discriminator, fractionally strided (transposed) ones in the generator;
- batch normalisation in both networks, except the generator's output layer and the discriminator's input layer;
- no fully connected hidden layers: the noise is projected and reshaped to the first feature map, and the
  discriminator's last feature map is flattened into a single sigmoid output;
- ReLU in the generator with tanh at the output; LeakyReLU (slope 0.2) in the discriminator;
- §4: images scaled to [−1, 1], uniform noise (100-d), minibatch 128, weights N(0, 0.02), Adam with lr 2e-4 and
  β1 0.5.

What MNIST changes: the paper's 64×64 networks have four (de)convolutions of 1024→128 channels; at 28×28 two stride-2
layers suffice (7 → 14 → 28), so the generator is 100 → (2w, 7, 7) → (w, 14, 14) → (1, 28, 28) and the discriminator
its mirror, with width w (64 by default). The 4×4 kernels are those of the authors' Torch code. Each minibatch takes
one discriminator step (real and detached fake images) and then one generator step on the same fakes, the
non-saturating "−log D" generator loss, as in the authors' code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.base import AdversarialGenerator


class DCGAN(AdversarialGenerator):
    def __init__(
        self,
        input_shape: tuple[int, ...] = (1, 28, 28),
        latent_dim: int = 100,
        width: int = 64,
        leak: float = 0.2,
        init_std: float = 0.02,
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        channels, height, width_px = input_shape
        if height % 4 or width_px % 4:
            raise ValueError(f"DCGAN needs image sides divisible by 4 (two stride-2 layers), got {input_shape}")
        h, w = height // 4, width_px // 4  # 7, 7 for MNIST
        self.generator = nn.Sequential(
            nn.Linear(latent_dim, 2 * width * h * w, bias=False), nn.Unflatten(1, (2 * width, h, w)),  # project
            nn.BatchNorm2d(2 * width), nn.ReLU(),  # (B, 2w, 7, 7)
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width), nn.ReLU(),  # (B, w, 14, 14)
            nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1), nn.Tanh(),  # (B, 1, 28, 28) in [−1, 1]
        )  # fmt: skip
        self.discriminator = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(leak),  # (B, w, 14, 14), no BN here
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width), nn.LeakyReLU(leak),  # (B, 2w, 7, 7)
            nn.Flatten(), nn.Linear(2 * width * h * w, 1),  # (B, 1) logit of "real"
        )  # fmt: skip
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.normal_(module.weight, 0.0, init_std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, init_std)
                nn.init.zeros_(module.bias)

    # --- the ImageGenerator interface -------------------------------------------------------------------------------
    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = generator.device if generator is not None else self.device
        return torch.rand(n, self.hparams.latent_dim, generator=generator, device=device) * 2 - 1  # U(−1, 1)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return (self.generator(z) + 1) / 2  # (B, 1, 28, 28) in [0, 1]

    def discriminate(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.discriminator(images * 2 - 1)).squeeze(1)  # (B,) P(real)

    # --- training ---------------------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        images, _ = batch
        real = images * 2 - 1  # (B, 1, 28, 28) in [−1, 1]
        opt_d, opt_g = self.optimizers()
        fake = self.generator(self.noise(len(real)))  # (B, 1, 28, 28)

        logit_real, logit_fake = self.discriminator(real).float(), self.discriminator(fake.detach()).float()
        d_loss = F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
        d_loss = d_loss + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake))
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        opt_d.step()

        logit_fake = self.discriminator(fake).float()  # the updated discriminator on the same fakes
        g_loss = F.binary_cross_entropy_with_logits(logit_fake, torch.ones_like(logit_fake))  # −log D(G(z))
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_loss, inputs=list(self.generator.parameters()))
        opt_g.step()

        self.log_dict({"train/d_loss": d_loss, "train/g_loss": g_loss}, prog_bar=True)
        self.log("train/loss", d_loss + g_loss)
        return (d_loss + g_loss).detach()

    def configure_optimizers(self):
        betas = (self.hparams.beta1, self.hparams.beta2)
        return (
            torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas),
            torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas),
        )
