"""Images/s of an entry's training step alone (forward, backward, SGD) on a random batch: the model's own speed.

Separates the model from the data pipeline: what ``perf-images`` can at best reach. Every model and precision asked
for is built first and then stepped in turn (a, b, c, a, b, c, ...), so a change in the machine's load hits all of
them alike; it reports the median of ``--steps`` timed steps after ``--warmup`` untimed ones. ``--torchvision`` adds
``torchvision.models.alexnet`` (weights=None, the task's classes) beside the entries and reports each entry's step
time over it, against the 1.25 target of issue 17 for the faithful ``alexnet``; each model's forward GFLOP per image
is reported too (torch.utils.flop_counter), since the two AlexNets do nearly the same arithmetic.

Run: python -m benchmarks.perf.train_step --entry alexnet --torchvision --precision 32-true --precision bf16-mixed
     (compare GLIBC_TUNABLES= python -m ... with the Makefile's setting to see what keeping freed memory buys;
     --torch-lrn swaps AlexNet's own LRN for torch.nn.LocalResponseNorm with the same formula, to time both;
     --channels-last feeds NHWC batches; --profile prints torch.profiler's per-op table of one step of each)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.core.environment import environment, hardware_label
from benchmarks.perf import write_report
from benchmarks.running.registry import get_entry

TORCHVISION = "torchvision-alexnet"
TARGET = 1.25  # issue 17: the faithful AlexNet's step within 1.25x torchvision's


def build(name: str, task_name: str | None, torch_lrn: bool = False) -> tuple[torch.nn.Module, dict]:
    """The entry's model (or torchvision's AlexNet on the task of ``alexnet``) and its task's model inputs."""
    task = get_entry("alexnet" if name == TORCHVISION else name).task(task_name)
    torch.manual_seed(0)
    if name == TORCHVISION:
        import torchvision

        model = torchvision.models.alexnet(weights=None, num_classes=task.model_inputs["num_classes"])
    else:
        model = get_entry(name).build_model(task)
    if torch_lrn:
        swap_lrn(model)
    return model, task.model_inputs


def make_step(model: torch.nn.Module, inputs: dict, precision: str, batch: int, device: torch.device,
              channels_last: bool = False) -> Callable[[], None]:  # fmt: skip
    """One training step (forward, cross-entropy, backward, SGD with momentum) on a fixed random batch."""
    model = model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, *inputs["input_shape"], generator=generator).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, inputs["num_classes"], (batch,), generator=generator).to(device)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype) if dtype else nullcontext():
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def time_in_turn(steps: dict[str, Callable[[], None]], timed: int, warmup: int, device: torch.device) -> dict:
    """Seconds of each of ``timed`` steps per key, the keys stepped in turn after ``warmup`` rounds."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = {key: [] for key in steps}
    for i in range(warmup + timed):
        for key, step in steps.items():
            sync()
            started = time.perf_counter()
            step()
            sync()
            if i >= warmup:
                times[key].append(time.perf_counter() - started)
    return times


def forward_gflop(model: torch.nn.Module, inputs: dict) -> float:
    """Forward GFLOP per image (a multiply-add is 2), counted by torch.utils.flop_counter on one eval image."""
    from torch.utils.flop_counter import FlopCounterMode

    parameter = next(model.parameters())
    x = torch.zeros(1, *inputs["input_shape"], device=parameter.device)
    was_training = model.training
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    model.train(was_training)
    return counter.get_total_flops() / 1e9


def profile_table(step: Callable[[], None], rows: int = 15) -> str:
    """torch.profiler's per-op table (self CPU time) of one step."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        step()
    return profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


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
    parser.add_argument("--entry", action="append", default=[])
    parser.add_argument("--torchvision", action="store_true", help="time torchvision.models.alexnet beside them")
    parser.add_argument("--task", help="default: each entry's first task")
    parser.add_argument("--precision", action="append", help="default: 32-true on CPU, bf16-mixed on GPU")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--torch-lrn", action="store_true", help="time torch.nn.LocalResponseNorm instead")
    parser.add_argument("--channels-last", action="store_true", help="feed NHWC (channels_last) batches")
    parser.add_argument("--profile", action="store_true", help="print the per-op profile of one step of each")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    names = args.entry + ([TORCHVISION] if args.torchvision else [])
    if not names:
        parser.error("give at least one --entry or --torchvision")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precisions = args.precision or (["bf16-mixed"] if device.type == "cuda" else ["32-true"])
    env = environment("gpu" if device.type == "cuda" else "cpu")
    report = {"hardware": hardware_label(env), "glibc_tunables": os.environ.get("GLIBC_TUNABLES"),
              "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup, "torch_lrn": args.torch_lrn,
              "channels_last": args.channels_last, "torch": torch.__version__,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "mkldnn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
              "forward_gflop_per_image": {}, "images_per_s": {}, "step_s": {}}  # fmt: skip
    steps = {}
    for name in names:
        model, inputs = build(name, args.task, args.torch_lrn)
        report["forward_gflop_per_image"][name] = forward_gflop(model, inputs)
        for precision in precisions:
            steps[f"{name} {precision}"] = make_step(model, inputs, precision, args.batch_size, device,
                                                     args.channels_last)  # fmt: skip
    times = time_in_turn(steps, args.steps, args.warmup, device)
    for key, seconds in times.items():
        report["step_s"][key] = statistics.median(seconds)
        report["images_per_s"][key] = args.batch_size / statistics.median(seconds)
        print(f"{key}: {report['images_per_s'][key]:.1f} images/s, step {report['step_s'][key]:.3f} s "
              f"({report['hardware']}, batch {args.batch_size}, GLIBC_TUNABLES={report['glibc_tunables']})",
              flush=True)  # fmt: skip
    if args.torchvision:
        report["step_ratio_over_torchvision"] = {
            key: seconds / report["step_s"][f"{TORCHVISION} {key.rsplit(' ', 1)[1]}"]
            for key, seconds in report["step_s"].items() if not key.startswith(TORCHVISION)
        }  # fmt: skip
        report["target"] = f"alexnet step / {TORCHVISION} step <= {TARGET} at the same precision"
        flops = report["forward_gflop_per_image"]
        for key, ratio in report["step_ratio_over_torchvision"].items():
            name = key.rsplit(" ", 1)[0]
            print(
                f"{key} / {TORCHVISION}: step time x{ratio:.3f} (target <= {TARGET} for alexnet); forward GFLOP "
                f"{flops[name]:.3f} vs {flops[TORCHVISION]:.3f} per image (x{flops[name] / flops[TORCHVISION]:.3f})"
            )
    if len(precisions) > 1:
        report["speedup_over_first_precision"] = {
            f"{name} {precision}": report["step_s"][f"{name} {precisions[0]}"] / report["step_s"][f"{name} {precision}"]
            for name in names for precision in precisions[1:]
        }  # fmt: skip
        for key, speedup in report["speedup_over_first_precision"].items():
            print(f"{key}: x{speedup:.2f} the images/s of {precisions[0]}")
    if args.profile:
        for key, step in steps.items():
            print(f"\n{key}: one step, per op\n{profile_table(step)}", flush=True)
    write_report(report, args.json)
    return report


if __name__ == "__main__":
    main()
