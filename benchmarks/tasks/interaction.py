"""Tasks with no fixed data set: an environment or a game, where each training batch is experience the agent gathers
with its current weights, and the metric is a return or a win rate played after training.

The harness stays kind-agnostic: the data module's training loader is sized (``steps_per_epoch // batch_size``
batches), and each batch is gathered by ``collect(agent)`` only when Lightning asks for it. Lightning fetches no batch
ahead of a loader whose length it knows, so batch k is gathered with the weights that update k − 1 left: acting and
learning alternate exactly as in the papers' algorithms. Validation and test are played by the task (``play``), not
read from a loader: the model's ``validation_step`` does nothing (``lightning_modules.base.Agent``), and the task's
callback plays the validation games after each validation and logs them as ``val/<metric>``.

Exact resume on the CPU: the agent's own state (a replay memory, step counters) travels in its checkpoint; the
environment's (its simulator and random state, the episode in progress) in the data module's ``state_dict``, which
Lightning keeps in the same checkpoint; the random streams the agent draws from are the harness's (RNGStateCheckpoint).
A checkpoint is the run's own file, written by this code (checkpoints.AtomicCheckpointIO): it is never a contributor's.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

from benchmarks.tasks.base import Task, count


class ExperienceLoader:
    """``n`` training batches, each gathered by ``datamodule.collect(agent)`` at the moment it is asked for."""

    def __init__(self, datamodule: InteractionData, n: int) -> None:
        self.datamodule, self.n = datamodule, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for _ in range(self.n):
            batch, units = self.datamodule.collect(self.datamodule.agent)
            self.datamodule.last_units = units
            yield batch


class InteractionData(L.LightningDataModule):
    """The training "data" of an environment or a game: experience gathered by the agent under training.

    ``batch_size`` is the units of interaction per training step (environment steps; self-play games), and an epoch
    is ``steps_per_epoch`` units: ``steps_per_epoch // batch_size`` training steps. Subclasses implement ``collect``
    and, where an exact resume needs it, ``environment_state`` / ``load_environment_state``.
    """

    single_process = True  # one agent acting in one environment: DDP would need a design of its own (not built)
    unit = "environment steps"  # what steps_per_epoch counts: the budget's unit (batch_units counts the throughput's,
    # the task's throughput_unit: environment steps for an environment, positions for self-play games)

    def __init__(self, data_dir=None, batch_size: int = 1, seed: int = 0, download: bool = False,
                 steps_per_epoch: int = 1000) -> None:  # fmt: skip
        super().__init__()
        self.batch_size, self.seed = count(batch_size, "data.batch_size"), seed
        self.steps_per_epoch = count(steps_per_epoch, "data.init_args.steps_per_epoch")
        if steps_per_epoch < batch_size:
            raise ValueError(f"steps_per_epoch {steps_per_epoch} is less than one batch of {batch_size}")
        self.last_units = 0

    @property
    def agent(self) -> L.LightningModule | None:
        """The model being trained: the policy that gathers the experience. None outside a fit (the task's example
        batch, on which the registry tries every model): ``collect`` then acts with a uniformly random policy."""
        return self.trainer.lightning_module if self.trainer is not None else None

    def collect(self, agent) -> tuple[object, int]:
        """One training batch gathered with ``agent`` (None: a uniformly random policy, seeded by the data module's
        seed), and how many units (``unit``) it holds."""
        raise NotImplementedError

    def environment_state(self) -> dict:
        """What an exact resume needs of the environment (tensors and plain values: checkpoints load weights_only)."""
        return {}

    def load_environment_state(self, state: dict) -> None:
        pass

    def state_dict(self) -> dict:
        return {"environment": self.environment_state()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.load_environment_state(state_dict.get("environment", {}))

    def batch_units(self, batch) -> int:
        """The throughput's units in the batch just gathered (``collect``'s count): BenchmarkMeter's per-second."""
        return self.last_units

    def train_dataloader(self) -> ExperienceLoader:
        return ExperienceLoader(self, self.steps_per_epoch // self.batch_size)

    def _placeholder(self):
        return [torch.zeros(1)]  # one batch, so that Lightning runs validation: the task plays it (PlayEvaluation)

    val_dataloader = test_dataloader = _placeholder


class PlayEvaluation(L.Callback):
    """After each validation: the task's validation games or episodes, logged as ``val/<metric>``."""

    def __init__(self, task: InteractionTask) -> None:
        self.task = task

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        for key, value in self.task.play(pl_module, trainer.datamodule, "val").items():
            pl_module.log(f"val/{key}", float(value))


def steps_per_epoch(config: dict, datamodule_class) -> int:
    """A recorded config's units per epoch: its ``data.init_args.steps_per_epoch``, or the data module's default."""
    given = (config.get("data") or {}).get("init_args") or {}
    if "steps_per_epoch" in given:
        return count(given["steps_per_epoch"], "data.init_args.steps_per_epoch")
    return inspect.signature(datamodule_class.__init__).parameters["steps_per_epoch"].default


@dataclass(frozen=True)
class InteractionTask(Task):
    """A task whose metric is played: ``play(model, datamodule, split)`` returns the metrics of the validation
    (``split="val"``) or test (``"test"``) games or episodes, without the split's prefix. It must draw its randomness
    from its own generators, seeded from the split and ``datamodule.seed``, never from the global streams the agent
    trains with: a validation then changes nothing in training, and the same seed plays the same games."""

    learning_curve: bool = True  # the leaderboard plots the validation metric over training (leaderboard.py)

    def play(self, model, datamodule, split: str) -> dict[str, float]:
        raise NotImplementedError

    def units_per_epoch(self, config: dict) -> int:
        return steps_per_epoch(config, self.make_datamodule)

    def budget(self, config: dict) -> str:
        epochs = count(config["trainer"]["max_epochs"], "trainer.max_epochs")
        return f"{epochs * self.units_per_epoch(config):,} {self.make_datamodule.unit}"

    def callbacks(self) -> list[L.Callback]:
        return [PlayEvaluation(self)]

    def evaluate(self, trainer: L.Trainer, model, datamodule, ckpt_path: str | Path | None, artifacts: Path):
        if ckpt_path:  # the best-validation weights
            state = torch.load(ckpt_path, map_location=model.device, weights_only=True)["state_dict"]
            model.load_state_dict(state)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            metrics = self.play(model, datamodule, "test")
        model.train(was_training)
        return {key: float(value) for key, value in metrics.items()}


def wilson(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a rate (95 % by default), as fractions: honest at 0 and 1, where the normal
    approximation collapses to a point."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
