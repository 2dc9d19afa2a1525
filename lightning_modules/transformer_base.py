"""The Transformer base model as Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser & Polosukhin (2017,
"Attention Is All You Need", NeurIPS) trained and tested it: lightning_modules.transformer's network, training step
and decoding at the sizes of Table 3's "base" row, with the tested weights the average of the last checkpoints.

The paper's base model, with the section each default comes from:
- N = 6 encoder and 6 decoder layers, d_model 512, h = 8 heads (d_k = d_v = d_model / h = 64), position-wise
  feed-forward d_ff 2048 (§3.1, §3.2.2, §3.3, Table 3 "base");
- post-layer-norm residual sub-layers, sinusoidal positions, one embedding matrix shared by the encoder, the decoder
  and the pre-softmax projection, embeddings × √d_model (§3.1, §3.4, §3.5);
- dropout P_drop 0.1 on every sub-layer's output before the residual sum and on embeddings + positions; label
  smoothing ε_ls 0.1 (§5.4);
- Adam β₁ 0.9, β₂ 0.98, ε 1e-9; lrate = d_model^-0.5 · min(step^-0.5, step · warmup_steps^-1.5), warmup_steps 4,000,
  per training step (§5.3);
- the tested model is "a single model obtained by averaging the last 5 checkpoints, which were written at 10-minute
  intervals" (§6.1);
- beam search with beam 4 and length penalty α 0.6, maximum output length input + 50, stopping early when every
  hypothesis has ended (§6.1).
The batch (§5.1: ~25,000 source and ~25,000 target tokens) and the budget (§5.2: 100,000 steps) are the config's.

Checkpoint averaging. The paper's interval is wall-clock: 10 minutes at its ~0.4 s per step (§5.2) is ~1,500 steps, a
count that does not depend on the hardware, so checkpoints here are ``average_every_steps`` (1,500) optimizer steps
apart, counted back from the last step of the run: the weights after steps T, T − 1,500, …, T − 6,000 for T the final
step (a run shorter than 6,000 steps averages the checkpoints it has, down to the final weights alone). As in
tensor2tensor's ``avg_checkpoints.py`` (the authors' code), every floating-point tensor of the model is summed in
float64 and divided by the number of checkpoints. Only the running sum is kept (the steps are known when training
starts), in the ``CheckpointAverage`` callback whose state goes into every Lightning checkpoint, so a run resumed from
a checkpoint ends with exactly the average of an uninterrupted one. When fit ends the average replaces the trained
weights, and the model declares ``tests_final_weights``: the harness then tests these weights rather than the
best-validation checkpoint, and nothing is selected by validation (validation BLEU is still logged when the trainer
validates).

Not from the paper: weight initialisation, which the paper does not state, is tensor2tensor's (Xavier-uniform linear
layers, N(0, d_model^-0.5) embeddings), inherited from lightning_modules.transformer; so is the beam search, which
keeps a finished hypothesis in the beam at its raw log-probability and ranks the final k with the length penalty
(Wu et al. 2016's ((5 + |Y|) / 6)^α), where tensor2tensor keeps the finished hypotheses in a separate set.
"""

from __future__ import annotations

import lightning as L
import torch

from lightning_modules.transformer import Transformer


class CheckpointAverage(L.Callback):
    """The mean of the model's weights after the last ``last`` checkpoint steps, ``every_steps`` apart, the final step
    included; put in the model when fit ends.

    The steps are T, T − every_steps, … (T: the run's last optimizer step, known when training starts); after each of
    them the floating-point state is added to a float64 running sum. The sum, the count and the steps taken are the
    callback's state, saved in every checkpoint and restored on resume."""

    def __init__(self, last: int, every_steps: int) -> None:
        if last < 1 or every_steps < 1:
            raise ValueError(f"average at least 1 checkpoint at least 1 step apart, got {last} every {every_steps}")
        self.last, self.every_steps = last, every_steps
        self.steps: list[int] = []  # the checkpoint steps of this run, set when training starts
        self.total: dict[str, torch.Tensor] = {}  # name → float64 sum on the CPU
        self.taken: list[int] = []  # the steps whose weights are in the sum

    def checkpoint_steps(self, final_step: int) -> list[int]:
        """The last ``last`` steps of a run of ``final_step`` steps, ``every_steps`` apart, oldest first."""
        return sorted(s for s in range(final_step, 0, -self.every_steps)[: self.last])

    def on_train_start(self, trainer, pl_module) -> None:
        self.steps = self.checkpoint_steps(int(trainer.estimated_stepping_batches))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step  # optimizer steps done, this batch's included
        if step in self.steps and step not in self.taken:
            self.add(pl_module, step)

    def add(self, pl_module: L.LightningModule, step: int) -> None:
        for name, value in pl_module.state_dict().items():
            if value.is_floating_point():
                value = value.detach().to("cpu", torch.float64)
                self.total[name] = self.total[name] + value if name in self.total else value.clone()
        self.taken.append(step)

    def averaged_state(self, pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        """The model's state dict with every floating-point tensor replaced by its mean over the checkpoints taken."""
        state = pl_module.state_dict()
        for name, total in self.total.items():
            state[name] = (total / len(self.taken)).to(state[name].dtype)
        return state

    def on_fit_end(self, trainer, pl_module) -> None:
        # also runs when a resumed fit finds training already done: the restored sum is averaged then
        if self.taken:
            pl_module.load_state_dict(self.averaged_state(pl_module))

    def state_dict(self) -> dict:
        return {"total": self.total, "taken": list(self.taken), "steps": list(self.steps)}

    def load_state_dict(self, state: dict) -> None:
        self.total, self.taken, self.steps = dict(state["total"]), list(state["taken"]), list(state["steps"])


class TransformerBase(Transformer):
    """The Transformer of lightning_modules.transformer with Table 3's base sizes as defaults; the weights it ends
    training with, and that are tested, are the average of its last ``average_last`` checkpoints (§6.1)."""

    tests_final_weights = True  # the harness tests the weights fit ends with (the average), not a selected checkpoint

    def __init__(
        self,
        vocab_size: int,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        n_layers: int = 6,
        d_model: int = 512,
        n_heads: int = 8,
        d_ff: int = 2048,
        dropout: float = 0.1,
        label_smoothing: float = 0.1,
        warmup_steps: int = 4000,
        lr_factor: float = 1.0,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-9,
        beam_size: int = 4,
        length_penalty: float = 0.6,
        max_extra_length: int = 50,
        max_positions: int = 1024,
        average_last: int = 5,
        average_every_steps: int = 1500,
    ) -> None:
        super().__init__(
            vocab_size, pad_id, bos_id, eos_id, n_layers, d_model, n_heads, d_ff, dropout, label_smoothing,
            warmup_steps, lr_factor, betas, eps, beam_size, length_penalty, max_extra_length, max_positions,
        )  # fmt: skip
        # Transformer's save_hyperparameters() also records average_last and average_every_steps (this frame's)

    def configure_callbacks(self) -> list[L.Callback]:
        return [CheckpointAverage(self.hparams.average_last, self.hparams.average_every_steps)]
