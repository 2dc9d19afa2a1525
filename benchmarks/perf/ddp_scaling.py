"""Samples/s of one entry at world size 1 and 2 (and more with --worlds) on this machine, through the harness.

Each world size is one ``milestones bench`` run (one seed, ``--max-epochs`` epochs, W&B off, result to a temporary
folder) with ``--devices W`` on the accelerator given; the throughput is the result's ``samples_per_s`` (training
time only, all processes together) and the wall clock is the whole command's, process starts included. On a CPU,
Lightning gives each of W processes ``cores / W`` torch threads, so W processes share the same cores that one process
uses alone: what DDP adds there is its gradient all-reduce and a second copy of the Python work, not compute.

Run: make perf-ddp   (ARGS='--entry lenet5-modern --worlds 1,2 --epochs 1')
writes leaderboards/perf/ddp-scaling-<accelerator>.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.core.environment import cpu_model
from benchmarks.core.results import find_results, read_result
from benchmarks.perf import write_report


def run(entry: str, world: int, epochs: int, accelerator: str, data_dir: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="milestones-ddp-scaling-") as folder:
        command = [
            str(Path(sys.executable).parent / "milestones"),
            "bench",
            entry,
            "--seeds",
            "0",
            "--devices",
            str(world),
            "--accelerator",
            accelerator,
            "--max-epochs",
            str(epochs),
            "--wandb",
            "off",
            "--progress",
            "none",
            "--offline",
            "--output-dir",
            folder,
            "--results-dir",
            f"{folder}/results",
        ]
        command += ["--data-dir", data_dir] if data_dir else []  # fmt: skip
        started = time.perf_counter()
        out = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if out.returncode:
            raise SystemExit(
                f"world size {world} failed (exit {out.returncode}):\n{out.stdout[-2000:]}{out.stderr[-2000:]}"
            )
        result = read_result(find_results(Path(folder) / "results")[0])
    seed = result.seeds[0]
    threads = (
        [r.torch_threads for r in result.distributed.ranks]
        if result.distributed
        else [result.environment["torch_threads"]]
    )
    return {"world_size": result.world_size, "samples_per_s": round(seed.samples_per_s, 1),
            "train_time_s": round(seed.train_time_s, 2), "wall_s": round(wall, 2), "torch_threads": threads,
            "test_metric": {result.metric: seed.metrics[result.metric]}}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf.ddp_scaling", description=__doc__.splitlines()[0])
    parser.add_argument("--entry", default="lenet5-modern")
    parser.add_argument("--worlds", default="1,2", help="comma-separated world sizes")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--data-dir", help="data folder (default: $MILESTONES_DATA or the cache)")
    parser.add_argument("--out", help="report path (default: leaderboards/perf/ddp-scaling-<accelerator>.json)")
    args = parser.parse_args(argv)
    rows = []
    for world in (int(w) for w in args.worlds.split(",")):
        rows.append(run(args.entry, world, args.epochs, args.accelerator, args.data_dir))
        row = rows[-1]
        print(f"world size {world}: {row['samples_per_s']:,.0f} samples/s, {row['train_time_s']:.1f} s training, "
              f"{row['wall_s']:.1f} s wall, threads {row['torch_threads']}", flush=True)  # fmt: skip
    for row in rows:
        row["speedup_vs_first"] = round(row["samples_per_s"] / rows[0]["samples_per_s"], 3)
    report = {"entry": args.entry, "epochs": args.epochs, "accelerator": args.accelerator, "cpu": cpu_model(),
              "command": "python -m benchmarks.perf.ddp_scaling " + " ".join(argv or sys.argv[1:]),
              "runs": rows}  # fmt: skip
    out = Path(args.out) if args.out else Path(f"leaderboards/perf/ddp-scaling-{args.accelerator}.json")
    write_report(report, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
