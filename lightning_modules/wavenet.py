"""WaveNet (van den Oord, Dieleman, Zen, Simonyan, Vinyals, Graves, Kalchbrenner, Senior & Kavukcuoglu 2016,
"WaveNet: A Generative Model for Raw Audio"), conditioned on a spoken digit and its speaker.

The paper's architecture, at a size the CPU trains in minutes:
- §2 (Eq. 1) the joint probability of a waveform as a product of conditionals, each sample given all before it, and
  §2.1 computed by a stack of **dilated causal convolutions** (kernel 2, dilations 1, 2, …, 2^(cycle−1), the cycle
  repeated ``stacks`` times: "1, 2, 4, …, 512, 1, 2, 4, …, 512" in the paper), after an initial causal convolution;
- §2.2 a **256-way softmax** over μ-law companded samples (the task does the companding);
- §2.3 **gated activation units**: z = tanh(W_f ∗ x) ⊙ σ(W_g ∗ x);
- §2.4 **residual and parameterised skip connections**: each layer's z goes through a 1×1 convolution to the
  residual stream and another to the skip sum (Fig. 4 draws one 1×1 shared by both; a separate skip 1×1 is what an
  author later described, as reported in ibab/tensorflow-wavenet#48); the output is ReLU → 1×1 → ReLU → 1×1 →
  softmax (Fig. 4);
- §2.5 **global conditioning**: z = tanh(W_f ∗ x + V_f^T h) ⊙ σ(W_g ∗ x + V_g^T h), with h the one-hot digit and
  the one-hot speaker side by side (the paper's h is the speaker's one-hot; the digit is what is said).

Generation caches every layer's past inputs in a queue as long as its dilation (Paine et al. 2016, "Fast WaveNet
Generation Algorithm"): each new sample costs one step of every layer, not a pass over the receptive field.
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.aggregation import SumMetric

SILENCE = 128  # the μ-law class of 0.0: what the first sample is predicted from


class ResidualLayer(nn.Module):
    """One dilated causal gated layer with its residual and skip 1×1 convolutions (§2.4; see the module's docstring)."""

    def __init__(self, channels: int, skip: int, dilation: int, condition: int) -> None:
        super().__init__()
        self.dilation = dilation
        self.conv = nn.Conv1d(channels, 2 * channels, kernel_size=2, dilation=dilation)  # W_f and W_g together
        self.condition = nn.Linear(condition, 2 * channels, bias=False)  # V_f^T h and V_g^T h together
        self.residual = nn.Conv1d(channels, channels, 1)
        self.skip = nn.Conv1d(channels, skip, 1)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(F.pad(x, (self.dilation, 0))) + self.condition(h).unsqueeze(-1)  # (B, 2C, T), causal
        z = gated(y)  # (B, C, T)
        return x + self.residual(z), self.skip(z)

    def step(self, now: torch.Tensor, past: torch.Tensor, condition: torch.Tensor):
        """One time step: ``now`` and ``past`` (the input ``dilation`` steps ago) are (B, C); ``condition`` is this
        layer's (B, 2C) V^T h. The same arithmetic as ``forward`` at one position."""
        w = self.conv.weight  # (2C, C, 2): tap 0 reads t − dilation, tap 1 reads t
        y = F.linear(past, w[..., 0]) + F.linear(now, w[..., 1], self.conv.bias) + condition
        z = gated(y.unsqueeze(-1)).squeeze(-1)  # (B, C)
        residual = F.linear(z, self.residual.weight[..., 0], self.residual.bias)
        return now + residual, F.linear(z, self.skip.weight[..., 0], self.skip.bias)


def gated(y: torch.Tensor) -> torch.Tensor:
    f, g = y.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)  # §2.3


class WaveNet(L.LightningModule):
    """Batches are (audio (B, T) μ-law ids, mask (B, T) of real samples, digit (B,), speaker (B,))."""

    def __init__(
        self,
        n_classes: int = 256,
        n_speakers: int = 6,
        n_digits: int = 10,
        residual_channels: int = 32,
        skip_channels: int = 128,
        dilation_cycle: int = 10,  # dilations 1, 2, …, 512, as §2.1
        stacks: int = 2,
        lr: float = 1e-3,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.n_classes, self.n_speakers, self.n_digits = n_classes, n_speakers, n_digits
        channels = residual_channels
        self.embed = nn.Embedding(n_classes, channels)  # the one-hot input times a matrix
        self.causal = nn.Conv1d(channels, channels, kernel_size=2)  # the initial causal convolution
        dilations = [2**i for i in range(dilation_cycle)] * stacks
        self.layers = nn.ModuleList(ResidualLayer(channels, skip_channels, d, n_digits + n_speakers) for d in dilations)
        self.output = nn.Sequential(
            nn.ReLU(), nn.Conv1d(skip_channels, skip_channels, 1), nn.ReLU(), nn.Conv1d(skip_channels, n_classes, 1)
        )
        self.receptive_field = 2 + sum(dilations)  # samples before t that reach position t (shift, initial conv)
        self.val_nats, self.val_count = SumMetric(), SumMetric()
        self.test_nats, self.test_count = SumMetric(), SumMetric()

    def condition(self, digit: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """h: the one-hot digit beside the one-hot speaker, (B, n_digits + n_speakers)."""
        return torch.cat([F.one_hot(digit, self.n_digits), F.one_hot(speaker, self.n_speakers)], dim=1).float()

    def forward(self, audio: torch.Tensor, digit: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """(B, T) ids → (B, n_classes, T) logits; position t sees audio[:, :t] (silence before the first sample)."""
        silence = torch.full_like(audio[:, :1], SILENCE)
        x = self.embed(torch.cat([silence, audio[:, :-1]], dim=1)).transpose(1, 2)  # (B, C, T): inputs shifted by one
        x = self.causal(F.pad(x, (1, 0)))  # (B, C, T)
        h = self.condition(digit, speaker)
        skips = 0
        for layer in self.layers:
            x, skip = layer(x, h)
            skips = skips + skip  # (B, S, T)
        return self.output(skips)

    def nats(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The summed negative log-likelihood of the batch's real samples (nats) and their count."""
        audio, mask, digit, speaker = batch
        nll = F.cross_entropy(self(audio, digit, speaker), audio, reduction="none")  # (B, T)
        return (nll * mask).sum(), mask.sum()

    def training_step(self, batch, batch_idx):
        total, count = self.nats(batch)
        loss = total / count
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/bits_per_sample", loss / math.log(2))
        return loss

    def validation_step(self, batch, batch_idx):
        total, count = self.nats(batch)
        self.val_nats.update(total)
        self.val_count.update(count)

    def test_step(self, batch, batch_idx):
        total, count = self.nats(batch)
        self.test_nats.update(total)
        self.test_count.update(count)

    def on_validation_epoch_end(self):
        self._log_bits("val", self.val_nats, self.val_count)

    def on_test_epoch_end(self):
        self._log_bits("test", self.test_nats, self.test_count)

    def _log_bits(self, stage: str, nats: SumMetric, count: SumMetric) -> None:
        bits = nats.compute() / count.compute() / math.log(2)  # compute() sums across DDP ranks
        nats.reset()
        count.reset()
        self.log(f"{stage}/bits_per_sample", bits)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    # --- generation ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, digit, speaker, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B,) digits, (B,) speakers → (B, n) ids, each sampled from the softmax given those before it."""
        stepper = FastStepper(self, digit, speaker)
        previous = torch.full((len(digit),), SILENCE, dtype=torch.long, device=self.device)
        out = []
        for _ in range(n):
            probabilities = torch.softmax(stepper.step(previous).float(), dim=-1).cpu()
            previous = torch.multinomial(probabilities, 1, generator=generator).squeeze(1).to(self.device)
            out.append(previous)
        return torch.stack(out, dim=1)


class FastStepper:
    """Paine et al.'s queues: each layer keeps its last ``dilation`` inputs, so a step reads the input it needs from
    ``dilation`` steps ago instead of recomputing the receptive field. Before the first step every queue holds zeros,
    as ``forward``'s left padding does."""

    def __init__(self, model: WaveNet, digit: torch.Tensor, speaker: torch.Tensor) -> None:
        self.model, self.t = model, 0
        h = model.condition(digit, speaker)
        batch, channels = len(digit), model.embed.embedding_dim
        self.conditions = [layer.condition(h) for layer in model.layers]  # (B, 2C) each, fixed for the clip
        zeros = dict(dtype=h.dtype, device=h.device)
        self.previous_input = torch.zeros(batch, channels, **zeros)  # the initial causal conv's tap at t − 1
        self.queues = [torch.zeros(layer.dilation, batch, channels, **zeros) for layer in model.layers]

    def step(self, previous_ids: torch.Tensor) -> torch.Tensor:
        """The (B, n_classes) logits of sample t given sample t − 1's ids (silence at t = 0) and the queues."""
        model = self.model
        now = model.embed(previous_ids)  # (B, C)
        w = model.causal.weight
        x = F.linear(self.previous_input, w[..., 0]) + F.linear(now, w[..., 1], model.causal.bias)
        self.previous_input = now
        skips = 0
        for layer, queue, condition in zip(model.layers, self.queues, self.conditions):
            slot = self.t % layer.dilation  # holds the input of t − dilation; then this step's
            past = queue[slot].clone()
            queue[slot] = x
            x, skip = layer.step(x, past, condition)
            skips = skips + skip  # (B, S)
        self.t += 1
        return model.output(skips.unsqueeze(-1)).squeeze(-1)
