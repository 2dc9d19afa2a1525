"""Does checking and ranking results cost time in proportion to their number? ``validate`` and ``leaderboard`` timed on
synthetic result trees of 1,000 and 10,000 files.

The files are made from the committed results (leaderboards/results/): each copy is one of them, round-robin, with
its own ``created`` time (so its own file name), every seed's test metric moved by a few parts in a million and its
eval time by a millisecond per copy (so no two copies hold the same per-seed records), and its aggregate re-derived;
a seed's artifacts are linked (or copied) beside it. The config, the dataset checksums and the commit stay the real
ones, so every copy passes ``milestones validate`` as the committed files do. Each tree goes to a temporary folder;
then, in a fresh process per step, the leaderboard is built from it (``leaderboard.build``: tables, CSV, plots) and
the tree is validated (``validate.validate``: every check, and the rebuild check against that leaderboard). Each
step's time is of the call itself, the imports apart (they are the same for any number of files).

Targets: the 10x tree takes at most 12x the time of each step, and the 10,000 files validate and build their
leaderboard in under 2 minutes together.

Run: make perf-scaling   (or: python -m benchmarks.perf.scaling --sizes 1000,10000 --json report.json)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from benchmarks.core import paths
from benchmarks.perf import write_report

TARGET_RATIO = 12.0  # 10x the files: at most 12x the time
TARGET_LARGEST_S = 120.0  # validate + leaderboard of 10,000 files
STEPS = ("leaderboard", "validate")


def sources(results_dir: Path = paths.RESULTS_DIR) -> list[tuple[Path, dict]]:
    """The committed result files, parsed as plain JSON (they are read and validated by the timed steps)."""
    from benchmarks.core.results import find_results

    found = [(path, json.loads(path.read_text(encoding="utf-8"))) for path in find_results(results_dir)]
    if not found:
        raise SystemExit(f"no result files under {results_dir} to make copies of")
    return found


def variant(raw: dict, k: int) -> dict:
    """Copy ``k`` of a result: ``k`` + 1 seconds later, each ok seed's metric scaled by 1 + k·10⁻⁶ (within the
    metric's range), eval times + k ms, and the aggregate, time to target and throughput re-derived."""
    import statistics

    from benchmarks.core.results import Result, aggregate, result_filename
    from benchmarks.tasks import get_task

    data = json.loads(json.dumps(raw))
    created = datetime.fromisoformat(data["created"]) + timedelta(seconds=k + 1)
    data["created"] = created.isoformat()
    metric = get_task(data["task"]).metric
    for seed in data["seeds"]:
        seed["eval_time_s"] += k * 1e-3
        value = seed["metrics"].get(data["metric"])
        if seed["status"] == "ok" and value is not None:
            moved = value * (1 + k * 1e-6)
            seed["metrics"][data["metric"]] = moved if metric.valid(moved) else value
    ok = [s for s in data["seeds"] if s["status"] == "ok"]
    values = [s["metrics"][data["metric"]] for s in ok if data["metric"] in s["metrics"]]
    agg = aggregate(values)
    data["aggregate"] = agg.model_dump(mode="json") if agg else None
    reached = [s["time_to_target_s"] for s in ok if s["time_to_target_s"] is not None]
    data["time_to_target_s"] = statistics.median(reached) if reached else None
    speeds = [s["samples_per_s"] for s in ok if s["samples_per_s"]]
    data["samples_per_s"] = statistics.fmean(speeds) if speeds else None
    data["_name"] = result_filename(Result.model_validate(data))
    return data


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def make_tree(results_dir: Path, count: int, committed: list[tuple[Path, dict]] | None = None) -> list[Path]:
    """``count`` valid result files under ``results_dir``/<task>/<entry>/, made from the committed ones."""
    committed = committed or sources()
    written = []
    for k in range(count):
        source, raw = committed[k % len(committed)]
        data = variant(raw, k // len(committed))
        name = data.pop("_name")
        path = results_dir / data["task"] / data["entry"] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        for seed in data["seeds"]:
            for artifact in seed.get("artifacts", []):
                link_or_copy(source.with_suffix("") / f"seed-{seed['seed']}" / artifact,
                             path.with_suffix("") / f"seed-{seed['seed']}" / artifact)  # fmt: skip
        written.append(path)
    return written


def run_step(step: str, results_dir: Path, board_dir: Path) -> dict:
    """One step in this process: its imports, then the timed call."""
    started = time.perf_counter()
    if step == "leaderboard":
        from benchmarks.judging.leaderboard import build

        imported = time.perf_counter()
        build(results_dir, board_dir)
        problems: list[str] = []
    else:
        from benchmarks.judging.validate import validate

        imported = time.perf_counter()
        problems, _ = validate(None, results_dir, board_dir)
    done = time.perf_counter()
    return {"import_s": imported - started, "seconds": done - imported, "problems": problems[:5],
            "problem_count": len(problems)}  # fmt: skip


def run_child(step: str, results_dir: Path, board_dir: Path) -> dict:
    """``run_step`` in a fresh Python process (nothing cached from an earlier step or size)."""
    command = [sys.executable, "-m", "benchmarks.perf.scaling", "--child", step, str(results_dir), str(board_dir)]
    started = time.perf_counter()
    out = subprocess.run(command, cwd=paths.REPO_ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"{step} on {results_dir} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1]) | {"process_s": wall}


def measure(sizes: list[int], keep: Path | None = None, in_process: bool = False) -> dict:
    committed = sources()
    rows = []
    with tempfile.TemporaryDirectory(prefix="milestones-scaling-") as tmp:
        for size in sizes:
            root = (keep or Path(tmp)) / f"{size}"
            shutil.rmtree(root, ignore_errors=True)
            started = time.perf_counter()
            make_tree(root / "results", size, committed)
            made = time.perf_counter() - started
            row = {"files": size, "generate_s": made}
            for step in STEPS:
                if in_process:  # a quick check of the script (the tests): the steps share this process's imports
                    row[step] = run_step(step, root / "results", root / "board")
                else:
                    row[step] = run_child(step, root / "results", root / "board")
                if row[step]["problem_count"]:
                    print(f"{step} of {size} synthetic files found {row[step]['problem_count']} problem(s), e.g. "
                          f"{row[step]['problems'][:2]}", flush=True)  # fmt: skip
            rows.append(row)
            print(f"{size} files: made in {made:.1f}s; "
                  + "; ".join(f"{step} {row[step]['seconds']:.2f}s (+{row[step]['import_s']:.1f}s imports)"
                              for step in STEPS), flush=True)  # fmt: skip
    return {"rows": rows}


def table(rows: list[dict]) -> tuple[str, dict]:
    """The printed table (files, seconds, ratio to the previous size, per file ratio) and the verdicts."""
    lines = [f"{'step':<13}{'files':>8}{'seconds':>10}{'imports s':>11}{'ratio':>8}{'files ratio':>13}"]
    verdicts = {}
    for step in (*STEPS, "total"):
        previous = None
        for row in rows:
            seconds = sum(row[s]["seconds"] for s in STEPS) if step == "total" else row[step]["seconds"]
            imports = sum(row[s]["import_s"] for s in STEPS) if step == "total" else row[step]["import_s"]
            ratio = seconds / previous[1] if previous else None
            files_ratio = row["files"] / previous[0] if previous else None
            lines.append(f"{step:<13}{row['files']:>8}{seconds:>10.2f}{imports:>11.2f}"
                         f"{'' if ratio is None else f'{ratio:.2f}':>8}"
                         f"{'' if files_ratio is None else f'{files_ratio:.0f}':>13}")  # fmt: skip
            if ratio is not None and step != "total":
                bound = TARGET_RATIO * files_ratio / 10
                verdicts[f"{step} {previous[0]}->{row['files']}: ratio {ratio:.2f} <= {bound:g}"] = ratio <= bound
            previous = (row["files"], seconds)
    for row in rows:
        count = row["validate"]["problem_count"]
        verdicts[f"{row['files']} files: validate finds {count} problems in the tree and its leaderboard"] = not count
    largest = rows[-1]
    total = sum(largest[s]["seconds"] + largest[s]["import_s"] for s in STEPS)
    if largest["files"] >= 10_000:
        verdicts[f"{largest['files']} files: validate + leaderboard {total:.1f}s < {TARGET_LARGEST_S:g}s"] = (
            total < TARGET_LARGEST_S
        )
    return "\n".join(lines), verdicts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf.scaling", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated numbers of files (default 1000,10000)")
    parser.add_argument("--keep", type=Path, help="make the trees in this folder and keep them (default: a temporary)")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument("--in-process", action="store_true", help="run the steps in this process (a quick check)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # step, results folder, leaderboard folder
    args = parser.parse_args(argv)
    if args.child:
        step, results_dir, board_dir = args.child
        print(json.dumps(run_step(step, Path(results_dir), Path(board_dir))))
        return {}
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or min(sizes) < 1:
        raise SystemExit("--sizes takes counts of at least 1, e.g. 1000,10000")
    where = "in this process" if args.in_process else "each step in a fresh process"
    print(f"validate and leaderboard on {', '.join(map(str, sizes))} synthetic result files, {where}", flush=True)
    report = measure(sizes, args.keep, args.in_process)
    text, verdicts = table(report["rows"])
    print("\n" + text)
    for claim, ok in verdicts.items():
        print(f"{'PASS' if ok else 'FAIL'}  {claim}")
    report |= {
        "what": "seconds of leaderboard.build and validate.validate (imports apart) on synthetic result trees made "
        "from the committed results, each in a fresh process",
        "targets": {"ratio_per_10x": TARGET_RATIO, "largest_s": TARGET_LARGEST_S},
        "verdicts": verdicts,
        "cpus": os.cpu_count(),
        "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    }
    write_report(report, args.json)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
