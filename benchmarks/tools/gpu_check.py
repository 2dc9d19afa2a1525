"""A prepared check for a lent GPU machine: does every entry train in mixed precision, and what does a real run give?

1. every registered entry, briefly (one seed, one epoch of 20 training batches, then the usual validation and test),
   on its default task and on ``digits`` where it lists it, in bf16-mixed and in 16-mixed; these are smoke runs, their
   result files go to ``<output>/gpu-check/smoke-results``, never to the leaderboard;
2. the full ``lenet5-modern`` benchmark on MNIST (all its default seeds, precision auto = bf16-mixed where the GPU
   supports it), written to leaderboards/results like any ``milestones bench`` run (skip it with ``--no-full``);
3. a summary table: entry, task, precision, status, test error, samples/s, peak memory, and the exception of every
   run that raised one;
4. where more than one GPU is visible, every entry briefly under DDP on all of them (benchmarks/tools/ddp_check).
   Each run is caught on its own so one failure hides no other; the exit status is 1 when any
   run failed. Runs on a task whose data is not in the data folder are skipped with the reason (nothing downloads).

Run: make gpu-check   (ARGS='--no-full' for the smoke runs only). Estimated, not yet measured: 18 smoke runs of a few
seconds each and a full run of 3 × 15 epochs × 430 steps, about 3-5 minutes on one H100, within its 8-minute budget.
CPU dry run, well under a minute (16-mixed is GPU-only in Lightning, so the CPU uses bf16-mixed and 32-true, and the
full run is skipped unless --full is given):
    python -m benchmarks.tools.gpu_check --accelerator cpu --entries mcculloch-pitts,perceptron --no-full
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

from benchmarks.core import paths
from benchmarks.running.harness import BenchError, BenchOptions, resolve_accelerator, run_benchmark
from benchmarks.running.registry import Entry, all_entries
from benchmarks.tasks import Task, get_task, unknown

GPU_PRECISIONS = ("bf16-mixed", "16-mixed")
CPU_PRECISIONS = ("bf16-mixed", "32-true")  # Lightning supports no 16-mixed on CPU
SMOKE_BATCHES = 20
FULL_ENTRY, FULL_TASK = "lenet5-modern", "mnist"


@dataclass
class Row:
    entry: str
    task: str
    precision: str
    status: str  # ok | failed (the run says so) | error (it raised) | skipped (no data)
    error: float | None = None  # the task's metric on the test set (all tasks here report error %)
    samples_per_s: float | None = None
    peak_memory: str = ""
    seconds: float = 0.0
    note: str = ""  # the exception, the skip reason, or where the result file went
    full: bool = False  # the full benchmark, not a smoke run


def tasks_to_check(entry: Entry) -> list[str]:
    """The entry's default task, and digits (bundled, no data folder needed) when the entry lists it."""
    names = [entry.default_task]
    if "digits" in entry.config.tasks and "digits" not in names:
        names.append("digits")
    return names


def missing_data(task: Task, data_dir: Path) -> str | None:
    """Why ``task`` cannot run from ``data_dir`` (offline), or None when it can."""
    if task.bundled:
        return None
    datamodule = task.make_datamodule(data_dir, 1, seed=0, download=False)
    remote_files = getattr(datamodule, "remote_files", None)
    if remote_files is None:
        return None
    missing = [r.relpath for r in remote_files().values() if not (data_dir / r.relpath).exists()]
    return f"{len(missing)} data file(s) missing from {data_dir}, e.g. {missing[0]}" if missing else None


def run_one(entry: str, task: str, opts: BenchOptions, data_dir: Path) -> Row:
    row = Row(entry, task, opts.precision, "skipped")
    reason = missing_data(get_task(task), data_dir)
    if reason:
        row.note = reason
        print(f"\n=== {entry} on {task}, {opts.precision}: skipped, {reason}", flush=True)
        return row
    print(f"\n=== {entry} on {task}, {opts.precision}", flush=True)
    started = time.perf_counter()
    try:
        result, path = run_benchmark(entry, opts)
    except Exception as error:  # one failure must not hide the others
        traceback.print_exc()
        row.status, row.note = "error", f"{type(error).__name__}: {' '.join(str(error).split())}"
    else:
        row.precision, row.status = result.precision, result.status
        row.error = result.aggregate.mean if result.aggregate else None
        row.samples_per_s = result.samples_per_s
        row.peak_memory = f"{result.peak_memory_mb:,.0f} MB ({result.peak_memory_kind})"
        failures = [f"seed {s.seed}: {s.failure}" for s in result.seeds if s.failure]
        row.note = "; ".join(failures) or f"result: {path}"
    row.seconds = time.perf_counter() - started
    return row


def print_summary(rows: list[Row]) -> None:
    header = f"{'entry':<16}{'task':<14}{'run':<7}{'precision':<12}{'status':<9}{'test err %':>11}{'samples/s':>12}  "
    header += f"{'peak memory':<30}{'time':>7}"
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        error = f"{r.error:.2f}" if r.error is not None else "—"
        speed = f"{r.samples_per_s:,.0f}" if r.samples_per_s else "—"
        run = "full" if r.full else "smoke"
        print(f"{r.entry:<16}{r.task:<14}{run:<7}{r.precision:<12}{r.status:<9}{error:>11}{speed:>12}  "
              f"{r.peak_memory or '—':<30}{r.seconds:>6.0f}s")  # fmt: skip
    for r in (r for r in rows if r.status != "ok" or r.full):
        print(f"  {r.entry} / {r.task} / {'full' if r.full else 'smoke'} / {r.precision} [{r.status}]: {r.note}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tools.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--accelerator", default="gpu", choices=["gpu", "cpu", "auto"],
                        help="gpu (default); cpu is the dry run: bf16-mixed and 32-true, no full run")  # fmt: skip
    parser.add_argument("--output-dir", help="run folders go under <output>/gpu-check (default: $MILESTONES_OUTPUT "
                        "or runs/); the full run's result goes to leaderboards/results")  # fmt: skip
    parser.add_argument("--data-dir", help="data folder with MNIST/raw (default: $MILESTONES_DATA or the cache)")
    parser.add_argument("--entries", help="comma-separated entries to smoke-test (default: all registered)")
    full = parser.add_mutually_exclusive_group()
    full.add_argument("--no-full", dest="full", action="store_false", default=None,
                      help=f"skip the full {FULL_ENTRY} benchmark")  # fmt: skip
    full.add_argument("--full", dest="full", action="store_true", help="run the full benchmark on CPU too")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", ".*(does not have many workers|GPU available but not used).*")
    try:
        accelerator = resolve_accelerator(args.accelerator)
    except BenchError as error:
        print(f"gpu_check: error: {error}", file=sys.stderr)
        return 2
    data_dir = paths.data_dir(args.data_dir)
    os.environ["MILESTONES_DATA"] = str(data_dir)
    output = paths.output_dir(args.output_dir)
    entries = all_entries()
    names = [n.strip() for n in args.entries.split(",") if n.strip()] if args.entries else list(entries)
    for name in names:
        if name not in entries:
            print(f"gpu_check: error: {unknown('entry', name, list(entries))}", file=sys.stderr)
            return 2
    precisions = GPU_PRECISIONS if accelerator == "gpu" else CPU_PRECISIONS
    run_full = args.full if args.full is not None else accelerator == "gpu"
    print(f"gpu check on {accelerator}: entries {', '.join(names)}; precisions {', '.join(precisions)}; "
          f"full {FULL_ENTRY} run: {'yes' if run_full else 'no'}; data {data_dir}; output {output}",
          flush=True)  # fmt: skip

    started = time.perf_counter()
    rows = []
    for name in names:
        for task in tasks_to_check(entries[name]):
            for precision in precisions:
                opts = BenchOptions(
                    task=task,
                    seeds=[0],
                    precision=precision,
                    accelerator=accelerator,
                    data_dir=str(data_dir),
                    output_dir=str(output / "gpu-check"),
                    results_dir=str(output / "gpu-check" / "smoke-results"),
                    wandb="off",
                    max_epochs=1,
                    limit_train_batches=SMOKE_BATCHES,
                    download=False,
                    progress="plain",
                )
                rows.append(run_one(name, task, opts, data_dir))
    if run_full:
        opts = BenchOptions(
            task=FULL_TASK,
            precision="auto",  # bf16-mixed on GPUs that have it, else 16-mixed; 32-true on CPU
            accelerator=accelerator,
            data_dir=str(data_dir),
            output_dir=str(output),
            results_dir=None,  # leaderboards/results: a real result
            wandb="off",
            download=False,
            progress="plain",
        )
        rows.append(run_one(FULL_ENTRY, FULL_TASK, opts, data_dir))
        rows[-1].full = True

    print_summary(rows)
    ddp_status = multi_gpu_leg(accelerator, output, data_dir)
    bad = [r for r in rows if r.status in ("failed", "error")]
    skipped = [r for r in rows if r.status == "skipped"]
    print(f"\n{len(rows)} runs in {time.perf_counter() - started:.0f}s: {len(rows) - len(bad) - len(skipped)} ok, "
          f"{len(bad)} failed, {len(skipped)} skipped" + (" (peak memory on CPU is the process's maximum RSS so far)"
          if accelerator == "cpu" else ""))  # fmt: skip
    return 1 if bad or ddp_status else 0


def multi_gpu_leg(accelerator: str, output: Path, data_dir: Path) -> int:
    """Where more than one GPU is visible: every entry briefly under DDP on all of them (benchmarks/tools/ddp_check,
    its own process: Lightning starts the other ranks by running that command again). Returns its exit status."""
    import subprocess

    import torch

    gpus = torch.cuda.device_count() if accelerator == "gpu" else 0
    if gpus < 2:
        print(f"\nmulti-GPU leg (every entry under DDP): skipped, {gpus} GPU{'s' * (gpus != 1)} visible", flush=True)
        return 0
    print(f"\nmulti-GPU leg: every entry under DDP on {gpus} GPUs", flush=True)
    command = [sys.executable, "-m", "benchmarks.tools.ddp_check", "--devices", str(gpus), "--data-dir",
               str(data_dir), "--output-dir", str(output / "gpu-check")]  # fmt: skip
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
