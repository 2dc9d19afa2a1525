"""``make demo``: the early milestones on data that needs no download, then the leaderboard they produce.

McCulloch-Pitts on the logic-gates truth tables, then every entry that runs on the bundled `digits` task (1,797 real
8×8 scans shipped inside scikit-learn), each with its full recipe and one seed (seed 0) unless
--seeds says otherwise, so the whole demo takes about a minute on a laptop CPU. Results go to the output folder
(runs/demo/results), never into the committed leaderboard; their leaderboard, with the plots it links, to
runs/demo/leaderboard. The console gets a readable table, with a note on each row whose number needs one.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.core import paths
from benchmarks.judging.leaderboard import build, collect, load_results
from benchmarks.running.harness import BenchOptions, run_benchmark
from benchmarks.running.registry import all_entries
from benchmarks.tasks import all_tasks

DEMO_TASKS = ("logic-gates", "digits")

# Rows that would look broken without a word: why their number is what it is on the demo's small data.
DEMO_NOTES = {
    ("mlp", "digits"): "its MNIST recipe unchanged: 30 passes over 1,200 scans are ~1,100 weight changes, too few for "
    "logistic units with squared error (on MNIST, ~52,000 changes: 3.1 %)",
}


def demo_plan() -> list[tuple[str, str]]:
    """(entry, task) pairs, oldest paper first."""
    entries = sorted(all_entries().values(), key=lambda e: (e.config.paper.year, e.name))
    return [(e.name, task) for e in entries for task in DEMO_TASKS if task in e.config.tasks]


def run_demo(opts: BenchOptions) -> str:
    """Run the plan, write a leaderboard (README.md and its plots) beside the results, print a readable table."""
    demo_dir = paths.output_dir(opts.output_dir) / "demo"
    results_dir = opts.results_dir or str(demo_dir / "results")
    seeds = opts.seeds if opts.seeds is not None else [0]
    started = time.perf_counter()
    for entry, task in demo_plan():
        run_benchmark(entry, replace(opts, task=task, seeds=seeds, results_dir=results_dir))
    board = Path(results_dir).parent / "leaderboard"
    build(results_dir, board)  # README.md with the plots it links (plots/<task>.png)
    table = render_tables(results_dir)
    print(f"demo finished in {time.perf_counter() - started:.0f} s; results in {results_dir}; leaderboard with plots: "
          f"{board / 'README.md'}")  # fmt: skip
    return table


def render_tables(results_dir) -> str:
    """Each task's ranked rows as a console table, printed and returned as text."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200 if not sys.stdout.isatty() else None, record=True)
    ranked, _ = collect(load_results(results_dir))
    for task, rows in ranked.items():
        split = getattr(all_tasks().get(task), "reported_split", "test")  # as the leaderboard's text names it
        table = Table(title=f"{task}: {split} {rows[0]['metric']}", title_justify="left")
        for column in ("#", "entry", "year", "division", f"{rows[0]['metric']} (n)", "reference", "budget", "note"):
            table.add_column(column)
        for rank, r in enumerate(rows, 1):
            value = "—" if r["mean"] is None else f"{r['mean']:.2f} ({r['n']})"
            reference = "—" if r["paper_value"] is None else f"{r['paper_value']:g} ({r['paper_kind']})"
            note = DEMO_NOTES.get((r["entry"], task), "")
            table.add_row(str(rank), r["entry"], str(r["year"]), r["division"], value, reference, r["budget"], note)
        console.print(table)
    return console.export_text()
