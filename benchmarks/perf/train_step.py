"""Images/s of an entry's training step alone (forward, backward, SGD) on a random batch: the model's own speed.

Separates the model from the data pipeline: what ``perf-images`` can at best reach. Reports the median over
``--steps`` timed steps after ``--warmup`` untimed ones, per precision, for each ``--entry``.

Run: python -m benchmarks.perf.train_step --entry alexnet --entry alexnet-owt --precision 32-true
     (compare GLIBC_TUNABLES= python -m ... with the Makefile's setting to see what keeping freed memory buys;
     --torch-lrn swaps AlexNet's own LRN for torch.nn.LocalResponseNorm with the same formula, to time both)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.core.environment import environment, hardware_label
from benchmarks.perf import write_report
from benchmarks.running.registry import get_entry


def step_speed(entry_name: str, task_name: str | None, precision: str, batch: int, steps: int, warmup: int,
               device: torch.device, torch_lrn: bool = False) -> float:  # fmt: skip
    entry = get_entry(entry_name)
    task = entry.task(task_name)
    torch.manual_seed(0)
    model = entry.build_model(task).to(device).train()
    if torch_lrn:
        swap_lrn(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    x = torch.rand(batch, *task.model_inputs["input_shape"], device=device)
    y = torch.randint(0, task.model_inputs["num_classes"], (batch,), device=device)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for i in range(warmup + steps):
        sync()
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype) if dtype else nullcontext():
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - started)
    return batch / statistics.median(times)


def swap_lrn(model: torch.nn.Module) -> None:
    """Replace every ``lightning_modules.alexnet.LocalResponseNorm`` by PyTorch's (whose α is divided by n)."""
    from lightning_modules.alexnet import LocalResponseNorm

    for module in model.modules():
        for name, child in module.named_children():
            if isinstance(child, LocalResponseNorm):
                replacement = torch.nn.LocalResponseNorm(child.size, child.alpha * child.size, child.beta, child.k)
                setattr(module, name, replacement)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry", action="append", required=True)
    parser.add_argument("--task", help="default: each entry's first task")
    parser.add_argument("--precision", action="append", help="default: 32-true on CPU, bf16-mixed on GPU")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--torch-lrn", action="store_true", help="time torch.nn.LocalResponseNorm instead")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precisions = args.precision or (["bf16-mixed"] if device.type == "cuda" else ["32-true"])
    env = environment("gpu" if device.type == "cuda" else "cpu")
    report = {"hardware": hardware_label(env), "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),
              "batch_size": args.batch_size, "steps": args.steps, "torch_lrn": args.torch_lrn,
              "images_per_s": {}}  # fmt: skip
    for name in args.entry:
        for precision in precisions:
            speed = step_speed(name, args.task, precision, args.batch_size, args.steps, args.warmup, device,
                               args.torch_lrn)  # fmt: skip
            report["images_per_s"][f"{name} {precision}"] = speed
            print(f"{name} {precision}: {speed:.1f} images/s ({report['hardware']}, batch {args.batch_size}, "
                  f"GLIBC_TUNABLES={report['glibc_tunables']})", flush=True)  # fmt: skip
    write_report(report, args.json)
    return report


if __name__ == "__main__":
    main()
