"""Every registered entry, briefly, under DDP on several processes: the multi-device leg of ``make gpu-check``, and the
uniform registry test of distributed runs on CPU processes (tests/test_distributed.py).

Each entry runs one seed for one short epoch on its default task through the harness with ``--devices N``, one entry
after another in this one process (Lightning starts the other N - 1 processes when the first run trains, and they run
this same script: the same entries in the same order). The harness checks what DDP must keep: the processes end with
the same weights, and every validation and test metric is the same number on all of them. A model that cannot run
under DDP is refused with its reason (no gradient-trained parameters: a learning rule is not shared; a batch that
does not divide among the processes), and said so; an entry whose task's data is not in the data folder is skipped;
any other exception is an error, and the exit status is 1.

Run: make gpu-check (where more than one GPU is visible), or on CPU processes with the tasks' generated examples:
    python -m benchmarks.tools.ddp_check --accelerator cpu --devices 2 --example-data
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

from benchmarks.core import paths
from benchmarks.running.distributed import first_process
from benchmarks.running.harness import BenchError, BenchOptions, run_benchmark
from benchmarks.running.registry import all_entries
from benchmarks.tools.gpu_check import missing_data

SMOKE_BATCHES = 4


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tools.ddp_check", description=__doc__.splitlines()[0])
    parser.add_argument("--accelerator", default="gpu", choices=["gpu", "cpu"])
    parser.add_argument("--devices", type=int, required=True, help="processes (GPUs, or CPU processes)")
    parser.add_argument("--entries", help="comma-separated entries (default: all registered)")
    parser.add_argument("--example-data", action="store_true", help="the tasks' generated examples: no data needed")
    parser.add_argument("--data-dir", help="data folder (default: $MILESTONES_DATA or the cache)")
    parser.add_argument("--output-dir", help="run folders and smoke results go under <output>/ddp-check")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    output = paths.output_dir(args.output_dir) / "ddp-check"
    entries = all_entries()
    names = args.entries.split(",") if args.entries else sorted(entries)
    say = print if first_process() else (lambda *a, **k: None)
    say(f"ddp check: {len(names)} entries on {args.devices} {args.accelerator} processes, output {output}", flush=True)
    rows, started = [], time.perf_counter()
    for name in names:
        opts = BenchOptions(seeds=[0], accelerator=args.accelerator, devices=args.devices, strategy="ddp",
                            data_dir=args.data_dir, output_dir=str(output), results_dir=str(output / "smoke-results"),
                            wandb="off", max_epochs=1, limit_train_batches=SMOKE_BATCHES, download=False,
                            progress="none", example_data=args.example_data)  # fmt: skip
        clock = time.perf_counter()
        reason = None if args.example_data else missing_data(entries[name].task(None), paths.data_dir(args.data_dir))
        if reason:
            rows.append((name, "skipped", 0.0, reason))
            say(f"=== {name}: skipped, {reason}", flush=True)
            continue
        try:
            result, _ = run_benchmark(name, opts)
        except BenchError as error:  # a refusal with its reason, the same on every process
            status, note = "refused", " ".join(str(error).split())
        except Exception as error:  # one failure must not hide the others
            traceback.print_exc()
            status, note = "error", f"{type(error).__name__}: {' '.join(str(error).split())}"
        else:
            layout = result.distributed
            status = result.status if result.world_size == args.devices and layout else "error"
            note = (f"world size {result.world_size}, {layout.strategy}, batch {layout.batch_per_process} per "
                    f"process; {result.metric} {result.aggregate.mean:.4g}" if layout and result.aggregate else
                    f"world size {result.world_size}, no layout recorded")  # fmt: skip
        rows.append((name, status, time.perf_counter() - clock, note))
        say(f"=== {name}: {status} ({rows[-1][2]:.0f}s) {note}", flush=True)
    say(f"\n{'entry':<26}{'status':<9}{'time':>6}  note")
    for name, status, seconds, note in rows:
        say(f"{name:<26}{status:<9}{seconds:>5.0f}s  {note}")
    bad = [row for row in rows if row[1] not in ("ok", "refused", "skipped")]
    say(
        f"\n{len(rows)} entries in {time.perf_counter() - started:.0f}s: {sum(r[1] == 'ok' for r in rows)} ok, "
        f"{sum(r[1] == 'refused' for r in rows)} refused (with the reason), {len(bad)} failed or raised",
        flush=True,
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
