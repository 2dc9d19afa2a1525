"""Epoch time of LeNet-5 on MNIST, measured three ways in one process: what does the harness cost over a bare loop?

(a) plain       a hand-written PyTorch loop over the 55,000 training images held in memory as uint8 (the harness's
                own split), one torch.randperm per epoch, batches sliced by index and scaled by ``.float().div_(255)``
(b) harness     a real run: ``run_benchmark`` itself with a one-epoch budget (32-true, deterministic, every callback,
                both checkpoints, CSV and W&B offline logging, validation and the test evaluation), fed by the
                project's MNISTData; timed by BenchmarkMeter's training clock (what a result's train_time_s and
                samples_per_s come from), and also as the wall time of the whole run
(c) dataloader  the usual per-sample pipeline: torchvision.datasets.MNIST (the same 55,000 images) with ToTensor and
                Normalize in a DataLoader with worker processes, feeding the same loop as (a)

All three train the entry's model (same class and arguments, ``torch.manual_seed(0)``, a fresh model for every timed
epoch) with its batch size, its optimizer from ``configure_optimizers()`` and the loss its ``training_step`` returns,
with deterministic algorithms on as in the harness: only the way batches reach the model differs. After a warm-up of a
few batches each, the methods take turns epoch by epoch (a, b, c, a, b, c, ...) so that a change in the machine's load
hits them alike; the median epoch is reported. Targets: (b)/(a) <= 1.10 for lenet5 (batch 16) and <= 1.05 for
lenet5-modern (batch 128) (the harness costs at most 10 % / 5 % over a bare loop), and (c)/(b) >= 2 (holding the data
in memory at least halves the usual pipeline's epoch). Where the harness's time goes: harness_overhead.py.

Run: make perf   (or: python -m benchmarks.perf.lenet_epoch --epochs 3 --json perf.json;
     a quick check: --limit-batches 200). The numbers mean something only on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import torch

from benchmarks.core import paths
from benchmarks.core.environment import environment, hardware_label
from benchmarks.perf import write_report
from benchmarks.running.harness import BenchError, quiet_lightning, resolve_accelerator, run_benchmark
from benchmarks.running.options import BenchOptions
from benchmarks.running.registry import Entry, get_entry
from benchmarks.tasks import Task
from benchmarks.tasks.files import DataError
from benchmarks.tasks.mnist import MNIST_MD5, MNISTData

WARMUP_BATCHES = 20  # the first few steps of a process are slow (~30x here): keep them out of every method
TARGET_HARNESS = {"lenet5": 1.10, "lenet5-modern": 1.05}  # (b)/(a): at most (other entries: 1.10)
TARGET_PIPELINE = 2.0  # (c)/(b): at least


@dataclass
class Measurement:
    name: str
    seconds: list[float]  # one per timed epoch
    images: int  # per epoch

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def images_per_s(self) -> float:
        return self.images / self.median

    def as_dict(self) -> dict:
        return {"name": self.name, "seconds_per_epoch": self.seconds, "median_s": self.median,
                "images_per_epoch": self.images, "images_per_s": self.images_per_s}  # fmt: skip


# --- models --------------------------------------------------------------------------------------------------------
def fresh_model(entry: Entry, task: Task, device: torch.device) -> L.LightningModule:
    torch.manual_seed(0)
    return entry.build_model(task).to(device).train()


def first_optimizer(config) -> torch.optim.Optimizer | None:
    """The optimizer in any form ``configure_optimizers`` may return (an optimizer, a dict, lists of them)."""
    if isinstance(config, torch.optim.Optimizer):
        return config
    if isinstance(config, dict):
        return first_optimizer(config.get("optimizer"))
    if isinstance(config, list | tuple) and config:
        return first_optimizer(config[0])
    return None


def make_optimizer(module: L.LightningModule) -> torch.optim.Optimizer:
    """The module's own optimizer. Schedulers step per epoch, so for one timed epoch they are left out."""
    try:
        config = module.configure_optimizers()
    except RuntimeError:  # it reads self.trainer (lenet5-modern's cosine T_max): show it a one-epoch budget
        module.trainer = SimpleNamespace(max_epochs=1)
        try:
            config = module.configure_optimizers()
        finally:
            module.trainer = None
    optimizer = first_optimizer(config)
    if optimizer is None:
        raise SystemExit(f"{type(module).__name__}.configure_optimizers() gives no optimizer: nothing to time here")
    return optimizer


# --- data ----------------------------------------------------------------------------------------------------------
def train_indices(n: int) -> list[int]:
    """The 55,000 training images of the harness's split (InMemoryImageData.setup), as indices into the IDX file."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(MNISTData.split_seed))
    return order[MNISTData.val_size :].tolist()


@contextmanager
def torchvision_root(data_dir: Path) -> Iterator[Path]:
    """A ``root`` for torchvision.datasets.MNIST. It reads decompressed IDX files while the data folder holds the
    .gz originals (and is read-only), so unless they are there already they are decompressed into a temporary folder.
    """
    names = [name.removesuffix(".gz") for name in MNIST_MD5]
    if all((data_dir / "MNIST" / "raw" / name).exists() for name in names):
        yield data_dir
        return
    with tempfile.TemporaryDirectory(prefix="lenet-epoch-") as tmp:
        raw = Path(tmp) / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for name in names:
            with gzip.open(data_dir / "MNIST" / "raw" / f"{name}.gz", "rb") as src, open(raw / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
        yield Path(tmp)


def tensor_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> Iterator[tuple]:
    """(a): what TensorBatches does, written out: a permutation, index slices, uint8 -> float in [0, 1]."""
    order = torch.randperm(len(labels)).to(labels.device)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield images[idx].float().div_(255), labels[idx]


# --- the three ways of training one epoch --------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_loop(module: L.LightningModule, optimizer: torch.optim.Optimizer, batches: Iterable,
               device: torch.device, limit: int | None) -> int:  # fmt: skip
    """The hand-written loop of (a) and (c); returns the number of images it trained on."""
    seen = 0
    for i, (x, y) in enumerate(itertools.islice(batches, limit)):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)  # no-ops for (a)
        loss = module.training_step((x, y), i)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(y)
    sync(device)
    return seen


def plain_epoch(module: L.LightningModule, batches: Iterable, device: torch.device, limit: int | None):
    """(a) or (c): returns (seconds, images). The loop is timed (the first batch's fetch included: a permutation for
    (a), starting the workers for (c)); building the model and optimizer is not, nor is it on the harness's clock."""
    optimizer = make_optimizer(module)
    started = time.perf_counter()
    seen = plain_loop(module, optimizer, batches, device, limit)
    return time.perf_counter() - started, seen


def harness_epoch(entry: Entry, accelerator: str, data_dir: Path, limit: int | None, output: Path):
    """(b): one epoch of a real run: ``run_benchmark`` with seed 0 and a one-epoch budget, so with everything a run
    records (deterministic, the BenchmarkMeter and the other callbacks, both checkpoints, CSV and W&B offline logs,
    validation, the test evaluation). Returns (training clock, whole-run wall time, images)."""
    opts = BenchOptions(seeds=[0], max_epochs=1, limit_train_batches=limit, accelerator=accelerator,
                        precision="32-true", data_dir=str(data_dir), output_dir=str(output),
                        results_dir=str(output / "results"), wandb="offline", progress="none",
                        download=False)  # fmt: skip
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its own lines would break the table's
        result, _ = run_benchmark(entry, opts)
    seed = result.seeds[0]
    if seed.status != "ok":
        raise SystemExit(f"lenet_epoch: error: the harness's run failed: {seed.failure}")
    return seed.train_time_s, time.perf_counter() - started, round(seed.samples_per_s * seed.train_time_s)


# --- main ----------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf.lenet_epoch", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="data folder with MNIST/raw (default: $MILESTONES_DATA or the cache)")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per method; the median is reported")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes for (c) (0: in-process)")
    parser.add_argument("--entry", default="lenet5", help="the entry whose model, batch size and optimizer are used")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu", "auto"],
                        help="gpu: the model, and the in-memory images of (a) and (b), on the GPU")  # fmt: skip
    parser.add_argument("--limit-batches", type=int, help="time only this many batches per epoch (a quick check)")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.epochs < 1 or args.workers < 0 or (args.limit_batches is not None and args.limit_batches < 1):
        raise SystemExit("--epochs and --limit-batches must be at least 1, --workers at least 0")
    quiet_lightning()
    warnings.filterwarnings("ignore", ".*`self.trainer` reference is not registered.*")  # self.log outside a Trainer
    warnings.filterwarnings("ignore", ".*GPU available but not used.*")
    try:
        accelerator = resolve_accelerator(args.accelerator)
    except BenchError as error:
        raise SystemExit(f"lenet_epoch: error: {error}") from None
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    torch.use_deterministic_algorithms(True)  # as the Trainer sets it (deterministic=True), for (a) and (c) too
    torch.backends.cudnn.benchmark = False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before cuBLAS starts; what Lightning sets

    entry = get_entry(args.entry)
    task = entry.task("mnist")
    batch_size = entry.config.data.batch_size
    data_dir = paths.data_dir(args.data_dir)
    limit = args.limit_batches

    from torchvision import datasets, transforms  # imported here: only (c) needs torchvision

    started = time.perf_counter()
    datamodule = MNISTData(data_dir, batch_size, seed=0, download=False)
    try:
        datamodule.setup()
    except DataError as error:
        raise SystemExit(f"lenet_epoch: error: {error}") from None
    images, labels = (t.to(device) for t in datamodule.splits["train"])  # (55000, 1, 28, 28) uint8, (55000,) long
    load_inmemory = time.perf_counter() - started

    with torchvision_root(data_dir) as root:
        started = time.perf_counter()
        # ToTensor scales to [0, 1] as the in-memory path does, and LeNet5 standardises its input itself, so the
        # Normalize is the identity (mean 0, std 1): it keeps the computation the same as (a) while still paying the
        # per-sample cost of the usual ToTensor + Normalize pipeline.
        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.0,), (1.0,))])
        mnist = datasets.MNIST(root=str(root), train=True, download=False, transform=transform)
        indices = train_indices(len(mnist))
        if not torch.equal(mnist.data[indices], images.squeeze(1).cpu()):
            raise SystemExit("lenet_epoch: error: torchvision's MNIST and MNISTData disagree on the training images")
        dataset = torch.utils.data.Subset(mnist, indices)
        load_torchvision = time.perf_counter() - started

        def loader() -> torch.utils.data.DataLoader:
            return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                               num_workers=args.workers, pin_memory=device.type == "cuda")  # fmt: skip

        def run_a(batches: int | None) -> tuple[float, int]:
            model = fresh_model(entry, task, device)
            return plain_epoch(model, tensor_batches(images, labels, batch_size), device, batches)

        def run_c(batches: int | None) -> tuple[float, int]:
            model = fresh_model(entry, task, device)
            return plain_epoch(model, loader(), device, batches)

        n_batches = -(-len(labels) // batch_size) if limit is None else min(limit, -(-len(labels) // batch_size))
        print(f"{entry.name} on {task.name}: {len(labels):,} training images, batch {batch_size}, "
              f"{n_batches:,} steps per epoch{' (--limit-batches)' if limit else ''}; {accelerator} "
              f"({hardware_label(environment(accelerator))}), torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads", flush=True)  # fmt: skip
        print(f"data loaded: in memory {load_inmemory:.2f}s, torchvision {load_torchvision:.2f}s; "
              f"warming up ({WARMUP_BATCHES} batches each)", flush=True)  # fmt: skip
        run_a(WARMUP_BATCHES)
        runs = Path(tempfile.mkdtemp(prefix="lenet-epoch-runs-"))  # the harness's run folders, removed at the end
        harness_epoch(entry, accelerator, data_dir, 10 * WARMUP_BATCHES, runs / "warm-up")  # W&B's first run too
        run_c(WARMUP_BATCHES)

        a, b, b_fit, c = [], [], [], []
        counts: dict[str, int] = {}
        for epoch in range(args.epochs):  # the methods take turns, so load drift hits them alike
            seconds, counts["a"] = run_a(limit)
            a.append(seconds)
            train_s, fit_s, counts["b"] = harness_epoch(entry, accelerator, data_dir, limit, runs / f"epoch-{epoch}")
            b.append(train_s)
            b_fit.append(fit_s)
            seconds, counts["c"] = run_c(limit)
            c.append(seconds)
            print(f"epoch {epoch + 1}/{args.epochs}: (a) {a[-1]:.2f}s  (b) {b[-1]:.2f}s (run {b_fit[-1]:.2f}s)  "
                  f"(c) {c[-1]:.2f}s", flush=True)  # fmt: skip
        shutil.rmtree(runs, ignore_errors=True)
    if len(set(counts.values())) != 1:
        raise SystemExit(f"lenet_epoch: error: the methods trained on different numbers of images: {counts}")

    n = counts["a"]
    results = {
        "a": Measurement("(a) plain loop, in-memory tensors", a, n),
        "b": Measurement("(b) harness, training clock", b, n),
        "b_fit": Measurement("(b) harness, whole run's wall", b_fit, n),
        "c": Measurement(f"(c) DataLoader + ToTensor, {args.workers} workers", c, n),
    }
    paired = [b_s / a_s for a_s, b_s in zip(a, b, strict=True)]  # each epoch's (b) against the (a) just before it
    ratios = {
        "b/a": results["b"].median / results["a"].median,
        "b/a per epoch": paired,
        "b/a median of the per-epoch ratios": statistics.median(paired),
        "c/b": results["c"].median / results["b"].median,
        "c/a": results["c"].median / results["a"].median,
    }

    print(f"\n{'method':<42}{'s/epoch':>10}{'images/s':>12}")
    for m in results.values():
        print(f"{m.name:<42}{m.median:>10.2f}{m.images_per_s:>12,.0f}")
    met = {True: "met", False: "MISSED"}
    target = TARGET_HARNESS.get(entry.name, 1.10)
    print(f"\n(b)/(a) = {ratios['b/a']:.3f}  target <= {target:.2f}: {met[ratios['b/a'] <= target]}")
    print(f"(b)/(a) epoch by epoch: {', '.join(f'{r:.3f}' for r in paired)} (median {statistics.median(paired):.3f})")
    print(f"(c)/(b) = {ratios['c/b']:.3f}  target >= {TARGET_PIPELINE:.0f}: {met[ratios['c/b'] >= TARGET_PIPELINE]}")
    print(f"(c)/(a) = {ratios['c/a']:.3f}")
    if limit:
        print(f"(only {limit} batches per epoch: a quick check, not the full-epoch numbers)")

    report = {
        "entry": entry.name,
        "task": task.name,
        "batch_size": batch_size,
        "epochs": args.epochs,
        "limit_batches": limit,
        "workers": args.workers,
        "accelerator": accelerator,
        "measurements": {key: m.as_dict() for key, m in results.items()},
        "ratios": ratios,
        "targets": {"b/a": f"<= {target}", "c/b": f">= {TARGET_PIPELINE}"},
        "load_seconds": {"in_memory": load_inmemory, "torchvision": load_torchvision},
        "torch": torch.__version__,
        "environment": environment(accelerator),
        "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    }
    write_report(report, args.json)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
