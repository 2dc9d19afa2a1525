"""Long Short-Term Memory as Hochreiter & Schmidhuber built it in 1997 ("Long Short-Term Memory", Neural Computation
9(8):1735-1780): memory cells with an input gate and an output gate around a constant error carousel (CEC), no forget
gate (Gers, Schmidhuber & Cummins 2000 added it), trained with the paper's truncated gradient. Here it is a character
model of tiny-shakespeare, the char-rnn setting of Karpathy 2015.

Faithful to the paper, as checked against its text (section and equation numbers are the paper's):
- the memory cell (§4, appendix A.1 eqs. 7-9): for block j and its cells v = 1 … S,
      y_in(t) = f(net_in(t)),  y_out(t) = f(net_out(t)),  f(x) = 1 / (1 + e^-x) in [0, 1]        (eq. 3)
      s_c(t) = s_c(t-1) + y_in(t) g(net_c(t)),  s_c(0) = 0   (the CEC: a linear self-connection of weight 1.0, §3.2)
      y_c(t) = y_out(t) h(s_c(t))
  with g(x) = 4 / (1 + e^-x) - 2 in [-2, 2] (eq. 5) and h(x) = 2 / (1 + e^-x) - 1 in [-1, 1] (eq. 4), the ranges
  also stated for Experiment 1 (§5.1). There is no forget gate: the state only ever adds.
- memory cell blocks (§4): S cells share one input and one output gate (``block_size``; S = 1 is a plain cell).
- the topology of Experiments 1, 2c and 3-6 ("F" in Table 10, §5.7): one hidden layer; memory cells and gate units get
  connections from the input units and from the memory cells and gate units of the previous step; the output layer's
  only incoming connections come from the memory cells. Input and output are local, one unit per symbol (as the
  embedded Reber grammar of Experiment 1, the paper's next-symbol prediction task), so the input weights are a table.
  Every non-input unit has a bias ("all" in Table 10, Experiments 4-6).
- the truncated gradient (§4 "Learning"; A.1: ∂net_in(t)/∂y(t-1), ∂net_out(t)/∂y(t-1), ∂net_c(t)/∂y(t-1) ≈ 0):
  errors reaching the cells' and gates' net inputs change the incoming weights but go no further back in time; only
  the CEC carries error back, through s_c. With ``truncate=True`` the previous step's activations enter the net
  inputs as constants (no gradient), which is exactly that truncation; ``truncate=False`` gives the full gradient
  (which the paper tried and did not recommend, §6).
- weights and biases drawn uniformly from [-0.1, 0.1] (§5: Experiments 3-6; 1 and 2 used [-0.2, 0.2]), the gates'
  biases too ("r" for both gates in Experiment 5, Table 10).
- activations reset before each sequence (§5, "Net activations are reset after each processed input sequence"):
  every window of text starts from s_c = 0 and y = 0. ``generate`` runs the state on over its whole prefix and the
  sampled characters, past the window length seen in training.

Not from the paper (the config lists each as a deviation): a softmax over the 65 characters with cross-entropy in
place of logistic output units and squared error (eq. 16); RMSprop with char-rnn's settings (learning rate 2e-3,
decay 0.95, ε 1e-8, each gradient element clamped to ±5 on char-rnn's scale, the loss summed over the window's steps)
on minibatches of windows in place of the paper's on-line gradient descent (an update after every time step, learning
rates 0.01-1.0); §4's negative initial output-gate biases (a staircase -1, -2, -3 over the 3-4 blocks of Experiment 1)
are not used; the size.

Speed: with the truncated gradient the net inputs at step t depend on step t-1 only through constants, so the
activations are first run forward step by step without a graph, and the graph is then built for all steps at once:
one matrix product for the net inputs and, for the CEC, a cumulative sum over time. The gradient is that of a
step-by-step loop with ``.detach()`` on the previous activations (equal to float64 precision); a training step takes
about half the time of that loop on one CPU thread (the config's opening comment has the numbers).
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.aggregation import MeanMetric


def g(x: torch.Tensor) -> torch.Tensor:
    """The cell input squashing function, range [-2, 2] (A.1 eq. 5)."""
    return 4 * torch.sigmoid(x) - 2


def h(x: torch.Tensor) -> torch.Tensor:
    """The cell output squashing function, range [-1, 1] (A.1 eq. 4)."""
    return 2 * torch.sigmoid(x) - 1


class LSTM1997(L.LightningModule):
    """Batches are (x (B, T), y (B, T)) character ids, y being x shifted left by one."""

    def __init__(
        self,
        vocab_size: int,
        cells: int = 240,
        block_size: int = 1,
        truncate: bool = True,
        init_range: float = 0.1,
        lr: float = 2e-3,
        rms_decay: float = 0.95,
        eps: float = 1e-8,
        grad_clip: float = 5.0,
    ) -> None:
        super().__init__()
        assert cells % block_size == 0, "cells must be a multiple of block_size"
        self.save_hyperparameters()
        self.blocks = cells // block_size
        # net inputs of the hidden layer, in this order: cell inputs net_c (cells), input gates net_in (blocks),
        # output gates net_out (blocks); the recurrent sources are the same units' activations at t-1
        self.units = cells + 2 * self.blocks
        self.input_weights = nn.Embedding(vocab_size, self.units)  # one-hot input units: a weight row per symbol
        self.recurrent = nn.Linear(self.units, self.units)  # from y_c, y_in, y_out at t-1; its bias is the units'
        self.head = nn.Linear(cells, vocab_size)  # output units see the memory cells only
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -init_range, init_range)
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self._steps = 1  # time steps of the last training window (char-rnn's clipping scale)

    def _activations(self, net: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Net inputs (..., units) → what the input gate writes into the CEC y_in·g(net_c) (..., blocks, S), the
        output gate y_out (..., blocks, 1) and the input gate y_in (..., blocks)."""
        S = self.hparams.block_size
        net_c, net_in, net_out = net.split([self.hparams.cells, self.blocks, self.blocks], dim=-1)
        y_in, y_out = torch.sigmoid(net_in), torch.sigmoid(net_out)  # (..., blocks) each
        write = y_in.unsqueeze(-1) * g(net_c.unflatten(-1, (self.blocks, S)))  # (..., blocks, S)
        return write, y_out.unsqueeze(-1), y_in

    def _outputs(self, s: torch.Tensor, y_out: torch.Tensor, y_in: torch.Tensor) -> torch.Tensor:
        """Internal states (..., blocks, S) → the hidden layer's activations (..., units): y_c, y_in, y_out."""
        y_c = (y_out * h(s)).flatten(-2)  # (..., cells)
        return torch.cat([y_c, y_in, y_out.squeeze(-1)], dim=-1)

    def step(self, x_net: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step. x_net (B, units): the input units' contribution; y (B, units): the hidden layer's
        activations at t-1; s (B, blocks, S): the internal states at t-1. Returns y and s at t."""
        if self.hparams.truncate:
            y = y.detach()  # A.1: ∂net(t)/∂y(t-1) ≈ 0, error reaching the net inputs goes no further back
        write, y_out, y_in = self._activations(x_net + self.recurrent(y))
        s = s + write  # the CEC: s_c(t) = s_c(t-1) + y_in(t) g(net_c(t))
        return self._outputs(s, y_out, y_in), s

    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """All activations and internal states zero at the start of a sequence (§5, s_c(0) = 0)."""
        like = {"device": self.head.weight.device, "dtype": self.head.weight.dtype}
        return torch.zeros(batch, self.units, **like), torch.zeros(batch, self.blocks, self.hparams.block_size, **like)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids → (B, T, vocab) next-character logits, each window run from the reset state."""
        B, T = ids.shape
        x_net = self.input_weights(ids)  # (B, T, units)
        truncated_graph = self.hparams.truncate and torch.is_grad_enabled()
        y, s = self.initial_state(B)
        outputs = []  # y(t), the hidden layer's activations at each step
        # the full gradient needs the graph through every step; the truncated one is built below, after this loop
        with torch.set_grad_enabled(torch.is_grad_enabled() and not truncated_graph):
            for t in range(T):
                y, s = self.step(x_net[:, t], y, s)
                outputs.append(y)
        y = torch.stack(outputs, dim=1)  # (B, T, units)
        if truncated_graph:
            # the previous activations are constants of the truncated graph, so it is built for all steps at once:
            # the net inputs in one product, the CEC as a sum over time
            previous = torch.cat([torch.zeros_like(y[:, :1]), y[:, :-1]], dim=1)  # y(t-1) for each t, y(-1) = 0
            net = x_net + self.recurrent(previous)  # (B, T, units)
            write, y_out, _ = self._activations(net)  # (B, T, blocks, S), (B, T, blocks, 1)
            s = write.cumsum(dim=1)  # s_c(t) = Σ_{τ≤t} y_in(τ) g(net_c(τ)): error flows back through s_c unscaled
            return self.head((y_out * h(s)).flatten(-2))  # from y_c (B, T, cells)
        return self.head(y[..., : self.hparams.cells])

    def _loss(self, batch) -> torch.Tensor:
        x, y = batch
        logits = self(x).float()
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self._steps = batch[0].size(1)
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
        # char-rnn's optim.rmsprop: m = α m + (1-α) g², w -= lr · g / (√m + ε), which torch's RMSprop computes
        return torch.optim.RMSprop(self.parameters(), lr=self.hparams.lr, alpha=self.hparams.rms_decay,
                                   eps=self.hparams.eps)  # fmt: skip

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        # char-rnn clamps each element of the gradient of the loss summed over the window's T steps (its criterion
        # averages over the batch only) at ±grad_clip; the loss here is averaged over the steps too, hence / T
        self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip / self._steps,
                            gradient_clip_algorithm="value")  # fmt: skip

    @torch.no_grad()
    def generate(self, ids: torch.Tensor, n: int, temperature: float = 1.0, top_k: int | None = None, generator=None):
        """Append ``n`` sampled ids to (B, T) ``ids``: the state runs over the whole prefix, then over each draw."""
        B, T = ids.shape
        y, s = self.initial_state(B)
        x_net = self.input_weights(ids)  # (B, T, units)
        for t in range(T):
            y, s = self.step(x_net[:, t], y, s)
        for _ in range(n):
            logits = self.head(y[:, : self.hparams.cells]).float() / temperature  # (B, vocab)
            if top_k is not None and top_k < logits.size(-1):
                kth = logits.topk(top_k).values[:, -1:]
                logits = logits.masked_fill(logits < kth, -math.inf)
            nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator)  # (B, 1)
            ids = torch.cat([ids, nxt], dim=1)
            y, s = self.step(self.input_weights(nxt[:, 0]), y, s)
        return ids
