"""Callbacks the harness adds to every run: timing and targets, RNG state in checkpoints, NaN stop, plain progress,
the kill points of the fault tests."""

from __future__ import annotations

import math
import random
import sys
import time

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import RichProgressBar

from benchmarks.core import faults
from benchmarks.running import distributed


class KillPoints(L.Callback):
    """The training and evaluation kill points of benchmarks/core/faults.py (no-ops unless MILESTONES_KILL_AT set)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        faults.reached("training")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        faults.reached("evaluation")


class RanksAgree(L.Callback):
    """Under DDP, every validation metric must be the same number on every process: model selection and the learning
    rate schedules read it on each. A metric computed from a process's share without reducing it stops the run."""

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or trainer.world_size == 1:
            return
        values = {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("val/")}
        differ = distributed.disagreement(trainer, values)
        if differ:
            raise RanksDisagree(
                f"validation metrics {', '.join(differ)} differ between the {trainer.world_size} processes: the model "
                "computes them from its own share without reducing them (use torchmetrics, or self.log(..., "
                "sync_dist=True)); run it with --devices 1"
            )


class RanksDisagree(RuntimeError):
    """Under DDP, a metric that is not the same number on every process."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the run stops and is recorded as failed."""


class BenchmarkMeter(L.Callback):
    """Measures training wall-clock (validation excluded), samples/s, and time-to-target; stops on a non-finite loss.

    The training clock starts at the first training step and is paused during validation, so time-to-target is the
    training time until the first validation whose metric reaches the task's target. Its state is checkpointed, so a
    resumed run keeps counting from where it stopped.

    ``curve_keys``: epoch-level training metrics the task wants beside the validation metric (``Task.curve_keys``,
    e.g. ``train/error`` for a training-error curve). ``on_train_epoch_end`` runs after that epoch's validation (and
    before the checkpoints of the epoch are written), so each is added to the epoch's history row.
    """

    def __init__(self, val_key: str, reached, count=None, curve_keys: tuple[str, ...] = ()) -> None:
        self.val_key, self.reached, self.curve_keys = val_key, reached, tuple(curve_keys)
        self.count = count or (lambda batch: len(batch[-1]))  # units in a batch: samples, or tokens for text
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.samples = 0
        self.time_to_target: float | None = None
        self.epoch_to_target: int | None = None
        self.history: list[dict] = []  # one row per validation: epoch, metric, training seconds so far
        self._clock: float | None = None
        self._eval_started = 0.0
        self._check_every, self._world_size = 1, 1  # set when training starts

    def _sync(self, trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()

    def _pause(self, trainer) -> None:
        if self._clock is not None:
            self._sync(trainer)
            self.train_seconds += time.perf_counter() - self._clock
            self._clock = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._clock is None:
            self._clock = time.perf_counter()

    def on_train_start(self, trainer, pl_module):
        self._check_every = 1 if trainer.strategy.root_device.type == "cpu" else 50  # a check is a host sync on a GPU
        self._world_size = trainer.world_size

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs  # {}: a step that made no update
        if loss is not None and batch_idx % self._check_every == 0:
            bad = not math.isfinite(float(loss))
            if self._world_size > 1:  # every process stops together, or the others would wait for it for ever
                bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
            if bad:
                raise NonFiniteLossError(
                    f"training loss is {float(loss)} at epoch {trainer.current_epoch}, step {batch_idx}"
                    + (" (on one of the processes)" if self._world_size > 1 and math.isfinite(float(loss)) else "")
                )
        self.samples += int(self.count(batch)) * self._world_size

    def on_validation_start(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        self._pause(trainer)
        self._eval_started = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        self._sync(trainer)
        self.eval_seconds += time.perf_counter() - self._eval_started
        value = trainer.callback_metrics.get(self.val_key)
        if value is None:
            return
        value = float(value)
        finite = value if math.isfinite(value) else None  # JSON has no NaN: recorded as null
        self.history.append({"epoch": trainer.current_epoch, self.val_key: finite, "train_seconds": self.train_seconds})
        if self.time_to_target is None and finite is not None and self.reached(value):
            self.time_to_target, self.epoch_to_target = self.train_seconds, trainer.current_epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if not self.curve_keys or not self.history or self.history[-1]["epoch"] != trainer.current_epoch:
            return  # no validation ended this epoch (check_val_every_n_epoch > 1): no row to add to
        metrics = trainer.callback_metrics  # at the epoch's end: the epoch-level (on_epoch=True) aggregates
        for key in self.curve_keys:
            if key in metrics:
                value = float(metrics[key])
                self.history[-1][key] = value if math.isfinite(value) else None

    def on_train_end(self, trainer, pl_module):
        self._pause(trainer)

    @property
    def throughput(self) -> float | None:
        return self.samples / self.train_seconds if self.train_seconds > 0 else None

    def state_dict(self):
        return {
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
            "samples": self.samples,
            "time_to_target": self.time_to_target,
            "epoch_to_target": self.epoch_to_target,
            "history": self.history,
        }

    def load_state_dict(self, state):
        self.__dict__.update(state)


class RNGStateCheckpoint(L.Callback):
    """Stores the Python, NumPy, torch and CUDA RNG states in every checkpoint and restores them on resume.

    Checkpoints load with ``weights_only=True``, so NumPy's state is kept as plain Python values and a tensor.
    """

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint["rng_states"] = {
            "python": random.getstate(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        states = checkpoint.get("rng_states")
        if not states or trainer.state.fn != "fit":  # only a resumed fit continues the random streams
            return
        version, internal, gauss_next = states["python"]
        random.setstate((version, tuple(internal), gauss_next))
        kind, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


class PlainProgress(L.Callback):
    """One line per epoch, for logs and CI where a live progress bar would be noise, with the time the seed has left;
    and within a long epoch a line every ``every_s`` seconds, so a log never goes silent for minutes."""

    def __init__(self, label: str, val_key: str, every_s: float = 60.0) -> None:
        self.label, self.val_key, self.every_s = label, val_key, every_s
        self._started = self._fit_started = self._last_line = 0.0
        self._first_epoch = 0  # the epoch this attempt started at (a resumed run starts later)

    def on_train_start(self, trainer, pl_module):
        self._fit_started, self._first_epoch = time.perf_counter(), trainer.current_epoch

    def on_train_epoch_start(self, trainer, pl_module):
        self._started = self._last_line = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        if now - self._last_line < self.every_s:
            return
        self._last_line = now
        total = trainer.num_training_batches
        done = f"{batch_idx + 1:,}/{total:,}" if isinstance(total, int) else f"{batch_idx + 1:,}"
        print(f"{self.label} epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  batch {done}  "
              f"{now - self._started:.0f}s", file=sys.stdout, flush=True)  # fmt: skip

    def on_train_epoch_end(self, trainer, pl_module):
        metrics = trainer.callback_metrics
        parts = [f"{self.label} epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        for key in ("train/loss", "train/mistakes", self.val_key):
            if key in metrics:
                parts.append(f"{key} {float(metrics[key]):.4f}")
        now = time.perf_counter()
        parts.append(f"{now - self._started:.1f}s")
        epochs_done, epochs_left = (
            trainer.current_epoch + 1 - self._first_epoch,
            trainer.max_epochs - trainer.current_epoch - 1,
        )
        if epochs_left > 0:  # the mean epoch so far (validation included) times the epochs left; evaluation excluded
            parts.append(f"seed ETA {format_duration((now - self._fit_started) / epochs_done * epochs_left)}")
        print("  ".join(parts), file=sys.stdout, flush=True)


def format_duration(seconds: float) -> str:
    """'45 s', '12 min', '3.2 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class EpochProgressBar(RichProgressBar):
    """Lightning's live bar, with epochs counted from 1 as everywhere else here ("Epoch 1/12", not "Epoch 0/11")."""

    def _get_train_description(self, current_epoch: int) -> str:
        description = f"Epoch {current_epoch + 1}" + (f"/{self.trainer.max_epochs}" if self.trainer.max_epochs else "")
        return f"{description:{len(self.validation_description)}}"  # padded as Lightning does, against flicker
