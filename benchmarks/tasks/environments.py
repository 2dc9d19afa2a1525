"""Environment tasks: an agent acts in a gymnasium environment; the metric is the average score of evaluation episodes.

Environments come from the ecosystem, pinned: gymnasium (classic control, and the Atari wrappers) and ale-py (the
Arcade Learning Environment, whose wheels ship the ROMs). The pinned versions are part of the task's identity (a
result records it), and a data module refuses to start where another version is installed.

Protocol, for every entry alike (DQN 2013's where the paper has one: Mnih et al. 2013, §5):
- training: one environment, seeded with the run's seed at its first reset; an episode that ends is reset at once
  (unseeded: the environment's own random stream continues). Rewards reach the agent as the environment gives them
  (clipping is an agent's choice: DQN's). ``data.batch_size`` environment steps are gathered per training step.
- evaluation: ε-greedy on the agent's action values with ε = 0.05 (DQN 2013 §5; CleanRL's evaluation too), in fresh
  environments seeded per episode (validation and test use disjoint seeds, derived from the run's seed); the score of
  an episode is its undiscounted, unclipped return; the metric is the mean over the episodes. Validation (after each
  epoch) selects the weights; the test plays more episodes with the selected weights.
- Atari (§4.1, §5): frames max-pooled over the last two of each 4 skipped (the agent sees every 4th frame and its
  action repeats), grey, 84×84, 4 frames stacked; no sticky actions, no no-op starts, the game's minimal action set.
  The 2013 paper down-samples to 110×84 and crops 84×84; gymnasium's AtariPreprocessing resizes the frame to 84×84
  (the 2015 Nature paper's form): every entry on the task sees the same frames.
"""

from __future__ import annotations

import hashlib
import math
import pickle
from dataclasses import dataclass
from importlib import metadata

import numpy as np
import torch

from benchmarks.tasks.base import DataIdentity, Metric
from benchmarks.tasks.files import DataError
from benchmarks.tasks.interaction import InteractionData, InteractionTask
from benchmarks.tasks.interfaces import ACTOR

EVAL_EPSILON = 0.05
EVAL_SEED_BASE = {"val": 1_000_000, "test": 2_000_000}  # + 1,000 × the run's seed + the episode's index


class EnvironmentUnavailable(DataError):
    """An environment that cannot be made as the task declares it (unknown id, missing ROM, another version of its
    simulator): one line naming it and what to do; the command line prints it and exits 2, before any training."""


def installed(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


class EnvironmentData(InteractionData):
    """Experience from one gymnasium environment: each training batch is ``batch_size`` transitions
    (observation, action, reward, next observation, terminated), the action chosen by ``agent.act``."""

    env_id: str = ""
    make_kwargs: dict = {}
    packages: dict[str, str] = {"gymnasium": "1.4.0"}  # pinned: a result on the task was made with exactly these

    def __init__(self, data_dir=None, batch_size: int = 1, seed: int = 0, download: bool = False,
                 steps_per_epoch: int = 10_000) -> None:  # fmt: skip
        super().__init__(data_dir, batch_size, seed, download, steps_per_epoch)
        self.check_packages()
        self.env = self.make_env()
        self.observation, self.episode_return, self.episode_length = None, 0.0, 0
        self.episodes: list[tuple[float, int]] = []  # (return, length) of the training episodes finished
        self.random_policy = torch.Generator().manual_seed(seed)
        self.evaluation_limit: tuple[int, int] | None = None  # (episodes, steps) in place of the task's: examples

    # --- identity -----------------------------------------------------------------------------------------------------
    @classmethod
    def spec(cls, versions: dict[str, str | None]) -> str:
        wrappers = " ".join(f"{k}={v}" for k, v in sorted(cls.make_kwargs.items()))
        packages = " ".join(f"{name}=={version}" for name, version in sorted(versions.items()))
        return f"{cls.env_id} {wrappers} {cls.__name__} {packages}"

    @classmethod
    def declared_identity(cls) -> DataIdentity:
        """The environment: its id, its wrappers and the pinned packages that simulate it, as one checksum."""
        return DataIdentity(required={f"environment:{cls.env_id}": cls._digest(cls.packages)})

    @classmethod
    def _digest(cls, versions) -> str:
        return "sha256:" + hashlib.sha256(cls.spec(versions).encode()).hexdigest()

    def identity(self) -> dict[str, str]:
        return {f"environment:{self.env_id}": self._digest({name: installed(name) for name in self.packages})}

    @classmethod
    def check_packages(cls) -> None:
        for name, pinned in cls.packages.items():
            found = installed(name)
            if found != pinned:
                raise EnvironmentUnavailable(
                    f"{cls.env_id}: {name} {pinned} is pinned for this task (results are comparable only on the same "
                    f"simulator), {name} {found or 'is not'} installed: "
                    f"pip install '{name}=={pinned}' (make setup does)"
                )

    @classmethod
    def example(cls, folder, batch_size: int, seed: int = 0, **init_args) -> EnvironmentData:
        """The environment needs no data files: the example is the task itself with short epochs."""
        init_args = {**init_args, "steps_per_epoch": min(init_args.get("steps_per_epoch", 64), 64)}
        example = cls(None, batch_size, seed, **init_args)
        example.evaluation_limit = (2, 200)  # a smoke run plays 2 episodes of at most 200 steps per evaluation
        return example

    # --- the environment ------------------------------------------------------------------------------------------
    @classmethod
    def make_env(cls):
        import gymnasium as gym

        try:
            return cls.wrap(gym.make(cls.env_id, **cls.make_kwargs))
        except gym.error.Error as error:  # NameNotFound, VersionNotFound, NamespaceNotFound, ...
            raise EnvironmentUnavailable(f"environment '{cls.env_id}' cannot be made with gymnasium "
                                    f"{installed('gymnasium')}: {error}") from None  # fmt: skip

    @classmethod
    def wrap(cls, env):
        return env

    def observe(self, observation) -> torch.Tensor:
        return torch.as_tensor(np.asarray(observation))

    def collect(self, agent) -> tuple[dict, int]:
        if self.observation is None:  # the first step of training: the only seeded reset
            observation, _ = self.env.reset(seed=self.seed)
            self.observation = self.observe(observation)
        steps = []
        for _ in range(self.batch_size):
            if agent is None:  # no model attached (a task's example batch): a uniformly random policy, seeded
                action = int(torch.randint(self.env.action_space.n, (), generator=self.random_policy))
            else:
                action = int(agent.act(self.observation.unsqueeze(0).to(agent.device))[0])
            observation, reward, terminated, truncated, _ = self.env.step(action)
            next_observation = self.observe(observation)
            steps.append((self.observation, action, float(reward), next_observation, bool(terminated)))
            self.episode_return += float(reward)
            self.episode_length += 1
            if terminated or truncated:
                self.episodes.append((self.episode_return, self.episode_length))
                self.episode_return, self.episode_length = 0.0, 0
                observation, _ = self.env.reset()
                next_observation = self.observe(observation)
            self.observation = next_observation
        observations, actions, rewards, next_observations, terminals = zip(*steps)
        batch = {
            "observation": torch.stack(observations),  # (N, *observation_shape)
            "action": torch.tensor(actions),  # (N,)
            "reward": torch.tensor(rewards, dtype=torch.float32),  # (N,) as the environment gave them
            "next_observation": torch.stack(next_observations),  # (N, *observation_shape)
            "terminated": torch.tensor(terminals),  # (N,) True: the episode ended here (no bootstrap)
        }
        return batch, self.batch_size

    def environment_state(self) -> dict:
        """The simulator (with its random state) and the episode in progress. The environment is pickled to bytes:
        a checkpoint is the run's own file (checkpoints.AtomicCheckpointIO), read back only by this run's resume."""
        return {
            "env": torch.frombuffer(bytearray(pickle.dumps(self.env)), dtype=torch.uint8),
            "observation": self.observation,
            "episode_return": self.episode_return,
            "episode_length": self.episode_length,
            "episodes": [list(e) for e in self.episodes],
        }

    def load_environment_state(self, state: dict) -> None:
        if not state:
            return
        self.env = pickle.loads(state["env"].numpy().tobytes())
        self.observation = state["observation"]
        self.episode_return, self.episode_length = state["episode_return"], state["episode_length"]
        self.episodes = [tuple(e) for e in state["episodes"]]


class CartPoleData(EnvironmentData):
    env_id = "CartPole-v1"  # 500 steps at most; gymnasium's reward threshold 475


class AtariData(EnvironmentData):
    """An Atari game through ale-py, with DQN 2013's preprocessing (module docstring)."""

    packages = {"gymnasium": "1.4.0", "ale-py": "0.12.1"}
    make_kwargs = {"frameskip": 1, "repeat_action_probability": 0.0, "full_action_space": False}
    rom = ""

    @classmethod
    def check_packages(cls) -> None:
        super().check_packages()
        from ale_py import roms

        try:
            path = roms.get_rom_path(cls.rom)
        except Exception:  # noqa: BLE001 (ale-py raises its own kinds for an unknown game)
            path = None
        if path is None or not path.exists():
            raise EnvironmentUnavailable(
                f"{cls.env_id}: the ROM '{cls.rom}' is not in ale-py {installed('ale-py')}'s ROM folder "
                f"({roms.__path__[0] if hasattr(roms, '__path__') else 'ale_py/roms'}): reinstall ale-py from PyPI "
                "(its wheels ship the ROMs): pip install --force-reinstall 'ale-py==0.12.1'"
            )

    @classmethod
    def make_env(cls):
        import ale_py
        import gymnasium as gym

        gym.register_envs(ale_py)  # the ALE/ namespace
        return super().make_env()

    @classmethod
    def wrap(cls, env):
        from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

        env = AtariPreprocessing(env, noop_max=0, frame_skip=4, screen_size=84, terminal_on_life_loss=False,
                                 grayscale_obs=True, scale_obs=False)  # fmt: skip
        return FrameStackObservation(env, 4)  # (4, 84, 84) uint8


class PongData(AtariData):
    env_id, rom = "ALE/Pong-v5", "pong"


class BreakoutData(AtariData):
    env_id, rom = "ALE/Breakout-v5", "breakout"


@dataclass(frozen=True)
class EnvironmentTask(InteractionTask):
    val_episodes: int = 10
    test_episodes: int = 100
    max_episode_steps: int = 0  # 0: the environment's own limit

    def play(self, model, datamodule, split: str) -> dict[str, float]:
        """Evaluation episodes, ε-greedy (ε = 0.05) on ``model(observation)``; mean and standard error of the
        returns. Each episode has its own environment seed and its own exploration generator."""
        episodes = self.val_episodes if split == "val" else self.test_episodes
        limit = self.max_episode_steps
        if datamodule.evaluation_limit:  # the task's example: a smoke run
            episodes, limit = min(episodes, datamodule.evaluation_limit[0]), datamodule.evaluation_limit[1]
        env = datamodule.make_env()
        returns = []
        for episode in range(episodes):
            seed = EVAL_SEED_BASE[split] + 1_000 * datamodule.seed + episode
            generator = torch.Generator().manual_seed(seed)
            observation, _ = env.reset(seed=seed)
            total, steps, done = 0.0, 0, False
            while not done:
                if float(torch.rand((), generator=generator)) < EVAL_EPSILON:
                    action = int(torch.randint(env.action_space.n, (), generator=generator))
                else:
                    x = datamodule.observe(observation).unsqueeze(0).to(model.device)
                    action = int(model(x).argmax(dim=1)[0])  # the greedy action (the first on a tie)
                observation, reward, terminated, truncated, _ = env.step(action)
                total, steps = total + float(reward), steps + 1
                done = terminated or truncated or steps == limit
            returns.append(total)
        env.close()
        mean = sum(returns) / len(returns)
        spread = math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)) if len(returns) > 1 else 0.0
        return {"return": mean, "return_se": spread / math.sqrt(len(returns)), "episodes": float(episodes)}


PROTOCOL = ("one environment seeded by the run's seed; evaluation ε-greedy (ε = 0.05) on the agent's action values in "
            "fresh seeded environments: {val} episodes after each epoch select the weights, {test} test episodes score "
            "them; mean undiscounted return")  # fmt: skip

TASKS = [
    EnvironmentTask(
        name="cartpole",
        description="CartPole-v1 (gymnasium): balance a pole on a cart, +1 a step, 500 steps at most",
        metric=Metric("return", "max", 0.0, 500.0),
        target=475.0,  # gymnasium's reward_threshold for CartPole-v1
        min_seeds=3,
        make_datamodule=CartPoleData,
        interface=ACTOR,
        model_inputs={"observation_shape": (4,), "num_actions": 2},
        protocol=PROTOCOL.format(val=10, test=100) + "; target 475 (gymnasium's reward threshold)",
        bundled=True,
        extra_metrics=("return_se",),
        throughput_unit="environment steps",
        val_episodes=10,
        test_episodes=100,
    ),
    *[
        EnvironmentTask(
            name=f"atari-{game.lower()}",
            description=f"Atari 2600 {game} (ale-py), DQN 2013's preprocessing: 84×84 grey, 4 frames, frame skip 4",
            metric=Metric("return", "max", low, high),
            target=target,
            min_seeds=3,
            make_datamodule=data,
            interface=ACTOR,
            model_inputs={"observation_shape": (4, 84, 84), "num_actions": actions},
            protocol=PROTOCOL.format(val=5, test=30) + "; episodes capped at 18,000 agent steps (5 min of play)",
            bundled=True,
            extra_metrics=("return_se",),
            throughput_unit="environment steps",
            val_episodes=5,
            test_episodes=30,
            max_episode_steps=18_000,
        )
        for game, data, low, high, target, actions in [
            ("Pong", PongData, -21.0, 21.0, 20.0, 6),  # DQN 2013 Table 1: 20 (average)
            ("Breakout", BreakoutData, 0.0, 864.0, 168.0, 4),  # DQN 2013 Table 1: 168 (average)
        ]
    ],
]
