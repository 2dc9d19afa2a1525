"""Where the harness's time per training step goes: a model that costs almost nothing, trained by a plain loop and by
Lightning with the harness's parts added one at a time, each timed as CPU microseconds per step.

The model is one linear layer on MNIST's 784 pixels (about 0.1 ms a step), so what remains is the cost of the loop
around it. Each row adds one part of what ``run_seed`` builds; the last row is ``run_benchmark`` itself (the harness
as a real run uses it: deterministic, every callback, both checkpoints, CSV and W&B offline logging, validation
each epoch). One torch thread and the main thread's CPU time (``time.thread_time``) make the figures insensitive to
other load on the machine; the rows take turns, ``--rounds`` times, and the median is shown.

Run: make perf-overhead   (or: python -m benchmarks.perf.harness_overhead --steps 2000 --rounds 3 --json out.json)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from benchmarks.core import paths
from benchmarks.core.environment import environment
from benchmarks.perf import write_report
from benchmarks.running.callbacks import BenchmarkMeter, KillPoints, PlainProgress, RNGStateCheckpoint
from benchmarks.running.harness import BenchOptions, run_benchmark
from benchmarks.running.lightning_speedups import (
    NoProfiler,
    lean_hook_calls,
    remembered_signatures,
    skip_needless_metric_moves,
)
from benchmarks.running.registry import get_entry
from benchmarks.tasks.loader import TensorBatches
from benchmarks.tasks.mnist import MNISTData
from lightning_modules.base import Classifier

BATCH = 16  # lenet5's batch: the smallest of the image entries, so the most steps per epoch


class LinearProbe(Classifier):
    """The cheapest model that trains the way every entry does: a classifier that logs its loss each step."""

    def __init__(self, log_loss: bool = True) -> None:
        super().__init__(10)
        self.log_loss = log_loss
        self.linear = torch.nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))  # (B, 10)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        if self.log_loss:
            self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class CPUClock(L.Callback):
    """Main-thread CPU seconds from the first training step to the end of training, validation excluded."""

    def __init__(self) -> None:
        self.seconds, self._start = 0.0, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._start is None:
            self._start = time.thread_time()

    def _stop(self) -> None:
        if self._start is not None:
            self.seconds += time.thread_time() - self._start
            self._start = None

    def on_validation_start(self, trainer, pl_module):
        self._stop()

    def on_train_end(self, trainer, pl_module):
        self._stop()


def plain(images, labels, steps: int, folder: Path) -> float:
    model = LinearProbe()
    optimizer = model.configure_optimizers()
    batches = TensorBatches(images, labels, BATCH, shuffle=True)
    started = time.thread_time()
    for i, (x, y) in zip(range(steps), batches, strict=False):
        loss = model.training_step((x, y), i)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.thread_time() - started


def lightning(parts: set[str]) -> Callable:
    """Lightning with ``parts`` of the harness: log, deterministic, callbacks, checkpoints, csv."""

    def run(images, labels, steps: int, folder: Path) -> float:
        datamodule = MNISTData(paths.data_dir(None), BATCH, seed=0, download=False)
        datamodule.splits = {"train": (images, labels), "val": (images[:BATCH], labels[:BATCH])}
        datamodule.setup = lambda stage=None: None
        clock = CPUClock()
        callbacks: list[L.Callback] = [clock]
        if "callbacks" in parts:
            meter = BenchmarkMeter("val/error", lambda v: v <= 2.0)
            callbacks += [meter, RNGStateCheckpoint(), KillPoints(), PlainProgress("overhead", "val/error")]
        if "checkpoints" in parts:
            callbacks += [
                ModelCheckpoint(dirpath=folder / "ckpt", monitor="val/error", mode="min", save_top_k=1),
                ModelCheckpoint(
                    dirpath=folder / "ckpt", filename="last", every_n_epochs=1, save_on_train_epoch_end=True
                ),
            ]
        skip_needless_metric_moves("fast-log" in parts)
        lean_hook_calls("lean-hooks" in parts)
        remembered_signatures("signatures" in parts)
        trainer = L.Trainer(
            accelerator="cpu", devices=1, precision="32-true", max_epochs=1, limit_train_batches=steps,
            limit_val_batches=1, num_sanity_val_steps=0, deterministic="deterministic" in parts, callbacks=callbacks,
            logger=[CSVLogger(folder, name="csv")] if "csv" in parts else False,
            enable_checkpointing="checkpoints" in parts, enable_progress_bar=False, enable_model_summary=False,
            log_every_n_steps=50, default_root_dir=folder, profiler=NoProfiler() if "no-profiler" in parts else None,
        )  # fmt: skip
        try:
            trainer.fit(LinearProbe(log_loss="log" in parts), datamodule=datamodule)
        finally:
            skip_needless_metric_moves(False)
            lean_hook_calls(False)
            remembered_signatures(False)
        return clock.seconds

    return run


def harness(images, labels, steps: int, folder: Path) -> float:
    """run_benchmark itself, on the probe model, with W&B offline."""
    entry = copy.copy(get_entry("lenet5"))  # a copy: the registry's own entry must keep its model
    entry.build_model = lambda task: LinearProbe()
    clock = CPUClock()
    opts = BenchOptions(seeds=[0], max_epochs=1, limit_train_batches=steps, wandb="offline", output_dir=str(folder),
                        results_dir=str(folder / "results"), progress="plain", download=False, accelerator="cpu",
                        callbacks=[clock])  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        run_benchmark(entry, opts)
    return clock.seconds


SHIPPED = {"log", "deterministic", "callbacks", "checkpoints", "csv"}  # the harness's parts, Lightning as shipped
ROWS: list[tuple[str, Callable]] = [
    ("plain PyTorch loop", plain),
    ("Lightning, nothing added", lightning(set())),
    ("+ self.log of the loss each step", lightning({"log"})),
    ("+ deterministic=True", lightning({"log", "deterministic"})),
    ("+ the harness's callbacks", lightning({"log", "deterministic", "callbacks"})),
    ("+ both ModelCheckpoints", lightning({"log", "deterministic", "callbacks", "checkpoints"})),
    ("+ CSVLogger (the harness before the speed-ups)", lightning(SHIPPED)),
    ("  with self.log's needless metric move skipped", lightning(SHIPPED | {"fast-log"})),
    ("  and NoProfiler", lightning(SHIPPED | {"fast-log", "no-profiler"})),
    ("  and lean hook calls", lightning(SHIPPED | {"fast-log", "no-profiler", "lean-hooks"})),
    ("  and remembered signatures", lightning(SHIPPED | {"fast-log", "no-profiler", "lean-hooks", "signatures"})),
    ("run_benchmark (all of it, W&B offline)", harness),
]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.perf.harness_overhead", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--steps", type=int, default=2000, help="training steps per timed run")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per row (the median is shown)")
    parser.add_argument("--data-dir", help="data folder with MNIST/raw (default: $MILESTONES_DATA or the cache)")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    from benchmarks.running.harness import quiet_lightning

    quiet_lightning()
    datamodule = MNISTData(paths.data_dir(args.data_dir), BATCH, seed=0, download=False)
    datamodule.setup()
    images, labels = datamodule.splits["train"]
    times: dict[str, list[float]] = {name: [] for name, _ in ROWS}
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        for round_ in range(args.rounds + 1):  # round 0 warms up every row
            for i, (name, run) in enumerate(ROWS):
                folder = Path(tmp) / f"r{round_}-{i}"
                seconds = run(images, labels, args.steps, folder)
                if round_:
                    times[name].append(seconds)
    us = {name: statistics.median(t) / args.steps * 1e6 for name, t in times.items()}
    base = us[ROWS[0][0]]
    print(f"{'':<44}{'µs/step':>10}{'over plain':>12}")
    previous = base
    for name, value in us.items():
        print(f"{name:<44}{value:>10.0f}{value - base:>12.0f}   ({value - previous:+.0f})")
        previous = value
    report = {
        "what": "CPU µs per training step of a linear probe (batch 16, 1 thread): the harness's parts",
        "steps": args.steps,
        "rounds": args.rounds,
        "us_per_step": us,
        "runs_s": times,
        "environment": environment("cpu"),
        "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    }
    write_report(report, args.json)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
