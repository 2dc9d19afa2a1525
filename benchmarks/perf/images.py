"""Training images/s of AlexNet on Imagenette, fed two ways in one process: the cached tensor pipeline vs ImageFolder.

(a) cached      the task's data module: JPEGs decoded once into a uint8 memmap (on the GPU when training there),
                random 224 crop + flip as one batched gather, PCA lighting as one matrix product per batch
(b) imagefolder torchvision's ``ImageFolder`` on the same JPEG folder with per-sample PIL transforms (Resize 256,
                CenterCrop 256, RandomCrop 224, RandomHorizontalFlip, ToTensor, the same PCA lighting per sample) in a
                ``DataLoader`` with worker processes (pinned memory on a GPU)

Both feed the same training step: the entry's model, SGD from its ``configure_optimizers()``, cross-entropy, under
the chosen precision. Each pipeline is also timed alone (no model), which shows what the pipeline itself can deliver.
The methods take turns round by round (a, b, a, b, ...) so a change in the machine's load hits both alike; medians
are reported. Target: (a)/(b) ≥ 2 in training images/s.

Run: make perf-images   (or: python -m benchmarks.perf.images --rounds 3 --batches 4 --json out.json;
     --images <folder> times any <split>/<class>/<image> folder instead of the task's data)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.core import paths
from benchmarks.core.environment import environment, hardware_label
from benchmarks.perf import write_report
from benchmarks.running.registry import get_entry
from benchmarks.tasks import get_task
from benchmarks.tasks.imageset import ImageSetData, derived_manifest
from benchmarks.tasks.manifest import scan_folder


class FolderData(ImageSetData):
    """Any ``<root>/<split>/<class>/<image>`` folder as an image set (the manifest is built by scanning it)."""

    def __init__(self, root: Path, batch_size: int, cache_dir: Path) -> None:
        super().__init__(None, batch_size, cache_dir=cache_dir)
        self._root = Path(root)
        self.cache_name = "folder-" + self._root.name
        self._manifest = cache_dir / f"{self.cache_name}-manifest.csv.gz"

    def root(self) -> Path:
        return self._root

    def fetch(self) -> None:
        derived_manifest(self._manifest, lambda: scan_folder(self._root, ("train", "val")))  # checked, rebuilt if bad

    def manifest_file(self) -> Path:
        return self._manifest

    def identity(self) -> dict[str, str]:
        return {}


class Lighting:
    """AlexNet §4.1 PCA lighting for one (3, H, W) tensor: the per-sample version of the batched one."""

    def __init__(self, basis: tuple[torch.Tensor, torch.Tensor], std: float = 0.1) -> None:
        self.eigenvectors, self.scales = basis
        self.std = std

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        alpha = torch.randn(3) * self.std
        return image + (self.eigenvectors @ (alpha * self.scales))[:, None, None]


def imagefolder_loader(root: Path, batch_size: int, workers: int, lighting, pin: bool):
    from torchvision import datasets, transforms

    transform = transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(256), transforms.RandomCrop(224),
        transforms.RandomHorizontalFlip(), transforms.ToTensor(), Lighting(lighting),
    ])  # fmt: skip
    dataset = datasets.ImageFolder(str(root / "train"), transform=transform)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       pin_memory=pin, drop_last=True, persistent_workers=workers > 0)  # fmt: skip


def train_step_fn(model, optimizer, device: torch.device, precision: str):
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(enabled=precision == "16-mixed")

    def step(x, y):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        autocast = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()
        with autocast:
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def timed(batches, n: int, step, device: torch.device) -> float:
    """Images/s over ``n`` batches (the iterator is already warm)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    started, images = time.perf_counter(), 0
    for _ in range(n):
        x, y = next(batches)
        if step is not None:
            step(x, y)
        images += len(y)
    sync()
    return images / (time.perf_counter() - started)


def forever(make):
    while True:
        yield from make()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry", default="alexnet")
    parser.add_argument("--task", default="imagenette-224re")
    parser.add_argument("--images", type=Path, help="time this <split>/<class>/<image> folder instead of the task's")
    parser.add_argument("--data-dir")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", help="default: bf16-mixed on a GPU, 32-true on a CPU")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="DataLoader workers for (b)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=4, help="timed batches per method per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches before the first round")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    precision = args.precision or ("bf16-mixed" if device.type == "cuda" else "32-true")
    torch.backends.cudnn.benchmark = True

    entry, task = get_entry(args.entry), get_task(args.task)
    if args.images:
        data = FolderData(args.images, args.batch_size, paths.cache_dir() / "perf")
    else:
        data = task.make_datamodule(paths.data_dir(args.data_dir), args.batch_size, seed=0, download=False)
    print("preparing the cache (built once; later runs reuse it)", flush=True)
    data.device = device  # as under the harness: on a GPU the uint8 set is moved into GPU memory
    data.setup()
    root = data.root()
    loader = imagefolder_loader(root, args.batch_size, args.workers, data.lighting, device.type == "cuda")
    cached, folder = forever(lambda: iter(data.train_dataloader())), forever(lambda: iter(loader))

    torch.manual_seed(0)
    model = entry.build_model(task).to(device).train()
    optimizer = model.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    step = train_step_fn(model, optimizer, device, precision)
    for batches in (cached, folder):
        timed(batches, args.warmup, step, device)

    figures = {"cached_train": [], "imagefolder_train": [], "cached_data_only": [], "imagefolder_data_only": []}
    for round_ in range(args.rounds):
        figures["cached_train"].append(timed(cached, args.batches, step, device))
        figures["imagefolder_train"].append(timed(folder, args.batches, step, device))
        # data alone, from fresh iterators: (b)'s workers must not hand over batches prefetched during training
        figures["cached_data_only"].append(timed(iter(data.train_dataloader()), args.batches * 4, None, device))
        figures["imagefolder_data_only"].append(timed(iter(loader), args.batches * 4, None, device))
        print(f"round {round_ + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in figures.items()),
              flush=True)  # fmt: skip
    median = {k: statistics.median(v) for k, v in figures.items()}
    env = environment("gpu" if device.type == "cuda" else "cpu")
    report = {
        "what": f"training images/s of {entry.name} on {task.name}: (a) cached tensor pipeline vs (b) ImageFolder",
        "entry": entry.name, "task": task.name, "images": str(args.images or root), "precision": precision,
        "batch_size": args.batch_size, "workers": args.workers, "rounds": args.rounds, "batches": args.batches,
        "images_per_s": figures, "median_images_per_s": median,
        "train_ratio_a_over_b": median["cached_train"] / median["imagefolder_train"],
        "data_only_ratio_a_over_b": median["cached_data_only"] / median["imagefolder_data_only"],
        "hardware": hardware_label(env), "environment": env,
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    }  # fmt: skip
    print(f"\n{report['what']} on {report['hardware']}, {precision}, batch {args.batch_size}, {args.workers} workers")
    print(
        f"  training:  (a) {median['cached_train']:.1f}  (b) {median['imagefolder_train']:.1f} img/s  "
        f"→ (a)/(b) = {report['train_ratio_a_over_b']:.2f}   (target ≥ 2)"
    )
    print(
        f"  data only: (a) {median['cached_data_only']:.1f}  (b) {median['imagefolder_data_only']:.1f} img/s  "
        f"→ (a)/(b) = {report['data_only_ratio_a_over_b']:.2f}"
    )
    write_report(report, args.json)
    return report


if __name__ == "__main__":
    main()
