"""A GPT-style decoder-only language model (Radford, Narasimhan, Salimans & Sutskever 2018, "Improving Language
Understanding by Generative Pre-Training"; GPT-2: Radford et al. 2019), as in Karpathy's nanoGPT ``model.py``.

Open division: the recipe is nanoGPT's ``shakespeare_char`` (a "baby GPT" trained from scratch on characters), not
the papers' pre-training. The network: learned token and position embeddings, pre-layer-norm blocks of causal
multi-head self-attention and a GELU MLP (4× width), residual projections initialised with std 0.02/√(2·layers),
a final layer norm, and an output layer tied to the token embedding; no biases (nanoGPT's ``bias=False``).
Training: AdamW (β 0.9, 0.99 as nanoGPT's shakespeare config), weight decay 0.1 on matrices only, gradient clipping
at 1.0 (the config's), learning rate warmed up linearly for 100 steps then cosine-decayed to a tenth by the last step.
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.aggregation import MeanMetric


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        assert width % n_heads == 0, "width must be a multiple of n_heads"
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)  # (B, nh, T, hs)
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class Block(nn.Module):
    def __init__(self, width: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width, bias=False), nn.LayerNorm(width, bias=False)
        self.attention = CausalSelfAttention(width, n_heads, dropout)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width, bias=False),
            nn.GELU(),
            nn.Linear(4 * width, width, bias=False),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))  # pre-LN: the residual stream itself is never normalised
        return x + self.mlp(self.norm2(x))


class GPT(L.LightningModule):
    """Batches are (x (B, T), y (B, T)) character ids, y being x shifted left by one."""

    def __init__(
        self,
        vocab_size: int,
        context: int = 256,
        n_layers: int = 6,
        n_heads: int = 6,
        width: int = 384,
        dropout: float = 0.2,
        lr: float = 1e-3,
        min_lr: float = 1e-4,
        warmup_steps: int = 100,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = nn.Embedding(context, width)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, n_heads, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(width, bias=False)
        self.head = nn.Linear(width, vocab_size, bias=False)
        self.head.weight = self.token_embedding.weight  # weight tying (Press & Wolf 2017), as GPT-2 and nanoGPT
        for name, parameter in self.named_parameters():
            if parameter.dim() == 2:
                std = 0.02 / math.sqrt(2 * n_layers) if name.endswith(("proj.weight", "mlp.2.weight")) else 0.02
                nn.init.normal_(parameter, mean=0.0, std=std)
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids → (B, T, vocab) next-character logits; position t sees positions ≤ t only."""
        T = ids.size(1)
        if T > self.hparams.context:
            raise ValueError(f"sequence of {T} is longer than the context of {self.hparams.context}")
        x = self.dropout(self.token_embedding(ids) + self.position_embedding.weight[:T])  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))

    def _loss(self, batch) -> torch.Tensor:
        x, y = batch
        logits = self(x).float()
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.val_loss.update(self._loss(batch), weight=batch[1].numel())

    def test_step(self, batch, batch_idx):
        self.test_loss.update(self._loss(batch), weight=batch[1].numel())

    def on_validation_epoch_end(self):
        self.log("val/loss", self.val_loss.compute())  # nats per character
        self.val_loss.reset()

    def on_test_epoch_end(self):
        self.log("test/loss", self.test_loss.compute())
        self.test_loss.reset()

    def configure_optimizers(self):
        matrices = [p for p in self.parameters() if p.dim() >= 2]  # weight decay on matrices, not gains or biases
        others = [p for p in self.parameters() if p.dim() < 2]
        groups = [
            {"params": matrices, "weight_decay": self.hparams.weight_decay},
            {"params": others, "weight_decay": 0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=self.hparams.lr, betas=tuple(self.hparams.betas))
        total = max(1, int(self.trainer.estimated_stepping_batches))  # nanoGPT: lr_decay_iters = max_iters
        warmup, floor = self.hparams.warmup_steps, self.hparams.min_lr / self.hparams.lr

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - floor)

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    @torch.no_grad()
    def generate(self, ids: torch.Tensor, n: int, temperature: float = 1.0, top_k: int | None = None, generator=None):
        """Append ``n`` sampled ids to (B, T) ``ids``: the last ``context`` ids condition each draw."""
        for _ in range(n):
            logits = self(ids[:, -self.hparams.context :])[:, -1].float() / temperature  # (B, vocab)
            if top_k is not None and top_k < logits.size(-1):
                kth = logits.topk(top_k).values[:, -1:]
                logits = logits.masked_fill(logits < kth, -math.inf)
            nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator)  # (B, 1)
            ids = torch.cat([ids, nxt], dim=1)
        return ids
