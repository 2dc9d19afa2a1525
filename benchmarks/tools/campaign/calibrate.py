"""One short, measured run of a campaign job, in its own process (pinned to its cores by the runner): one seed, one
epoch cut to ``--batches`` training batches, then a validation (also where the config validates less often: a smoke
run's --max-epochs brings its validation within reach) and the test, through the harness. Writes what the planner
needs as JSON: the seconds of a training step, of a validation, of one checkpoint save (the run's own last.ckpt,
saved again as the harness saves it every epoch), of the rest of a seed (test, setup), the full epoch's length in
batches, and the peak device memory. A smoke run: its result never reaches a leaderboard.

    python -m benchmarks.tools.campaign.calibrate <entry> <task> --batches 20 --json <file> [harness options]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import lightning as L
import torch

from benchmarks.core.results import write_atomic
from benchmarks.running import checkpoints
from benchmarks.running.harness import BenchOptions, run_benchmark


class EpochLength(L.Callback):
    """The full epoch's training batches: the loader's length, which --limit-train-batches does not change."""

    batches: int | None = None

    def on_train_start(self, trainer, pl_module):
        try:
            self.batches = len(trainer.train_dataloader)
        except TypeError:  # an iterable without a length: the planner says it cannot estimate the job
            self.batches = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tools.campaign.calibrate")
    parser.add_argument("entry")
    parser.add_argument("task")
    parser.add_argument("--batches", type=int, required=True)
    parser.add_argument("--json", required=True, help="where the measurement goes")
    parser.add_argument("--accelerator", required=True)
    parser.add_argument("--precision", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--data-dir")
    parser.add_argument("--example-data", action="store_true")
    args = parser.parse_args(argv)
    length = EpochLength()
    opts = BenchOptions(task=args.task, seeds=[0], precision=args.precision, accelerator=args.accelerator,
                        threads=args.threads, data_dir=args.data_dir, output_dir=args.output_dir,
                        results_dir=str(Path(args.output_dir) / "results"), wandb="off", max_epochs=1,
                        limit_train_batches=args.batches, download=False, progress="none",
                        example_data=args.example_data, callbacks=[length])  # fmt: skip
    result, _ = run_benchmark(args.entry, opts)
    seed = result.seeds[0]
    if seed.status != "ok":
        print(f"calibration of {args.entry} on {args.task} failed: {seed.failure}", file=sys.stderr)
        return 1
    steps = min(args.batches, length.batches or args.batches)
    last = next(Path(args.output_dir).glob(f"{args.task}/{args.entry}/*/seed-0/checkpoints/last.ckpt"))
    measured = {
        "step_s": seed.train_time_s / steps,
        "validation_s": seed.eval_time_s,
        "rest_of_seed_s": max(0.0, seed.wall_time_s - seed.train_time_s - seed.eval_time_s),
        "seed_wall_s": seed.wall_time_s,
        "checkpoint_s": save_seconds(last),
        "batches_per_epoch": length.batches,
        "memory_mb": result.peak_memory_mb,
        "memory_kind": result.peak_memory_kind,
        "device": result.environment.get("device", ""),
        "accelerator": result.environment.get("accelerator", args.accelerator),
        "precision": result.precision,
    }
    write_atomic(json.dumps(measured, indent=1), Path(args.json), overwrite=True)
    return 0


def save_seconds(checkpoint: Path) -> float:
    """One save of ``checkpoint``'s contents as the harness saves each epoch's (serialised, checksummed, written
    atomically beside it), timed."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    again = checkpoint.with_name("calibration-save.ckpt")
    started = time.perf_counter()
    checkpoints.save(state, again)
    seconds = time.perf_counter() - started
    again.unlink()
    checkpoints.record_path(again).unlink(missing_ok=True)
    return seconds


if __name__ == "__main__":
    sys.exit(main())
