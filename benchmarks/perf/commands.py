"""How long the commands a person types take: each ``milestones`` command timed in fresh processes, as typed.

``list``, ``tasks``, ``--help`` and ``bench --help`` should feel instant (under 2 s: they read config files and
print, importing neither torch nor Lightning); ``validate`` of the committed results under 10 s (it imports the
models, and checks every file and the leaderboard). Each command runs ``--repeats`` times (at least 3) after one
untimed run (which fills ``milestones tasks``'s cache, and the file cache); the median wall time is reported.

Run: make perf-commands   (or: python -m benchmarks.perf.commands --repeats 5 --json report.json)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.core import paths
from benchmarks.perf import write_report

COMMANDS = {  # command line → target seconds
    "list": 2.0,
    "tasks": 2.0,
    "--help": 2.0,
    "bench --help": 2.0,
    "validate": 10.0,
}


def time_command(argv: list[str]) -> float:
    """Wall seconds of ``python -m benchmarks.cli <argv>`` in a fresh process (output discarded); a failure stops."""
    command = [sys.executable, "-m", "benchmarks.cli", *argv]
    started = time.perf_counter()
    out = subprocess.run(command, cwd=paths.REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"milestones {' '.join(argv)} failed ({out.returncode}): {out.stderr[-2000:]}")
    return seconds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf.commands", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per command, median reported (at least 3)")
    parser.add_argument("--command", action="append", choices=list(COMMANDS), help="time only this one (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args(argv)
    if args.repeats < 3:
        raise SystemExit("--repeats must be at least 3 (a median of fewer says little)")
    commands = {name: COMMANDS[name] for name in args.command or COMMANDS}
    rows = {}
    for name, target in commands.items():
        time_command(name.split())  # untimed: fills the caches a second run would find
        seconds = [time_command(name.split()) for _ in range(args.repeats)]
        rows[name] = {"median_s": statistics.median(seconds), "seconds": seconds, "target_s": target}
        rows[name]["ok"] = rows[name]["median_s"] < target
        print(f"milestones {name}: {' '.join(f'{s:.2f}' for s in seconds)} s", flush=True)

    print(f"\n{'command':<24}{'median s':>10}{'target s':>10}   verdict")
    for name, row in rows.items():
        print(f"{'milestones ' + name:<24}{row['median_s']:>10.2f}{row['target_s']:>10.0f}   "
              f"{'PASS' if row['ok'] else 'FAIL'}")  # fmt: skip
    report = {
        "what": "wall seconds of each milestones command in a fresh process (median of the repeats, after one untimed "
        "run)",
        "repeats": args.repeats,
        "commands": rows,
        "cpus": os.cpu_count(),
        "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    }
    write_report(report, args.json)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
