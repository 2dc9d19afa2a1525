"""``make demo``: the early milestones on data that needs no download, then the leaderboard they produce.

McCulloch-Pitts on the logic-gates truth tables, then every entry that runs on the bundled `digits` task (1,797 real
8×8 scans shipped inside scikit-learn), each with its full recipe and one seed (seed 0) unless
--seeds says otherwise, so the whole demo takes about a minute on a laptop CPU. Results go to the output folder
(runs/demo/results), never into the committed leaderboard.
"""

from __future__ import annotations

import time
from dataclasses import replace

from benchmarks import paths
from benchmarks.harness import BenchOptions, run_benchmark
from benchmarks.leaderboard import render_markdown
from benchmarks.registry import all_entries

DEMO_TASKS = ("logic-gates", "digits")


def demo_plan() -> list[tuple[str, str]]:
    """(entry, task) pairs, oldest paper first."""
    entries = sorted(all_entries().values(), key=lambda e: (e.config.paper.year, e.name))
    return [(e.name, task) for e in entries for task in DEMO_TASKS if task in e.config.tasks]


def run_demo(opts: BenchOptions) -> str:
    results_dir = opts.results_dir or str(paths.output_dir(opts.output_dir) / "demo" / "results")
    seeds = opts.seeds if opts.seeds is not None else [0]
    started = time.perf_counter()
    for entry, task in demo_plan():
        run_benchmark(entry, replace(opts, task=task, seeds=seeds, results_dir=results_dir))
    table = render_markdown(results_dir)
    print("\n" + table)
    print(f"demo finished in {time.perf_counter() - started:.0f} s; results in {results_dir}")
    return table
