"""Every registered entry, briefly, under DDP on several processes: the multi-device leg of ``make gpu-check``, and the
uniform registry test of distributed runs on CPU processes (tests/test_distributed.py).

Each entry is one ``milestones bench <entry> --devices N`` of one seed for one short epoch on its default task (its
own processes: Lightning starts the other N - 1 by running that command again), with a time limit, so that an entry
that fails or hangs takes nothing else down. The harness checks what DDP must keep: the processes end with the same
weights, and every validation and test metric is the same number on all of them. A model that cannot run under DDP
is refused with its reason (no gradient-trained parameters: a learning rule is not shared; a training step DDP's
reducer refuses; a batch that does not divide among the processes), and said so (a refusal known from the model and
its data module alone, distributed.cannot_share, without starting processes: the one-line refusal of the command
itself is tests/test_distributed.py's); an entry whose task's data is not
in the data folder is skipped; anything else is an error, and the exit status is 1.

Run: make gpu-check (where more than one GPU is visible), or on CPU processes with the tasks' generated examples:
    python -m benchmarks.tools.ddp_check --accelerator cpu --devices 2 --example-data
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

from benchmarks.core import paths
from benchmarks.core.results import find_results, read_result
from benchmarks.running.distributed import RANK_VARIABLES, cannot_share
from benchmarks.running.registry import all_entries
from benchmarks.tools.gpu_check import missing_data

SMOKE_BATCHES = 2  # two optimiser steps: the weights must still agree after a step that started from synced ones
TIME_LIMIT_S = 600  # per entry: a hang is reported, not waited for


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tools.ddp_check", description=__doc__.splitlines()[0])
    parser.add_argument("--accelerator", default="gpu", choices=["gpu", "cpu"])
    parser.add_argument("--devices", type=int, required=True, help="processes (GPUs, or CPU processes)")
    parser.add_argument("--entries", help="comma-separated entries (default: all registered)")
    parser.add_argument("--example-data", action="store_true", help="the tasks' generated examples: no data needed")
    parser.add_argument("--data-dir", help="data folder (default: $MILESTONES_DATA or the cache)")
    parser.add_argument("--output-dir", help="run folders and smoke results go under <output>/ddp-check")
    return parser


def known_refusal(name: str, entry, devices: int) -> str | None:
    """The harness's refusal where it is known before any process starts (distributed.cannot_share, from the model and
    its data module's class): said here without the seconds of starting processes that would only say it."""
    task = entry.task(None)
    return cannot_share(name, entry.build_model(task), task.make_datamodule, devices)


def check_entry(name: str, args, output) -> tuple[str, str]:
    """(status, note) of one entry's short DDP run in its own processes."""
    results = output / "smoke-results" / name
    command = [sys.executable, "-m", "benchmarks.cli", "bench", name, "--seeds", "0", "--accelerator",
               args.accelerator, "--devices", str(args.devices), "--strategy", "ddp", "--max-epochs", "1",
               "--limit-train-batches", str(SMOKE_BATCHES), "--wandb", "off", "--progress", "none", "--offline",
               "--output-dir", str(output), "--results-dir", str(results)]  # fmt: skip
    command += ["--example-data"] if args.example_data else ["--data-dir", str(paths.data_dir(args.data_dir))]
    launched = (*RANK_VARIABLES, "WORLD_SIZE")  # each check is a run of its own, never a rank of an outer one
    environment = {k: v for k, v in os.environ.items() if k not in launched}
    proc = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group: a hang is killed whole  # fmt: skip
    try:
        out, err = proc.communicate(timeout=TIME_LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return "error", f"no end after {TIME_LIMIT_S} s (a hang): killed"
    said = [line for line in err.splitlines() if line.startswith("milestones: error: ")]
    if proc.returncode == 2 and said:  # a one-line refusal, with its reason
        return "refused", said[0].removeprefix("milestones: error: ")
    if proc.returncode != 0:
        return "error", f"exit {proc.returncode}: {' | '.join((out + err).strip().splitlines()[-3:])}"
    result = read_result(find_results(results)[-1])
    shutil.rmtree(output / result.task / name)  # its checkpoints (AlexNet's: half a GB) are not what is checked
    layout = result.distributed
    if result.world_size != args.devices or layout is None:
        return "error", f"world size {result.world_size}, layout {'recorded' if layout else 'not recorded'}"
    value = f"{result.metric} {result.aggregate.mean:.4g}" if result.aggregate else "no metric"
    return result.status, f"world size {result.world_size}, batch {layout.batch_per_process} per process; {value}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    output = paths.output_dir(args.output_dir) / "ddp-check"
    entries = all_entries()
    names = args.entries.split(",") if args.entries else sorted(entries)
    print(f"ddp check: {len(names)} entries on {args.devices} {args.accelerator} processes, output {output}",
          flush=True)  # fmt: skip
    rows, started = [], time.perf_counter()
    for name in names:
        clock = time.perf_counter()
        reason = None if args.example_data else missing_data(entries[name].task(None), paths.data_dir(args.data_dir))
        if reason:
            status, note = "skipped", reason
        elif refusal := known_refusal(name, entries[name], args.devices):
            status, note = "refused", refusal
        else:
            status, note = check_entry(name, args, output)
        rows.append((name, status, time.perf_counter() - clock, note))
        print(f"=== {name}: {status} ({rows[-1][2]:.0f}s) {note}", flush=True)
    print(f"\n{'entry':<26}{'status':<9}{'time':>6}  note")
    for name, status, seconds, note in rows:
        print(f"{name:<26}{status:<9}{seconds:>5.0f}s  {note}")
    counts = {status: sum(row[1] == status for row in rows) for status in ("ok", "refused", "skipped")}
    bad = len(rows) - sum(counts.values())
    print(
        f"\n{len(rows)} entries in {time.perf_counter() - started:.0f}s: {counts['ok']} ok, {counts['refused']} "
        f"refused (with the reason), {counts['skipped']} skipped (no data), {bad} failed or raised",
        flush=True,
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
