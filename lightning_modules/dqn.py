"""Deep Q-learning with experience replay (DQN), as in "Playing Atari with Deep Reinforcement Learning".

V. Mnih, K. Kavukcuoglu, D. Silver, A. Graves, I. Antonoglou, D. Wierstra, M. Riedmiller, NIPS Deep Learning
Workshop 2013 (arXiv:1312.5602). Algorithm 1, read top to bottom:

- the task's environment gives the agent an observation; the agent acts ε-greedily on its action values Q(s, ·; θ)
  (``act``), ε annealed linearly from 1 to 0.1 over the first million frames, then fixed (§5);
- each transition (s, a, r, s', terminal) goes into a replay memory of the N most recent ones (N = 1,000,000, §5);
  rewards are clipped to their sign, −1, 0 or +1, in training only (§5: one learning rate for every game);
- every step, a minibatch of 32 transitions drawn uniformly from the memory takes one RMSProp step on the squared
  error between Q(s, a; θ) and the target y = r + γ max_a' Q(s', a'; θ), with y = r at a terminal (Eq. 2-3). The
  2013 algorithm bootstraps from the network under training itself: there is no target network (that is the 2015
  Nature paper's addition, ``target_update_steps`` here, 0 = none).
- the network (§4.1): 84×84×4 input; 16 filters 8×8 stride 4, ReLU; 32 filters 4×4 stride 2, ReLU; 256 fully
  connected ReLU units; one linear output per action.

What the 2013 paper leaves unstated and what is chosen here: the discount γ = 0.99 and RMSProp's learning rate
2.5e-4, squared-gradient decay 0.95 and ε 0.01 (the 2015 paper's values; PyTorch's RMSprop adds ε outside the square
root, the DeepMind code inside it). A "frame" of the ε schedule counts an agent step (4 emulator frames), as in the
DeepMind code.

For small environments the same algorithm runs with a multilayer perceptron (``network="mlp"``), Adam, a target
network, a warm-up before learning (``learning_starts``) and several environment steps per update (the data module's
batch): CleanRL's ``dqn.py`` recipe, an open variant.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.base import Agent

REPLAY_CHECKPOINT_LIMIT = 2 * 1024**3  # bytes: a larger memory (Atari's million frames) is not put in checkpoints


def atari_2013(channels: int, num_actions: int) -> nn.Sequential:
    """§4.1's network: (B, 4, 84, 84) frames in [0, 1] → (B, num_actions) action values."""
    return nn.Sequential(
        nn.Conv2d(channels, 16, 8, stride=4),  # (B, 16, 20, 20)
        nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2),  # (B, 32, 9, 9)
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 9 * 9, 256),
        nn.ReLU(),
        nn.Linear(256, num_actions),
    )


def mlp(inputs: int, hidden: tuple[int, ...], num_actions: int) -> nn.Sequential:
    widths = [inputs, *hidden]
    layers = [m for a, b in zip(widths, widths[1:]) for m in (nn.Linear(a, b), nn.ReLU())]
    return nn.Sequential(*layers, nn.Linear(widths[-1], num_actions))


class ReplayMemory:
    """The N most recent transitions, in circular tensors (shapes and dtypes are the environment's: Atari frames stay
    uint8). The tensors grow as the memory fills, doubling, so a short run never holds a million transitions' room."""

    FIELDS = ("observation", "action", "reward", "next_observation", "terminated")

    def __init__(self, capacity: int) -> None:
        self.capacity, self.size, self.position = capacity, 0, 0
        self.tensors: dict[str, torch.Tensor] = {}

    def _reserve(self, batch: dict[str, torch.Tensor], needed: int) -> None:
        room = len(self.tensors["action"]) if self.tensors else 0
        if room >= needed:
            return
        room = min(self.capacity, max(needed, 2 * room, 1024))
        grown = {k: batch[k].new_zeros((room, *batch[k].shape[1:])) for k in self.FIELDS}
        for key, old in self.tensors.items():
            grown[key][: self.size] = old[: self.size]  # not yet full: nothing has wrapped around
        self.tensors = grown

    def add(self, batch: dict[str, torch.Tensor]) -> None:
        n = len(batch["action"])
        self._reserve(batch, min(self.capacity, self.size + n))
        where = (self.position + torch.arange(n, device=batch["action"].device)) % self.capacity
        for key in self.FIELDS:
            self.tensors[key][where] = batch[key]
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, n: int) -> dict[str, torch.Tensor]:
        """``n`` transitions drawn uniformly, with replacement (torch's global CPU stream: seeded, checkpointed)."""
        index = torch.randint(self.size, (n,)).to(self.tensors["action"].device)
        return {key: tensor[index] for key, tensor in self.tensors.items()}

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def state(self) -> dict:
        return {"size": self.size, "position": self.position,
                "tensors": {k: t[: self.size].cpu() for k, t in self.tensors.items()}}  # fmt: skip

    def load(self, state: dict, device: torch.device) -> None:
        self.size, self.position = state["size"], state["position"]
        self.tensors = {key: stored.to(device) for key, stored in state["tensors"].items()}  # grows again when needed


class DQN(Agent):
    def __init__(
        self,
        num_actions: int = 4,
        observation_shape: tuple[int, ...] = (4, 84, 84),
        network: Literal["atari-2013", "mlp"] = "atari-2013",
        hidden: tuple[int, ...] = (120, 84),  # the MLP's widths (network="mlp" only)
        replay_size: int = 1_000_000,
        minibatch: int = 32,
        gamma: float = 0.99,
        optimizer: Literal["rmsprop", "adam"] = "rmsprop",
        lr: float = 2.5e-4,
        rmsprop_alpha: float = 0.95,
        rmsprop_eps: float = 0.01,
        epsilon_start: float = 1.0,
        epsilon_end: float = 0.1,
        epsilon_steps: int = 1_000_000,  # agent steps over which ε falls linearly
        learning_starts: int = 0,  # agent steps gathered before the first update
        target_update_steps: int = 0,  # 0: no target network (2013); else its weights are copied every so many steps
        clip_rewards: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if network == "atari-2013":
            self.network = atari_2013(observation_shape[0], num_actions)
        else:
            self.network = mlp(math.prod(observation_shape), hidden, num_actions)
        self.target = copy.deepcopy(self.network).requires_grad_(False) if target_update_steps else None
        self.memory = ReplayMemory(replay_size)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # agent steps gathered (the ε schedule's t)

    # --- acting -------------------------------------------------------------------------------------------------------
    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.network(self._input(observations))  # (B, num_actions)

    def epsilon(self) -> float:
        h = self.hparams
        done = min(int(self.steps) / h.epsilon_steps, 1.0)
        return h.epsilon_start + done * (h.epsilon_end - h.epsilon_start)

    @torch.no_grad()
    def act(self, observations: torch.Tensor) -> torch.Tensor:
        """ε-greedy behaviour (Algorithm 1): a uniformly random action with probability ε, else argmax_a Q(s, a)."""
        n = len(observations)
        explore = torch.rand(n) < self.epsilon()  # (B,) the global CPU stream: the same on every accelerator
        random_actions = torch.randint(self.hparams.num_actions, (n,))
        greedy = self(observations).argmax(dim=1).cpu()
        self.steps += n
        return torch.where(explore, random_actions, greedy).to(observations.device)

    # --- learning -----------------------------------------------------------------------------------------------------
    @property
    def warming_up(self) -> bool:
        """True until the first update: the memory holds fewer than ``learning_starts`` steps or one minibatch."""
        return int(self.steps) <= self.hparams.learning_starts or self.memory.size < self.hparams.minibatch

    def training_step(self, batch, batch_idx):
        h = self.hparams
        before = int(self.steps) - len(batch["action"])  # the steps counter already counts this batch's steps
        self.memory.add(batch)
        if self.warming_up:
            return None  # no update yet
        data = self.memory.sample(h.minibatch)
        reward = data["reward"].sign() if h.clip_rewards else data["reward"]  # §5: −1, 0, +1
        with torch.no_grad():  # y: the bootstrap target, not differentiated (Eq. 3)
            bootstrap = (self.target or self.network)(self._input(data["next_observation"])).max(dim=1).values
            y = reward + h.gamma * bootstrap * (~data["terminated"]).float()  # (minibatch,)
        q = self(data["observation"]).gather(1, data["action"].long().unsqueeze(1)).squeeze(1)  # (minibatch,)
        loss = F.mse_loss(q, y)
        if self.target is not None and int(self.steps) // h.target_update_steps > before // h.target_update_steps:
            self.target.load_state_dict(self.network.state_dict())
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/epsilon", self.epsilon())
        return loss

    def _input(self, observations: torch.Tensor) -> torch.Tensor:
        x = observations.float() / 255 if observations.dtype == torch.uint8 else observations.float()  # Atari: [0, 1]
        return x.flatten(1) if self.hparams.network == "mlp" else x

    def configure_optimizers(self):
        h = self.hparams
        if h.optimizer == "adam":
            return torch.optim.Adam(self.network.parameters(), lr=h.lr)
        return torch.optim.RMSprop(self.network.parameters(), lr=h.lr, alpha=h.rmsprop_alpha, eps=h.rmsprop_eps)

    # --- the replay memory travels with the checkpoint (exact resume), when it is small enough ------------------------
    def on_save_checkpoint(self, checkpoint):
        if self.memory.nbytes() <= REPLAY_CHECKPOINT_LIMIT:
            checkpoint["replay_memory"] = self.memory.state()

    def on_load_checkpoint(self, checkpoint):
        if "replay_memory" in checkpoint:
            self.memory.load(checkpoint["replay_memory"], self.device)
        else:
            print(
                "DQN: this checkpoint holds no replay memory (it was larger than 2 GiB): the resumed run starts from "
                "an empty memory, so it does not continue exactly as an uninterrupted one would",
                flush=True,
            )
