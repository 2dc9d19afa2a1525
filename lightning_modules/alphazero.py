"""AlphaZero (2017/2018): a policy–value network trained only from games it plays against itself with PUCT search.

D. Silver, J. Schrittwieser, K. Simonyan, I. Antonoglou, A. Huang, A. Guez, T. Hubert, L. Baker, M. Lai, A. Bolton,
Y. Chen, T. Lillicrap, F. Hui, L. Sifre, G. van den Driessche, T. Graepel and D. Hassabis, "Mastering the game of Go
without human knowledge", Nature 550, 2017 (AlphaGo Zero); D. Silver, T. Hubert, J. Schrittwieser et al., "A general
reinforcement learning algorithm that masters chess, shogi, and Go through self-play", Science 362, 2018 (AlphaZero),
and its published pseudocode. What is the papers' and what is not:

- network (AlphaGo Zero, Methods "Neural network architecture"): a 3×3 convolution, ``blocks`` residual blocks
  (conv-BN-ReLU-conv-BN + skip, ReLU), a policy head (1×1 conv to 2 planes, BN, ReLU, linear to one logit per move)
  and a value head (1×1 conv to 1 plane, BN, ReLU, linear, ReLU, linear, tanh). The input is the game's own
  observation planes (open_spiel's ``observation_tensor``) plus one constant plane with the colour to play (the
  paper's 17th plane). Only the size is the CPU's: the papers use 19–39 blocks of 256 filters;
- search (AlphaZero pseudocode): PUCT, a = argmax Q(s, a) + c(s) P(s, a) √N(s) / (1 + N(s, a)) with
  c(s) = log((1 + N(s) + c_base) / c_base) + c_init; Q of an unvisited move 0; a leaf is expanded and evaluated by
  the network once (no rollouts); a terminal leaf is scored by the rules. At the root of every self-play move,
  Dirichlet noise: P = (1 − ε) p + ε η, η ~ Dir(α), ε = 0.25, with α "scaled in inverse proportion to the approximate
  number of legal moves" (Science, Methods: 0.3, 0.15, 0.03 for chess, shogi, Go): here α = ``dirichlet_scale`` /
  ``num_actions``. A fresh tree for every move, as in the pseudocode (with a per-game cache of network evaluations,
  which changes no number: the weights are fixed during a game);
- play: the move is sampled in proportion to the root's visit counts (τ = 1) for the first ``sampling_moves`` moves of
  a self-play game, then the most visited (τ → 0); evaluation always plays the most visited, without noise;
- training (AlphaZero): l = (z − v)² − π·log p + c‖θ‖², c = 1e-4 (weight decay: the pseudocode's tf.nn.l2_loss
  halves the square, so its gradient is c·θ, PyTorch's weight_decay), SGD with momentum 0.9, minibatches drawn
  uniformly from a window of the most recent self-play positions. Playing and learning alternate synchronously (each
  training step follows ``data.batch_size`` new games): the papers run them in parallel on thousands of TPUs, and
  AlphaZero updates continually without AlphaGo Zero's evaluator gate, as here. No resignation.

The replay window is model state (buffers), so it travels in every checkpoint and a resumed run samples from the same
positions. Every random draw (Dirichlet noise, move sampling, minibatch indices) comes from torch's global generator,
which the harness seeds and checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.base import Agent


class ResidualBlock(nn.Module):
    """conv 3×3 → BN → ReLU → conv 3×3 → BN → + input → ReLU (AlphaGo Zero, Methods)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


class PolicyValueNet(nn.Module):
    """(B, C + 1, H, W) planes → (B, A) move logits, (B,) value in [−1, 1] for the player to move."""

    def __init__(self, planes: int, height: int, width: int, num_actions: int, channels: int, blocks: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(planes, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()
        )
        self.tower = nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks)])
        self.policy_conv = nn.Sequential(nn.Conv2d(channels, 2, 1, bias=False), nn.BatchNorm2d(2), nn.ReLU())
        self.policy_fc = nn.Linear(2 * height * width, num_actions)
        self.value_conv = nn.Sequential(nn.Conv2d(channels, 1, 1, bias=False), nn.BatchNorm2d(1), nn.ReLU())
        self.value_fc = nn.Sequential(nn.Linear(height * width, channels), nn.ReLU(), nn.Linear(channels, 1), nn.Tanh())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.tower(self.stem(x))  # (B, channels, H, W)
        logits = self.policy_fc(self.policy_conv(h).flatten(1))  # (B, A)
        value = self.value_fc(self.value_conv(h).flatten(1)).squeeze(1)  # (B,)
        return logits, value

    @torch.no_grad()
    def folded(self) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
        """The same function in evaluation mode, each batch norm folded into its convolution: the search calls the
        net once per simulation on one position, where module overhead is most of the time (~2× faster on a CPU)."""

        def fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (out,)
            return conv.weight * scale[:, None, None, None], bn.bias - bn.running_mean * scale

        stem = fold(self.stem[0], self.stem[1])
        blocks = [(fold(b.conv1, b.bn1), fold(b.conv2, b.bn2)) for b in self.tower]
        policy, value = fold(self.policy_conv[0], self.policy_conv[1]), fold(self.value_conv[0], self.value_conv[1])
        pf, v1, v2 = self.policy_fc, self.value_fc[0], self.value_fc[2]

        def net(x: Tensor) -> tuple[Tensor, Tensor]:
            h = F.relu(F.conv2d(x, *stem, padding=1))
            for (w1, b1), (w2, b2) in blocks:
                h = F.relu(h + F.conv2d(F.relu(F.conv2d(h, w1, b1, padding=1)), w2, b2, padding=1))
            logits = F.linear(F.relu(F.conv2d(h, *policy)).flatten(1), pf.weight, pf.bias)
            v = F.linear(
                F.relu(F.linear(F.relu(F.conv2d(h, *value)).flatten(1), v1.weight, v1.bias)), v2.weight, v2.bias
            )
            return logits, torch.tanh(v).squeeze(1)

        return net


class Node:
    """A search-tree node. ``value_sum`` is from the view of the player who moved into it (its parent's mover), so a
    parent compares its children by their own Q directly."""

    __slots__ = ("prior", "visits", "value_sum", "player", "children")

    def __init__(self, prior: float) -> None:
        self.prior, self.visits, self.value_sum = prior, 0, 0.0
        self.player = -1  # the player to move here, once expanded
        self.children: dict[int, Node] = {}

    def q(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0  # an unvisited move counts 0 (pseudocode)


class AlphaZero(Agent):
    def __init__(
        self,
        observation_shape: tuple[int, ...] = (3, 3, 3),  # open_spiel's observation planes (C, H, W): from the task
        num_actions: int = 9,  # from the task
        channels: int = 256,  # filters per convolution (both papers)
        blocks: int = 19,  # residual blocks (AlphaGo Zero's 20-block net: 19 after the first convolution)
        simulations: int = 800,  # per move, in self-play and evaluation (AlphaZero)
        c_init: float = 1.25,  # PUCT exploration (AlphaZero pseudocode)
        c_base: float = 19652.0,
        dirichlet_scale: float = 10.0,  # α = scale / num_actions (0.3 × ~35 chess moves ≈ 0.03 × ~362 Go moves ≈ 10)
        dirichlet_epsilon: float = 0.25,
        sampling_moves: int = 30,  # τ = 1 for this many moves of a self-play game, then the most visited
        window: int = 1_000_000,  # replay window, in positions (AlphaZero: the last 1,000,000 games)
        minibatch: int = 4096,  # positions per training step (AlphaZero)
        lr: float = 0.2,  # AlphaZero's initial rate (dropped ×0.1 three times in the paper)
        momentum: float = 0.9,
        weight_decay: float = 1e-4,  # c in l = (z − v)² − π·log p + c‖θ‖² (as the pseudocode's l2_loss: c·θ)
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        planes, height, width = observation_shape
        self.net = PolicyValueNet(planes + 1, height, width, num_actions, channels, blocks)  # + the colour plane
        self.input_shape = (planes + 1, height, width)
        # the replay window: a ring of the most recent positions, model state so it is saved in every checkpoint
        self.register_buffer("window_x", torch.zeros(window, *self.input_shape, dtype=torch.uint8))  # 0/1 planes
        self.register_buffer("window_pi", torch.zeros(window, num_actions))  # visit-count policies π
        self.register_buffer("window_z", torch.zeros(window))  # outcomes z from the mover's view
        self.register_buffer("window_added", torch.zeros((), dtype=torch.long))  # positions ever added

    # --- the network's view of a state ---------------------------------------------------------------------------
    def encode(self, state) -> Tensor:
        """open_spiel state → (C + 1, H, W) planes: the observation and a plane of the colour to play (0 or 1)."""
        player = state.current_player()
        planes = torch.tensor(state.observation_tensor(player)).view(self.hparams.observation_shape)
        colour = torch.full((1, *planes.shape[1:]), float(player))
        return torch.cat([planes, colour])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.net(x)

    def evaluate(self, state, cache: dict) -> tuple[list[int], list[float], float]:
        """Legal moves, their priors p (softmax over the legal logits) and the value v for the player to move.
        ``cache`` holds the evaluations of one game (or one choice) under fixed weights, and the folded net."""
        key = str(state)  # the board decides the input (and, in these games, the player to move)
        if key not in cache:
            legal = state.legal_actions()
            logits, value = cache["net"](self.encode(state).unsqueeze(0).to(self.device))
            priors = torch.softmax(logits[0, legal], 0)
            cache[key] = (legal, priors.tolist(), float(value[0]))
        return cache[key]

    # --- PUCT search (AlphaZero pseudocode: run_mcts, select_child, ucb_score, backpropagate) ----------------------
    def expand(self, node: Node, state, cache: dict) -> float:
        """Create ``node``'s children with the network's priors; return v for the player to move at ``node``."""
        legal, priors, value = self.evaluate(state, cache)
        node.player = state.current_player()
        node.children = {a: Node(p) for a, p in zip(legal, priors)}
        return value

    def select(self, node: Node) -> tuple[int, Node]:
        """The child maximising Q + U; ties to the lowest move, so that a search is a function of its inputs."""
        c = math.log((1 + node.visits + self.hparams.c_base) / self.hparams.c_base) + self.hparams.c_init
        scale = c * math.sqrt(node.visits)
        best, best_score = None, -math.inf
        for action, child in node.children.items():  # in increasing move order (legal_actions is sorted)
            score = child.q() + scale * child.prior / (1 + child.visits)
            if score > best_score:
                best, best_score = action, score
        return best, node.children[best]

    def add_noise(self, root: Node) -> None:
        """P = (1 − ε) p + ε η, η ~ Dir(α) at the root, drawn from torch's global generator."""
        alpha = self.hparams.dirichlet_scale / self.hparams.num_actions
        eta = torch.distributions.Dirichlet(torch.full((len(root.children),), alpha)).sample().tolist()
        eps = self.hparams.dirichlet_epsilon
        for child, noise in zip(root.children.values(), eta):
            child.prior = (1 - eps) * child.prior + eps * noise

    @torch.no_grad()
    def search(self, state, noise: bool, cache: dict) -> Node:
        """``simulations`` PUCT simulations from ``state`` (not changed); the root, its children's visits counted."""
        if "net" not in cache:  # evaluation mode: batch-norm statistics of the training minibatches
            cache["net"] = self.net.folded()
        root = Node(1.0)
        self.expand(root, state, cache)
        root.visits = 1  # the root's own evaluation, as every leaf's: √N > 0 at the first selection
        if noise:
            self.add_noise(root)
        for _ in range(self.hparams.simulations):
            node, scratch, path = root, state.clone(), [root]
            while node.children:  # down the tree to a leaf
                action, node = self.select(node)
                scratch.apply_action(action)
                path.append(node)
            if scratch.is_terminal():
                values = scratch.returns()  # by the rules, one value per player
            else:
                v = self.expand(node, scratch, cache)  # for node.player, to move at the leaf
                values = [v, -v] if node.player == 0 else [-v, v]
            root.visits += 1
            for parent, child in zip(path, path[1:]):  # each child's value from its parent's mover's view
                child.visits += 1
                child.value_sum += values[parent.player]
        return root

    def visit_policy(self, root: Node) -> Tensor:
        """π: the root's visit counts normalised, (num_actions,), zero on illegal moves."""
        pi = torch.zeros(self.hparams.num_actions)
        for action, child in root.children.items():
            pi[action] = child.visits
        return pi / pi.sum()

    # --- the Player interface (benchmarks/tasks/interfaces.py) -----------------------------------------------------
    def self_play(self, state) -> list[tuple[Tensor, Tensor, int]]:
        """One game from ``state`` against itself, with root noise and τ = 1 for the first ``sampling_moves`` moves:
        each position's (planes (C + 1, H, W), π (num_actions,), the player to move). ``state`` is played on."""
        positions, cache, move = [], {}, 0
        while not state.is_terminal():
            root = self.search(state, noise=True, cache=cache)
            pi = self.visit_policy(root)
            positions.append((self.encode(state), pi, state.current_player()))
            if move < self.hparams.sampling_moves:
                action = int(torch.multinomial(pi, 1))  # τ = 1: in proportion to the visits
            else:
                action = int(pi.argmax())  # τ → 0; the first of equal counts
            state.apply_action(action)
            move += 1
        return positions

    def choose(self, state) -> int:
        """The move played in evaluation: a search without noise, the most visited move (the lowest of a tie)."""
        return int(self.visit_policy(self.search(state, noise=False, cache={})).argmax())

    # --- learning from the games -------------------------------------------------------------------------------------
    @torch.no_grad()
    def remember(self, x: Tensor, pi: Tensor, z: Tensor) -> None:
        """Append positions to the replay window, overwriting the oldest."""
        capacity = self.hparams.window
        slots = (self.window_added + torch.arange(len(x), device=self.device)) % capacity
        self.window_x[slots] = x.to(torch.uint8)
        self.window_pi[slots] = pi.float()
        self.window_z[slots] = z.float()
        self.window_added += len(x)

    def training_step(self, batch, batch_idx):
        """``batch``: the new games' positions, (N, C + 1, H, W) planes, (N, A) π, (N,) z. They join the window;
        one SGD step is taken on a minibatch drawn uniformly from it."""
        self.remember(*batch)
        held = int(min(self.window_added, self.hparams.window))
        index = torch.randint(held, (self.hparams.minibatch,)).to(self.device)
        x, pi, z = self.window_x[index].float(), self.window_pi[index], self.window_z[index]
        logits, v = self.net(x)
        value_loss = F.mse_loss(v, z)  # (z − v)²
        policy_loss = -(pi * F.log_softmax(logits, 1)).sum(1).mean()  # −π·log p
        loss = value_loss + policy_loss  # + c‖θ‖² through the optimiser's weight decay
        self.log_dict({"train/loss": loss, "train/value_loss": value_loss, "train/policy_loss": policy_loss})
        return loss

    def configure_optimizers(self):
        h = self.hparams
        return torch.optim.SGD(self.parameters(), lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay)
