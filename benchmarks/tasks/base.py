"""A task is what is measured: a data module plus a metric contract (name, direction, range, target, seeds).

Tasks are few and shared by many entries. What differs between kinds of task (accuracy from labels, a score from
samples, BLEU from decoded text) lives in ``Task.evaluate``, never in ``if entry == ...`` branches of the harness.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import lightning as L

from benchmarks.tasks.interfaces import Interface


@dataclass(frozen=True)
class Metric:
    """The reported number: its name, whether lower or higher is better, and the range a valid value lies in."""

    name: str
    direction: Literal["min", "max"]
    low: float
    high: float
    unit: str = ""

    def better(self, a: float, b: float) -> bool:
        """True when value ``a`` is strictly better than ``b``."""
        return a < b if self.direction == "min" else a > b

    def reached(self, value: float, target: float) -> bool:
        return value <= target if self.direction == "min" else value >= target

    def valid(self, value: float) -> bool:
        return math.isfinite(value) and self.low <= value <= self.high


def count(value, name: str) -> int:
    if type(value) is not int or value < 1:
        raise ValueError(f"{name} must be a count ≥ 1, got {value!r}")
    return value


SHA256 = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class DataIdentity:
    """What a run on a task may record as its data (a result's ``dataset``), declared by the data module's class.

    It is code, never a reading of the data folder: ``milestones validate`` compares a result with it on any machine,
    with or without the data, and builds no cache and trains no tokenizer to do so. The run itself records what it
    actually used (the data module's ``identity()``), and validation checks that record against this declaration.

    - ``required``: key → checksum every result records, exactly this value (a pinned file, a pinned tokenizer);
    - ``optional``: key → checksum a result records when the run used that file ("when present"), exactly this value;
    - ``user_hashed``: keys whose checksum comes from the user's own copy (an ILSVRC-2012 manifest), unknown in
      advance: a result must record one (a sha256), any value.
    """

    required: Mapping[str, str] = field(default_factory=dict)
    optional: Mapping[str, str] = field(default_factory=dict)
    user_hashed: tuple[str, ...] = ()

    def keys(self) -> set[str]:
        return {*self.required, *self.optional, *self.user_hashed}

    def problems(self, recorded: Mapping[str, str | None], task: str) -> list[str]:
        """One line per way ``recorded`` (a result's ``dataset``) departs from the declaration; empty when it agrees."""
        found = [
            f"dataset['{key}']: {recorded.get(key) or '(absent)'}, task {task} declares {digest}"
            for key, digest in self.required.items()
            if recorded.get(key) != digest
        ]
        found += [
            f"dataset['{key}']: {recorded[key]}, task {task} declares {digest} for this file when it is used"
            for key, digest in self.optional.items()
            if key in recorded and recorded[key] != digest
        ]
        for key in self.user_hashed:
            value = recorded.get(key)
            if not value:
                found.append(f"dataset['{key}']: absent; the task records the checksum of the images it used")
            elif not SHA256.fullmatch(value):
                found.append(f"dataset['{key}']: {value} is not a sha256:<64 hex digits> checksum")
        found += [f"dataset['{key}']: not a file of task {task}" for key in sorted(set(recorded) - self.keys())]
        return found


@dataclass(frozen=True)
class Task:
    """One benchmark protocol. ``make_datamodule(data_dir, batch_size, seed, download)`` builds its data.

    ``model_inputs`` are handed to a model's constructor when it has parameters of those names (``num_classes``,
    ``input_shape``), so one model class serves several tasks without per-task configs.
    The validation metric is logged by the model as ``val/<metric.name>``, the test metric as ``test/<metric.name>``.

    ``interface`` is what every model on the task must provide (``interfaces.py``): the registry refuses an entry
    whose model class lacks one of its methods. ``optional_interfaces`` are measured where a model provides them.
    The data module's class also provides ``example(folder, batch_size, seed, **init_args)``: a tiny generated copy
    of the task's data in its own layout, read by the same code, on which every entry is tested (and which
    ``milestones bench <entry> --example-data`` runs without any data).
    """

    name: str
    description: str
    metric: Metric
    target: float  # time-to-target threshold on the validation metric
    min_seeds: int  # a row with fewer seeds is marked provisional
    make_datamodule: Callable[..., L.LightningDataModule]
    interface: Interface
    model_inputs: dict = field(default_factory=dict)
    protocol: str = ""  # one line for the leaderboard: split, selection, budget
    bundled: bool = False  # True when the data ships with the code or a package: no download, no data folder
    extra_metrics: tuple[str, ...] = ()  # secondary test metrics the leaderboard shows beside the main one
    reference_metrics: tuple[str, ...] = ()  # measures of the data itself (e.g. real-vs-real distance): a scale
    reference_meaning: str = "training vs test images"  # what the reference_metrics measure, in a few words
    # what samples_per_s counts: samples, or the data module's ``batch_units(batch)`` where it has one (tokens)
    throughput_unit: str = "samples"
    # the split the reported number is measured on: "test", or "validation" where the usual protocol has no
    # separate test text (shakespeare-char: nanoGPT's number is the validation loss); plots label their axis by it
    reported_split: str = "test"
    optional_interfaces: tuple[Interface, ...] = ()
    shown_artifact: str | None = None  # the file of a seed's artifacts a leaderboard row links to (samples, text)
    linked_artifacts: str | None = None  # a glob of that seed's other artifacts the row links too (generated sounds)
    # epoch-level training metrics recorded in each epoch's history row beside the validation metric (the harness's
    # BenchmarkMeter), e.g. ("train/error",) for a plot of training against validation error
    curve_keys: tuple[str, ...] = ()

    def declared_identity(self) -> DataIdentity:
        """The data a run on this task may record, declared by its data module's class (``declared_identity()``,
        a classmethod): no data folder is read, no cache is built."""
        return self.make_datamodule.declared_identity()

    @property
    def val_key(self) -> str:
        return f"val/{self.metric.name}"

    @property
    def test_key(self) -> str:
        return f"test/{self.metric.name}"

    def example_datamodule(self, folder: Path, batch_size: int, seed: int = 0, **init_args) -> L.LightningDataModule:
        """The task's tiny generated example (written under ``folder``), served by the task's own data code."""
        return self.make_datamodule.example(Path(folder), batch_size, seed=seed, **init_args)

    def example_batch(self, n: int = 6, **init_args):
        """One training batch of ``n`` from the example, on the CPU: what a model's forward and backward are tried on.
        ``init_args`` are the entry's data arguments (a language model's context)."""
        with tempfile.TemporaryDirectory(prefix="milestones-example-") as folder:
            datamodule = self.example_datamodule(Path(folder), n, **init_args)
            datamodule.prepare_data()
            datamodule.setup("fit")
            return next(iter(datamodule.train_dataloader()))

    def budget(self, config: dict) -> str:
        """How the leaderboard states a run's budget, from its recorded config ('12 epochs'). A result file is data:
        a value that is not a count is a ValueError, never a string to repeat."""
        epochs = count(config["trainer"]["max_epochs"], "trainer.max_epochs")
        return f"{epochs} epoch{'s' * (epochs != 1)}"

    def callbacks(self) -> list[L.Callback]:
        """Callbacks the task adds to every run (e.g. sample-based validation metrics); none by default."""
        return []

    def evaluate(self, trainer: L.Trainer, model: L.LightningModule, datamodule, ckpt_path: str | Path | None,
                 artifacts: Path):  # fmt: skip
        """Evaluate once on the test split; returns every ``test/*`` metric the model logged, as plain floats.

        ``artifacts`` is the folder the harness hands the task for the files it publishes with the result (a sample
        grid, generated text): the task writes there and names the one a leaderboard row shows (``shown_artifact``).
        A task may add strings that a number needs to be read (e.g. ``bleu_signature``): they go to the result's
        ``notes``, not its metrics."""
        trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
        return {
            key.removeprefix("test/"): float(value)
            for key, value in trainer.callback_metrics.items()
            if key.startswith("test/")
        }
