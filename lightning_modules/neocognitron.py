"""The Neocognitron (Fukushima 1980): S-layers that organise themselves without a teacher, fixed C-layers that pool.

K. Fukushima, "Neocognitron: A Self-organizing Neural Network Model for a Mechanism of Pattern Recognition Unaffected
by Shift in Position", Biological Cybernetics 36, 193-202 (1980). Checked afterwards against an OCR copy of the
paper (its prose is clean, its display equations partly garbled): the forms of eqs. (1)-(6), r = (4.0, 1.5, 1.5),
q = (1.0, 16.0, 16.0), α = 0.5, 5×5 S-columns in US1 and US2, the choice of representatives and the reinforcement of
all layers at every presentation are the paper's. Not the paper's: the random initial a (below), the 3×3 S-columns of
US3, the forms of c and d, the strides and the edges, the plane counts and the labelled reading; the config lists them.

The network (the paper's Fig. 2), a cascade U0 → US1 → UC1 → US2 → UC2 → US3 → UC3. Every layer is a stack of
"cell-planes"; all cells of a plane share their input weights and differ only in position (the paper's assumption that
makes the response shift-invariant — a convolution, in today's words).

S-cell, eq. (1) (plane k of layer l at position n; u_C the C-cells of layer l−1, u_C0 the input):

    u_S(k, n) = r · φ[ (1 + Σ_κ Σ_ν a(κ, ν, k) · u_C(κ, n + ν)) / (1 + r/(1 + r) · b(k) · v_C(n)) − 1 ]
    φ[x] = max(x, 0)

    v_C(n) = sqrt( Σ_κ Σ_ν c(ν) · u_C(κ, n + ν)² )          eq. (3): the V_C-cell, a weighted root mean square

φ is eq. (2). The paper's copy reads the inhibition's factor as 2r/(1 + r) with Δb = (q/2)·v_C; this file's r/(1 + r)
with Δb = q·v_C is the same product (b here is twice the paper's b), so the outputs are the same.

a (excitatory, modifiable) and b (the shunting inhibition from the V_C-cell, modifiable) start at small positive random
values and 0 (the paper's initial a are small and *not* random: a function of ν and of the planes' indices that gives
each S1 plane a weak preference for its own orientation, whose formula the available copy does not show); c (fixed)
falls off monotonically with |ν| and sums to 1 over κ and ν; r sets the selectivity: when a and b have grown large,
u_S > 0 only where the input's c-weighted cosine with the learned pattern exceeds r / (1 + r).

C-cell, eqs. (4)–(6) (fixed weights d, falling off with |ν|; each C-plane pools its own S-plane):

    u_C(k, n) = ψ[ (1 + Σ_ν d(ν) · u_S(k, n + ν)) / (1 + v_S(n)) − 1 ],   ψ[x] = φ[x] / (α + φ[x])
    v_S(n) = (1/K) Σ_k Σ_ν d(ν) · u_S(k, n + ν)                              the V_S-cell: the planes' mean

Self-organisation without a teacher, the two equations after eq. (6) (eqs. 7–8): digits are presented one at a time.
In each S-layer the S-cells are grouped into S-columns: the cells of every plane in a small area (``column``),
overlapping. In each column the cell of largest output is a candidate; a plane with several candidates keeps the
largest as its representative, so each plane has at most one. Only representatives are reinforced, and since a plane's
cells share their weights, the whole plane changes:

    Δa(κ, ν, k̂) = q · c(ν) · u_C(κ, n̂ + ν),     Δb(k̂) = q · v_C(n̂)

All three S-layers are reinforced at every presentation, from the same forward pass. A plane that never becomes a
representative keeps its small random a: it answers weakly to anything, and so it is recruited by the first input that
the reinforced planes do not answer more strongly.

Recognition: the paper presented five patterns, and after self-organisation each UC3 cell responded to one of them; the
pattern is read from which UC3 cell responds. MNIST has ten classes and thousands of writers, so here UC3 has many
planes and the reading is a labelled pass (not in the paper): after self-organisation each UC3 plane is assigned the
majority label of the training digits for which it responds most, and a digit's class score is the largest UC3
response among the planes of that class (−1 for a class no plane reads). ``NeocognitronLinear`` (the open variant
``neocognitron-linear``) trains a softmax regression on UC3 instead: a probe of the same self-organised features.

Scaled for 28×28 MNIST (the paper: a 16×16 input, 24 planes in every layer, 16×16 → 10×10 → 8×8 → 6×6 → 2×2 → 1×1):
US1 ``planes[0]``×28×28 (5×5 receptive fields) → UC1 ×14×14 (5×5 d, every second position) → US2 ``planes[1]``×14×14
(5×5 over every UC1 plane) → UC2 ×7×7 → US3 ``planes[2]``×3×3 (5×5, no padding) → UC3 ×1×1 (3×3 d: the whole US3).
Cells beyond an edge are silent (zero padding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lightning_modules.base import Classifier


def falloff(size: int, gamma: float) -> torch.Tensor:
    """A (size, size) window of weights γ^|ν| (|ν| the Euclidean distance from the centre): monotonically decreasing."""
    offsets = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    distance = (offsets[:, None] ** 2 + offsets[None, :] ** 2).sqrt()
    return gamma**distance


def phi(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(min=0)


def psi(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """The C-cell's saturating output, eq. (5): φ[x] / (α + φ[x]) ∈ [0, 1)."""
    return phi(x) / (alpha + phi(x))


def s_cells(u_c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, r: float, padding: int):
    """Eqs. (1)–(2): (B, K_prev, H, W) C-cells → (S-cells (B, K, H', W'), V_C-cells (B, H', W'))."""
    excitation = F.conv2d(u_c, a, padding=padding)  # (B, K, H', W') Σ_κ Σ_ν a · u_C
    k_prev = u_c.shape[1]
    energy = F.conv2d(u_c.square().sum(1, keepdim=True), (c / k_prev)[None, None], padding=padding)  # Σ c · u_C²
    v_c = energy.clamp(min=0).sqrt()[:, 0]  # (B, H', W'); c/K_prev: c summed over κ and ν is 1
    inhibition = r / (1 + r) * b[None, :, None, None] * v_c[:, None]  # (B, K, H', W')
    return r * phi((1 + excitation) / (1 + inhibition) - 1), v_c


def c_cells(u_s: torch.Tensor, d: torch.Tensor, alpha: float, stride: int, padding: int) -> torch.Tensor:
    """Eqs. (3)–(5): (B, K, H, W) S-cells → (B, K, H', W') C-cells; each C-plane pools its own S-plane with d."""
    planes = u_s.shape[1]
    pooled = F.conv2d(u_s, d.expand(planes, 1, *d.shape), stride=stride, padding=padding, groups=planes)
    v_s = pooled.mean(1, keepdim=True)  # (B, 1, H', W') the V_S-cell: (1/K) Σ_k Σ_ν d · u_S
    return psi((1 + pooled) / (1 + v_s) - 1, alpha)


def representatives(u_s: torch.Tensor, column: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One presentation's representatives in an S-layer (K, H, W): (planes (R,), flat positions (R,)).

    Every position centres an S-column of ``column``×``column`` positions × all planes (columns overlap); its cell
    of largest output is a candidate (a silent column has none). A plane with several candidates keeps the largest:
    at most one representative per plane. Ties go to the lowest plane and position, so the choice is deterministic."""
    _, h, w = u_s.shape
    best, best_plane = u_s.max(0)  # (H, W): the largest output at each position, and its plane
    column = min(column, h, w)
    _, where = F.max_pool2d(best[None, None], column, stride=1, padding=column // 2, return_indices=True)
    positions = where.flatten().unique()  # candidates' flat positions
    values = best.flatten()[positions]
    keep = values > 0
    positions, values = positions[keep], values[keep]
    plane = best_plane.flatten()[positions]
    # per plane, its candidate of largest output: sort by (plane, −value), take the first of each plane
    order = torch.argsort(plane * (values.max() + 1 if len(values) else 1) - values, stable=True)
    plane, positions = plane[order], positions[order]
    first = torch.ones_like(plane, dtype=torch.bool)
    first[1:] = plane[1:] != plane[:-1]
    return plane[first], positions[first]


class Neocognitron(Classifier):
    def __init__(
        self,
        num_classes: int = 10,
        input_shape: tuple[int, ...] = (1, 28, 28),
        planes: tuple[int, int, int] = (24, 24, 24),
        r: tuple[float, float, float] = (4.0, 1.5, 1.5),
        q: tuple[float, float, float] = (1.0, 16.0, 16.0),
        column: tuple[int, int, int] = (5, 5, 3),
        c_gamma: float = 0.8,
        d_gamma: float = 0.8,
        alpha: float = 0.5,
        initial_a: float = 0.01,
        organise_epochs: int = 1,
        organise_digits: int = 10_000,
    ) -> None:
        super().__init__(num_classes)
        self.save_hyperparameters()
        self.automatic_optimization = False  # reinforcement of the representatives, no gradients
        if tuple(input_shape[1:]) != (28, 28):
            raise ValueError(f"the layer sizes are set for 28×28 inputs, got {tuple(input_shape)}")
        inputs = (input_shape[0], planes[0], planes[1])  # the C-planes (or input planes) each S-layer reads
        for layer in range(3):
            # a: small positive random values (drawn from the run's seeded generator); b: 0
            self.register_buffer(
                f"a{layer + 1}", torch.rand(planes[layer], inputs[layer], 5, 5) * initial_a
            )  # (K, K_prev, 5, 5)
            self.register_buffer(f"b{layer + 1}", torch.zeros(planes[layer]))  # (K,)
        c = falloff(5, c_gamma)
        self.register_buffer("c", c / c.sum())  # (5, 5) c(ν), summing to 1 (divided by K_prev in s_cells)
        self.register_buffer("d", falloff(5, d_gamma))  # (5, 5) d(ν) of UC1 and UC2, 1 at the centre
        self.register_buffer("d3", falloff(3, d_gamma))  # (3, 3) UC3's d over the whole US3
        # the labelled reading: how often each UC3 plane responded most to a digit of each class, and its label
        self.register_buffer("votes", torch.zeros(planes[2], num_classes, dtype=torch.long))  # (K3, C)
        self.register_buffer("plane_label", torch.full((planes[2],), -1, dtype=torch.long))  # (K3,) −1: none
        self.register_buffer("organised", torch.zeros((), dtype=torch.long))  # digits presented so far

    # --- the network ---------------------------------------------------------------------------------------------
    def layers(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(B, 1, 28, 28) → per module l: (its input u_C(l−1), u_Sl, v_Cl, u_Cl)."""
        hp = self.hparams
        out, u = [], x.float()
        pooling = [(self.d, 2, 2), (self.d, 2, 2), (self.d3, 1, 0)]  # (d, stride, padding) of UC1, UC2, UC3
        paddings = (2, 2, 0)  # US1, US2 keep their input's size; US3 sees 5×5 of UC2's 7×7 → 3×3
        for layer in range(3):
            u_s, v_c = s_cells(
                u, getattr(self, f"a{layer + 1}"), getattr(self, f"b{layer + 1}"), self.c, hp.r[layer], paddings[layer]
            )
            d, stride, padding = pooling[layer]
            u_c = c_cells(u_s, d, hp.alpha, stride, padding)
            out.append((u, u_s, v_c, u_c))
            u = u_c
        return out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """UC3: (B, K3) responses in [0, 1)."""
        with torch.autocast(self.device.type, enabled=False):
            return self.layers(x)[-1][3].flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C) class scores: the largest UC3 response among the planes read as each class; −1 where none is."""
        uc3 = self.features(x)  # (B, K3)
        labelled = self.plane_label >= 0
        member = F.one_hot(self.plane_label.clamp(min=0), self.hparams.num_classes).bool() & labelled[:, None]
        scores = uc3[:, :, None].masked_fill(~member[None], -1.0)  # (B, K3, C)
        return scores.amax(1)

    def probe_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """US1 and UC1, (B, K1, 28, 28) and (B, K1, 14, 14): the maps `milestones probe` shows gratings to."""
        _, u_s, _, u_c = self.layers(x)[0]
        return u_s, u_c

    # --- self-organisation ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def reinforce(self, x: torch.Tensor) -> int:
        """Present one digit (1, 1, 28, 28); reinforce each S-layer's representatives, eq. (6). Returns their count."""
        hp = self.hparams
        paddings = (2, 2, 0)
        count = 0
        for layer, (u_c, u_s, v_c, _) in enumerate(self.layers(x)):
            plane, position = representatives(u_s[0], hp.column[layer])
            if len(plane) == 0:
                continue
            a, b = getattr(self, f"a{layer + 1}"), getattr(self, f"b{layer + 1}")
            k_prev, size = a.shape[1], a.shape[-1]
            patches = F.unfold(u_c, size, padding=paddings[layer])[0]  # (K_prev·5·5, H'·W'): each S-cell's inputs
            inputs = patches[:, position].T.reshape(-1, k_prev, size, size)  # (R, K_prev, 5, 5)
            a[plane] += hp.q[layer] * (self.c / k_prev) * inputs  # Δa = q · c(ν) · u_C(κ, n̂ + ν)
            b[plane] += hp.q[layer] * v_c[0].flatten()[position]  # Δb = q · v_C(n̂)
            count += len(plane)
        return count

    def organising(self) -> bool:
        return self.current_epoch < self.hparams.organise_epochs

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.organising():  # presentations without a teacher: the labels are not read
            reinforced = 0
            for digit in x:
                if self.organised >= self.hparams.organise_digits * (self.current_epoch + 1):
                    break  # this epoch's share of digits has been presented
                reinforced += self.reinforce(digit[None])
                self.organised += 1
            self.log("train/reinforced", float(reinforced) / len(x), prog_bar=True)
            return torch.zeros((), device=self.device)
        return self.read(x, y)

    @torch.no_grad()
    def read(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The labelled reading pass: the UC3 plane that responds most to each digit casts a vote for its label."""
        uc3 = self.features(x)  # (B, K3)
        top, plane = uc3.max(1)
        responded = top > 0  # a digit no UC3 cell answers votes for nothing
        self.votes.index_put_((plane[responded], y[responded]), torch.ones_like(y[responded]), accumulate=True)
        voted = self.votes.sum(1) > 0
        self.plane_label.copy_(torch.where(voted, self.votes.argmax(1), -1))  # the majority label (first on a tie)
        silent = 1.0 - responded.float().mean()
        self.log("train/silent", silent, prog_bar=True)  # the share of digits to which no UC3 cell responds
        return silent

    def on_train_epoch_start(self) -> None:
        if not self.organising() and self.current_epoch == self.hparams.organise_epochs:
            self.votes.zero_()  # one reading, with the organised network

    def configure_optimizers(self):
        return None


class NeocognitronLinear(Neocognitron):
    """The open variant: the same self-organised network, read by a softmax regression on UC3 (a linear probe).

    After self-organisation the network is fixed; the probe's weights (buffers, zero at the start) follow plain
    mini-batch gradient descent on the cross-entropy, W ← W − lr · (softmax(W f + β) − onehot(y))ᵀ f / B, written out
    as the perceptron's and ADALINE's rules are (no autograd: the model has no gradient-trained parameters)."""

    def __init__(
        self,
        num_classes: int = 10,
        input_shape: tuple[int, ...] = (1, 28, 28),
        planes: tuple[int, int, int] = (24, 24, 24),
        r: tuple[float, float, float] = (4.0, 1.5, 1.5),
        q: tuple[float, float, float] = (1.0, 16.0, 16.0),
        column: tuple[int, int, int] = (5, 5, 3),
        c_gamma: float = 0.8,
        d_gamma: float = 0.8,
        alpha: float = 0.5,
        initial_a: float = 0.01,
        organise_epochs: int = 1,
        organise_digits: int = 10_000,
        lr: float = 0.5,
    ) -> None:
        super().__init__(num_classes, input_shape, planes, r, q, column, c_gamma, d_gamma, alpha, initial_a,
                         organise_epochs, organise_digits)  # fmt: skip
        self.save_hyperparameters()
        self.register_buffer("probe_weight", torch.zeros(num_classes, planes[2]))  # (C, K3)
        self.register_buffer("probe_bias", torch.zeros(num_classes))  # (C,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x) @ self.probe_weight.T + self.probe_bias  # (B, C) logits

    def training_step(self, batch, batch_idx):
        if self.organising():
            return super().training_step(batch, batch_idx)
        x, y = batch
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            uc3 = self.features(x)  # (B, K3): the organised network, fixed
            logits = uc3 @ self.probe_weight.T + self.probe_bias  # (B, C)
            loss = F.cross_entropy(logits, y)
            error = (logits.softmax(1) - F.one_hot(y, self.hparams.num_classes).float()) / len(
                y
            )  # (B, C) ∂loss/∂logits
            self.probe_weight -= self.hparams.lr * error.T @ uc3
            self.probe_bias -= self.hparams.lr * error.sum(0)
        self.log("train/loss", loss, prog_bar=True)
        return loss
