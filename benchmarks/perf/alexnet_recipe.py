"""Does a recipe leave AlexNet's chance plateau? A short fixed-lr probe on an image folder, several recipes in turn.

Evidence for the learning rate the Imagenette configs use: each probe trains the entry's model from its own
initialisation with SGD (momentum 0.9, weight decay 5e-4, batch 128, a constant lr) for a few epochs on random crops
of ``<images>/train`` and prints the centre-crop top-1 error on ``<images>/val`` after every epoch. Meant for a GPU
(bf16-mixed); on a CPU use a small folder.

Run: python -m benchmarks.perf.alexnet_recipe --images <folder> --epochs 20 --probe alexnet:0.01 --probe alexnet:0.001
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks import paths
from benchmarks.perf.images import FolderData
from benchmarks.registry import get_entry
from benchmarks.tasks import get_task


def probe(entry_name: str, lr: float, data: FolderData, epochs: int, device, dtype, seed: int = 0) -> list[dict]:
    entry, task = get_entry(entry_name), get_task("imagenette-224re")
    torch.manual_seed(seed)
    model = entry.build_model(task).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    store, labels = data.stores[data.test_split]
    history, started = [], time.perf_counter()
    for epoch in range(epochs):
        model.train()
        batches = data.train_dataloader()
        batches.epoch = lambda e=epoch: e
        losses = []
        for x, y in batches:
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = F.cross_entropy(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        model.eval()
        correct = 0
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            for start in range(0, len(labels), 250):
                x = torch.as_tensor(store[start : start + 250]).to(device).float() / 255
                correct += (model.predict(x, crops=1).argmax(-1) == labels[start : start + 250].to(device)).sum()
        row = {
            "epoch": epoch + 1,
            "train_loss": torch.stack(losses).mean().item(),
            "val_error": 100 - 100 * correct.item() / len(labels),
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        print(f"{entry_name} lr {lr}: " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    return history


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--probe", action="append", required=True, help="entry:lr, e.g. alexnet:0.01")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else None
    data = FolderData(args.images, 128, paths.cache_dir() / "perf")
    data.device = device
    data.setup()
    report = {"images": str(args.images), "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "train_images": len(data.train_indices), "val_images": len(data.stores[data.test_split][1]),
              "probes": {}}  # fmt: skip
    for spec in args.probe:
        name, lr = spec.rsplit(":", 1)
        report["probes"][spec] = probe(name, float(lr), data, args.epochs, device, dtype)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
