"""Does a learning rate keep AlexNet alive? The first steps of training at a fixed lr, with FC7's live-unit fraction.

Evidence for the learning rate of the Imagenette configs (``leaderboards/perf/alexnet-lr-probe.md``): the entry's
model, from its own initialisation (seed 0), trains with SGD (momentum 0.9, weight decay 5e-4, batch 128, the given
constant lr) on the task's augmented training batches; every step prints the loss and the fraction of FC7's ReLU
outputs that are positive. A network whose FC7 fraction falls to 0 is dead: its output no longer depends on the
image, and no gradient reaches the layers below.

Run: python -m benchmarks.perf.alexnet_recipe --lr 0.01 --lr 0.003 --lr 0.001 --steps 30   (≈ 3 min per lr, 2 cores)
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from benchmarks.core import paths
from benchmarks.running.registry import get_entry
from benchmarks.tasks import get_task


def probe(entry_name: str, task_name: str, lr: float, steps: int, data_dir: str | None) -> list[dict]:
    entry, task = get_entry(entry_name), get_task(task_name)
    data = task.make_datamodule(paths.data_dir(data_dir), entry.config.data.batch_size, seed=0, download=False)
    data.setup()
    torch.manual_seed(0)
    model = entry.build_model(task)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    fc7_relu = [m for m in model.classifier if isinstance(m, torch.nn.ReLU)][-1]
    alive = {}
    fc7_relu.register_forward_hook(lambda module, inputs, out: alive.__setitem__("fc7", (out > 0).float().mean()))
    rows, started = [], time.perf_counter()
    for step, (x, y) in enumerate(data.train_dataloader()):
        if step == steps:
            break
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        rows.append({"step": step, "loss": loss.item(), "fc7_alive": alive["fc7"].item()})
        print(f"{entry_name} lr {lr}: step {step:3d}  loss {loss.item():7.3f}  FC7 alive {alive['fc7'].item():.3f}  "
              f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry", default="alexnet")
    parser.add_argument("--task", default="imagenette-224re")
    parser.add_argument("--lr", type=float, action="append", required=True)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)
    for lr in args.lr:
        probe(args.entry, args.task, lr, args.steps, args.data_dir)


if __name__ == "__main__":
    main()
