"""The Transformer (Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser & Polosukhin 2017, "Attention Is All
You Need", NeurIPS): an encoder-decoder built from attention alone.

Faithful to the paper's base model in structure; the size is the config's (the paper: 6 layers, d_model 512, 8 heads,
d_ff 2048, dropout 0.1, on 4.5M WMT14 sentence pairs):
- scaled dot-product attention softmax(QKᵀ/√d_k)V in h heads (§3.2); no dropout on the attention weights (the paper
  names only residual and embedding dropout);
- post-layer-norm sub-layers, LayerNorm(x + Dropout(Sublayer(x))) (§3.1, §5.4);
- position-wise feed-forward max(0, xW₁ + b₁)W₂ + b₂ (§3.3);
- sinusoidal positions added to embeddings scaled by √d_model, then dropout (§3.4, §3.5);
- one embedding matrix shared by the encoder, the decoder and the pre-softmax projection (§3.4: the vocabulary is a
  shared source/target BPE);
- label smoothing 0.1 (§5.4); Adam β (0.9, 0.98), ε 1e-9 with lrate = d_model^-0.5 · min(step^-0.5, step ·
  warmup^-1.5) (§5.3), stepped every batch (``lr_factor`` scales it, 1 in the paper);
- beam search with beam 4, length penalty α 0.6 (Wu et al. 2016's ((5 + |Y|) / 6)^α) and maximum output length input
  + 50 (§6.1), and greedy decoding.
The paper does not say how weights are initialised: linear layers use Xavier-uniform and the shared embedding
N(0, d_model^-0.5), as in the authors' tensor2tensor code, so embeddings × √d_model have unit scale.
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.aggregation import MeanMetric


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head₁ … head_h) Wᴼ with headᵢ = Attention(Q Wᵢᵠ, K Wᵢᴷ, V Wᵢⱽ)  (§3.2.2)."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        assert d_model % n_heads == 0, "d_model must be a multiple of n_heads"
        self.n_heads, self.d_k = n_heads, d_model // n_heads
        self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model) for _ in range(4))

    def split(self, x: torch.Tensor, projection: nn.Linear) -> torch.Tensor:
        B, T, _ = x.shape
        return projection(x).view(B, T, self.n_heads, self.d_k).transpose(1, 2)  # (B, h, T, d_k)

    def keys_values(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split(memory, self.k), self.split(memory, self.v)  # (B, h, Tk, d_k) each

    def forward(self, query, memory, mask, keys_values=None) -> torch.Tensor:
        """query (B, Tq, d), memory (B, Tk, d), mask (B, Tq or 1, Tk) bool, True where attending is allowed (None:
        everywhere). ``keys_values``: memory's keys and values already projected (cached while decoding)."""
        k, v = keys_values if keys_values is not None else self.keys_values(memory)
        q = self.split(query, self.q)  # (B, h, Tq, d_k)
        # Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V, masked positions get -inf before the softmax (eq. 1)
        mask = mask.unsqueeze(1) if mask is not None else None
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, Tq, d_k)
        return self.o(heads.transpose(1, 2).flatten(2))


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Linear(d_ff, d_model))


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.attention, self.feed_forward = MultiHeadAttention(d_model, n_heads), FeedForward(d_model, d_ff)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.attention(x, x, mask)))  # post-LN: LayerNorm(x + Sublayer(x))
        return self.norm2(x + self.dropout(self.feed_forward(x)))


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.self_attention, self.cross_attention = (
            MultiHeadAttention(d_model, n_heads),
            MultiHeadAttention(d_model, n_heads),
        )
        self.feed_forward = FeedForward(d_model, d_ff)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.dropout = nn.Dropout(dropout)

    def forward(self, y, memory, self_mask, memory_mask) -> torch.Tensor:
        y = self.norm1(y + self.dropout(self.self_attention(y, y, self_mask)))  # masked: no peeking ahead
        y = self.norm2(y + self.dropout(self.cross_attention(y, memory, memory_mask)))  # queries from the decoder
        return self.norm3(y + self.dropout(self.feed_forward(y)))

    def step(self, y_t, cache: dict, memory_mask) -> torch.Tensor:
        """One new position y_t (N, 1, d) while decoding: the keys and values of the earlier positions (and of the
        memory) come from ``cache``; the same result as ``forward`` over the whole prefix, without recomputing it."""
        k, v = self.self_attention.keys_values(y_t)
        if "self" in cache:
            k, v = torch.cat([cache["self"][0], k], dim=2), torch.cat([cache["self"][1], v], dim=2)
        cache["self"] = (k, v)
        y = self.norm1(y_t + self.dropout(self.self_attention(y_t, None, None, keys_values=(k, v))))
        y = self.norm2(y + self.dropout(self.cross_attention(y, None, memory_mask, keys_values=cache["memory"])))
        return self.norm3(y + self.dropout(self.feed_forward(y)))


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))  (§3.5); (length, d_model)."""
    position = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model, dtype=torch.float64)
    table[:, 0::2], table[:, 1::2] = torch.sin(position * frequency), torch.cos(position * frequency)
    return table.float()


class Transformer(L.LightningModule):
    """Batches are (source (B, S), target (B, T+1)) token ids: source ends with </s>; target is <s> … </s>."""

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
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.embedding = nn.Embedding(vocab_size, d_model)  # shared: encoder, decoder and pre-softmax (§3.4)
        self.register_buffer("positions", sinusoidal_positions(max_positions, d_model), persistent=False)
        self.dropout = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))
        self.decoder = nn.ModuleList(DecoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.embedding.weight, std=d_model**-0.5)
        self.val_nll, self.test_nll = MeanMetric(), MeanMetric()

    # --- the network ----------------------------------------------------------------------------------------------
    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) ids → (B, T, d): embeddings × √d_model + positions, then dropout (§3.4, §5.4)."""
        x = self.embedding(tokens) * math.sqrt(self.hparams.d_model) + self.positions[: tokens.size(1)]
        return self.dropout(x)

    def encode(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) → memory (B, S, d) and its key mask (B, 1, S): padding is never attended to."""
        mask = (source != self.hparams.pad_id).unsqueeze(1)
        x = self.embed(source)
        for layer in self.encoder:
            x = layer(x, mask)
        return x, mask

    def decode(self, target_in: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) decoder input → (B, T, d) states; position t sees target positions ≤ t only."""
        T = target_in.size(1)
        causal = torch.ones(T, T, dtype=torch.bool, device=target_in.device).tril()  # (T, T)
        self_mask = causal & (target_in != self.hparams.pad_id).unsqueeze(1)  # (B, T, T)
        y = self.embed(target_in)
        for layer in self.decoder:
            y = layer(y, memory, self_mask, memory_mask)
        return y

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        return states @ self.embedding.weight.T  # the shared matrix as the pre-softmax projection (§3.4)

    def forward(self, source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        """(B, S), (B, T) → (B, T, vocab) next-token logits."""
        memory, memory_mask = self.encode(source)
        return self.logits(self.decode(target_in, memory, memory_mask))

    # --- training -------------------------------------------------------------------------------------------------
    def _losses(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(label-smoothed loss, summed NLL, token count) over the non-padding target tokens."""
        source, target = batch
        logits = self(source, target[:, :-1]).float()  # (B, T, V)
        labels = target[:, 1:]  # (B, T): the next token at every position
        flat_logits, flat_labels = logits.reshape(-1, logits.size(-1)), labels.reshape(-1)
        pad = self.hparams.pad_id
        smoothed = F.cross_entropy(
            flat_logits, flat_labels, ignore_index=pad, label_smoothing=self.hparams.label_smoothing
        )
        nll = F.cross_entropy(flat_logits, flat_labels, ignore_index=pad, reduction="sum")
        return smoothed, nll, (labels != pad).sum()

    def training_step(self, batch, batch_idx):
        loss, _, _ = self._losses(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        _, nll, tokens = self._losses(batch)
        self.val_nll.update(nll / tokens, weight=tokens)

    def test_step(self, batch, batch_idx):
        _, nll, tokens = self._losses(batch)
        self.test_nll.update(nll / tokens, weight=tokens)

    def on_validation_epoch_end(self):
        self._log_loss("val", self.val_nll)

    def on_test_epoch_end(self):
        self._log_loss("test", self.test_nll)

    def _log_loss(self, stage: str, metric: MeanMetric) -> None:
        loss = metric.compute()  # mean NLL per target token in nats, without label smoothing; reduced across ranks
        metric.reset()
        self.log(f"{stage}/loss", loss)
        self.log(f"{stage}/ppl", loss.clamp(max=50).exp())

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=1.0, betas=tuple(self.hparams.betas), eps=self.hparams.eps)
        d_model, warmup, factor = self.hparams.d_model, self.hparams.warmup_steps, self.hparams.lr_factor

        def lrate(step: int) -> float:  # §5.3, eq. 3 (× lr_factor, 1 in the paper); LambdaLR counts from 0, the paper 1
            step += 1
            return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lrate)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # --- decoding -------------------------------------------------------------------------------------------------
    def _max_lengths(self, source: torch.Tensor) -> torch.Tensor:
        """Per sentence: source length (tokens, </s> included) + max_extra_length (§6.1)."""
        return (source != self.hparams.pad_id).sum(1) + self.hparams.max_extra_length

    def _strip(self, tokens: torch.Tensor) -> list[list[int]]:
        """(B, t) ids from <s> on → per sentence the ids between <s> and the first </s>."""
        eos, out = self.hparams.eos_id, []
        for row in tokens[:, 1:].tolist():
            out.append(row[: row.index(eos)] if eos in row else row)
        return out

    def start_decoding(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> dict:
        """The decoding state: per decoder layer a cache of the memory's and the prefix's keys and values."""
        caches = [{"memory": layer.cross_attention.keys_values(memory)} for layer in self.decoder]
        return {"caches": caches, "memory_mask": memory_mask, "t": 0}

    def next_logits(self, last: torch.Tensor, state: dict) -> torch.Tensor:
        """(N,) the token just emitted → (N, vocab) logits of the next one; advances ``state`` by one position.

        Only the new position is computed: earlier positions' keys and values are cached. No padding mask is
        needed: padding follows </s> only, and what a finished hypothesis predicts is never used."""
        y = self.embedding(last).unsqueeze(1) * math.sqrt(self.hparams.d_model) + self.positions[state["t"]]
        y = self.dropout(y)  # (N, 1, d)
        for layer, cache in zip(self.decoder, state["caches"]):
            y = layer.step(y, cache, state["memory_mask"])
        state["t"] += 1
        return self.logits(y[:, 0])

    @staticmethod
    def reorder(state: dict, parent: torch.Tensor) -> None:
        """Beam search kept hypotheses ``parent`` (N,): their caches follow them."""
        for cache in state["caches"]:
            cache["self"] = tuple(x[parent] for x in cache["self"])

    @torch.no_grad()
    def greedy(self, source: torch.Tensor) -> list[list[int]]:
        """The most likely next token at every step, until </s> or the maximum length; ids without <s>/</s>."""
        pad, bos, eos = self.hparams.pad_id, self.hparams.bos_id, self.hparams.eos_id
        state = self.start_decoding(*self.encode(source))
        limit = self._max_lengths(source)  # (B,)
        tokens = torch.full((source.size(0), 1), bos, dtype=torch.long, device=source.device)
        done = torch.zeros(source.size(0), dtype=torch.bool, device=source.device)
        for t in range(int(limit.max())):
            best = self.next_logits(tokens[:, -1], state).argmax(-1)  # (B,)
            best = torch.where(t + 1 >= limit, eos, best)  # at the length limit the sentence ends
            best = torch.where(done, pad, best)
            tokens = torch.cat([tokens, best.unsqueeze(1)], dim=1)
            done |= best == eos
            if done.all():
                break
        return self._strip(tokens)

    @torch.no_grad()
    def beam_search(self, source: torch.Tensor, beam_size: int | None = None) -> list[list[int]]:
        """Beam search over a batch: the best hypothesis per sentence by log P / ((5 + |Y|) / 6)^α.

        A hypothesis that has emitted </s> keeps its place in the beam and extends only with padding at no cost, so
        finished and open hypotheses compete on raw log-probability, and the length penalty ranks the final k. With
        beam_size 1 this is exactly greedy decoding.
        """
        k = beam_size or self.hparams.beam_size
        pad, bos, eos = self.hparams.pad_id, self.hparams.bos_id, self.hparams.eos_id
        B = source.size(0)
        memory, memory_mask = self.encode(source)
        state = self.start_decoding(memory.repeat_interleave(k, 0), memory_mask.repeat_interleave(k, 0))  # B·k rows
        limit = self._max_lengths(source).repeat_interleave(k)  # (B·k,)
        tokens = torch.full((B * k, 1), bos, dtype=torch.long, device=source.device)  # (B·k, t)
        scores = torch.zeros(B, k, device=source.device)
        scores[:, 1:] = -math.inf  # one live hypothesis to start with, not k copies of it
        finished = torch.zeros(B * k, dtype=torch.bool, device=source.device)
        for t in range(int(limit.max())):
            logp = self.next_logits(tokens[:, -1], state).float().log_softmax(-1)  # (B·k, V)
            V = logp.size(-1)
            must_end = ~finished & (t + 1 >= limit)  # at the length limit: </s> is the only continuation
            logp[must_end] = logp[must_end].masked_fill(torch.arange(V, device=logp.device) != eos, -math.inf)
            logp[finished] = -math.inf
            logp[finished, pad] = 0.0  # a finished hypothesis carries on unchanged
            candidates = (scores.view(B * k, 1) + logp).view(B, k * V)
            scores, index = candidates.topk(k, dim=1)  # (B, k)
            parent = (torch.arange(B, device=source.device).unsqueeze(1) * k + index // V).view(-1)  # (B·k,)
            token = (index % V).view(-1, 1)
            tokens = torch.cat([tokens[parent], token], dim=1)
            self.reorder(state, parent)
            finished = finished[parent] | (token.squeeze(1) == eos)
            if finished.all():
                break
        lengths = ((tokens[:, 1:] != pad) & (tokens[:, 1:] != eos)).sum(1) + 1  # |Y|: the tokens and </s>
        penalty = ((5.0 + lengths.float()) / 6.0) ** self.hparams.length_penalty
        best = (scores.view(-1) / penalty).view(B, k).argmax(1)  # (B,)
        return self._strip(tokens[torch.arange(B, device=source.device) * k + best])
