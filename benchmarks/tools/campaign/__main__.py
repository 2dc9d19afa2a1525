"""make gpu-campaign: on one lent GPU, full-protocol rows for as many of the campaign's jobs as fit in the window.

1. checks the carry (.gpu-data: the data the jobs read, checksummed, and the wheels) and sets aside the jobs it
   cannot serve, and those whose result is already written (a resumed campaign);
2. calibrates every other job on this machine: a short run of each, ``--parallel`` at a time as the campaign runs
   them, each pinned to its share of the cores (kept in <output>/calibration.json and reused on this device);
3. plans from those measurements (planner.pack) and prints what runs, in what order, on which cores, with estimated
   times, and what does not fit; ``--plan`` stops here;
4. runs the plan, writing each job's result when its seeds finish, job logs and <output>/campaign.log.

``--dry-run``: the same on the CPU here, every job on its task's generated example at a toy budget (one epoch of two
batches, every seed), the carry checked as the GPU machine will check it.

    python -m benchmarks.tools.campaign [--plan | --dry-run] [--jobs gan,dcgan] [--window-min 10] [--parallel 4]
                                        [--pack $OUT/campaign.tgz]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

from benchmarks.core import paths
from benchmarks.core.results import write_atomic
from benchmarks.running.registry import get_entry
from benchmarks.tools.campaign import bundle, carry, planner
from benchmarks.tools.campaign.jobs import Job, select
from benchmarks.tools.campaign.runner import Log, Work, core_sets, finished, run_all

TOY = {"max_epochs": 1, "batches": 2}  # the dry run's budget: enough to go through every phase of a run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tools.campaign", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--plan", action="store_true", help="calibrate, print the plan, run nothing")
    mode.add_argument("--dry-run", action="store_true", help="the whole campaign on this CPU at toy budgets")
    parser.add_argument("--jobs", help="comma-separated jobs (entry or entry@task; default: all, in value order)")
    parser.add_argument("--window-min", type=float, help="minutes from the campaign's start to its end, calibration "
                        "included (default 9, under 10 with the wheel install; 60 for the dry run)")  # fmt: skip
    parser.add_argument("--parallel", type=int, help="jobs at once on the one device (default: 4, or fewer where "
                        "fewer CPU cores are free)")  # fmt: skip
    parser.add_argument("--accelerator", choices=["gpu", "cpu"], help="default: gpu; cpu for --dry-run")
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--calibration-batches", type=int, help="training batches of a calibration (20; 2 dry)")
    parser.add_argument("--calibration-limit-s", type=float, help="a calibration running longer is killed and its "
                        "job reported as not calibrated (default 300; 900 for the dry run's CPU)")  # fmt: skip
    parser.add_argument("--recalibrate", action="store_true", help="measure again, not reuse calibration.json")
    parser.add_argument("--output", help="default: runs/gpu-campaign (runs/gpu-campaign-dry for --dry-run)")
    parser.add_argument("--results-dir", help="where job results go (default: <output>/results)")
    parser.add_argument("--data-dir", help="default: .gpu-data/data when built, else $MILESTONES_DATA")
    parser.add_argument("--pack", type=Path, help="also pack the results, logs and plan into this .tgz after each job "
                        "and at the end (on the device: $OUT/campaign.tgz, the one file that comes back)")  # fmt: skip
    return parser


def seeds_of(job: Job) -> list[int]:
    return list(range(get_entry(job.entry).config.seeds))


def bench_command(job: Job, args, threads: int, data: list[str]) -> list[str]:
    command = [sys.executable, "-m", "benchmarks.cli", "bench", job.entry, "--task", job.task, "--precision",
               args.precision, "--accelerator", args.accelerator, "--threads", str(threads), "--wandb", "off",
               "--offline", "--progress", "plain", "--output-dir", str(args.output / "runs"), "--results-dir",
               str(args.results_dir), *data]  # fmt: skip
    if args.dry_run:
        command += ["--max-epochs", str(TOY["max_epochs"]), "--limit-train-batches", str(TOY["batches"])]
    return command


def calibrate(jobs: list[Job], args, cores, data: list[str], log: Log) -> tuple[dict[str, dict], dict[str, str]]:
    """(name → measurement, name → why it has none); reuses the measurements kept for this device and settings."""
    store = args.output / "calibration.json"
    kept = json.loads(store.read_text()) if store.exists() and not args.recalibrate else {}
    key = (
        f"{args.accelerator}/{args.precision}/{args.calibration_batches}/{'example' if args.dry_run else 'data'}"
        "/saves"
    )  # (measurements from before checkpoint saves were timed are measured again)
    kept = {name: m for name, m in kept.items() if m.get("key") == key}
    todo = [job for job in jobs if job.name not in kept]
    works = []
    for job in todo:
        out = args.output / "calibration" / f"{job.name}.json"
        out.unlink(missing_ok=True)
        command = [sys.executable, "-m", "benchmarks.tools.campaign.calibrate", job.entry, job.task, "--batches",
                   str(args.calibration_batches), "--json", str(out), "--accelerator", args.accelerator,
                   "--precision", args.precision, "--threads", str(len(cores[0])), "--output-dir",
                   str(args.output / "calibration"), *data]  # fmt: skip
        works.append(Work(job.name, command, seconds=0.0))
    if works:
        log(f"calibrating {len(works)} job(s), {len(cores)} at a time, {args.calibration_batches} batches each")
    for work in run_all(works, cores, args.output / "calibration" / "logs", log, limit_s=args.calibration_limit_s):
        out = args.output / "calibration" / f"{work.name}.json"
        if work.rc == 0 and out.exists():
            measured = json.loads(out.read_text())
            measured["startup_s"] = max(0.0, work.wall_s - measured["seed_wall_s"])  # imports, data, the process
            kept[work.name] = measured | {"key": key}
        elif work.wall_s is not None and work.wall_s > args.calibration_limit_s:
            kept[work.name] = {"key": key, "failed": f"its calibration ran past {args.calibration_limit_s:.0f} s and "
                               "was killed (a step or its evaluation is that slow here)"}  # fmt: skip
        else:
            kept[work.name] = {"key": key, "failed": f"its calibration failed (exit {work.rc}): "
                               f"calibration/logs/{work.name}.log"}  # fmt: skip
    write_atomic(json.dumps(kept, indent=1), store, overwrite=True)
    failed = {name: m["failed"] for name, m in kept.items() if "failed" in m}  # kept too: --recalibrate retries
    return {name: m for name, m in kept.items() if "failed" not in m}, failed


def estimate(job: Job, m: dict, toy: bool) -> float:
    """Seconds of the whole job from its calibration: process start, then for every seed its training steps, its
    validations, a checkpoint save every epoch (last.ckpt) and after each validation (at most: the best's), and the
    rest of a seed (test, setup; it holds the calibration's own epoch's saves)."""
    trainer = get_entry(job.entry).config.trainer.recipe()
    epochs = TOY["max_epochs"] if toy else trainer.get("max_epochs", 1)
    batches = min(TOY["batches"], m["batches_per_epoch"] or TOY["batches"]) if toy else m["batches_per_epoch"]
    validations = max(1, epochs // (trainer.get("check_val_every_n_epoch") or 1))  # after epochs n, 2n, …
    saves = (epochs - 1) + (validations - 1)
    seed = epochs * batches * m["step_s"] + validations * m["validation_s"] + saves * m["checkpoint_s"]
    return m["startup_s"] + len(seeds_of(job)) * (seed + m["rest_of_seed_s"])


def print_plan(plan: planner.Plan, jobs: dict[str, Job], cores, measured: dict, args, label: str, left_s: float):
    devices = sorted({m["device"] for m in measured.values()})
    print(f"\nplan ({label}): {left_s / 60:.1f} of the {args.window_min:g}-minute window left; {len(cores)} at once, "
          f"on cores {', '.join(f'{c[0]}-{c[-1]}' for c in cores)}; measured on {', '.join(devices) or 'nothing'} "
          f"({args.accelerator}{', the CPU: not the GPU numbers' if args.accelerator == 'cpu' else ''})")  # fmt: skip
    header = (f"{'#':>2}  {'job':<34}{'cores':>7}{'start':>8}{'end':>8}{'step ms':>9}{'save s':>8}{'memory':>11}"
              "  budget")  # fmt: skip
    print(header + "\n" + "-" * len(header))
    for i, p in enumerate(sorted(plan.placed, key=lambda p: (p.start, p.slot)), 1):
        c, m = cores[p.slot], measured[p.name]
        print(f"{i:>2}  {p.name:<34}{f'{c[0]}-{c[-1]}':>7}{p.start / 60:>7.1f}m{p.end / 60:>7.1f}m"
              f"{m['step_s'] * 1e3:>9.1f}{m['checkpoint_s']:>8.2f}{m['memory_mb']:>8,.0f} MB  "
              f"{jobs[p.name].budget}")  # fmt: skip
    print(f"ends after ~{plan.seconds / 60:.1f} min (estimated)")
    for name, why in plan.left_out:
        print(f"    does not fit: {name}: {why}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()  # the window counts from here: calibration spends it too
    args.accelerator = args.accelerator or ("cpu" if args.dry_run else "gpu")
    args.output = Path(
        args.output or paths.REPO_ROOT / "runs" / ("gpu-campaign-dry" if args.dry_run else "gpu-campaign")
    )
    args.results_dir = Path(args.results_dir or args.output / "results")
    args.calibration_limit_s = args.calibration_limit_s or (900.0 if args.dry_run else 300.0)
    args.window_min = args.window_min or (60.0 if args.dry_run else 9.0)
    args.parallel = args.parallel or min(4, len(os.sched_getaffinity(0)))
    args.calibration_batches = args.calibration_batches or (TOY["batches"] if args.dry_run else 20)
    try:
        jobs = select(args.jobs)
        cores = core_sets(args.parallel)
    except ValueError as error:
        print(f"campaign: error: {error}", file=sys.stderr)
        return 2
    log = Log(args.output / "campaign.log")
    log(f"campaign: {'dry run' if args.dry_run else 'plan' if args.plan else 'run'} on {args.accelerator}, "
        f"{args.precision}, {len(jobs)} jobs, output {args.output}")  # fmt: skip
    if args.data_dir is None and (carry.CARRY / "data").is_dir():
        args.data_dir = str(carry.CARRY / "data")
    data = ["--example-data"] if args.dry_run else ["--data-dir", str(paths.data_dir(args.data_dir))]

    # 1. what the GPU machine cannot serve, and what is done already
    unserved = carry.problems(jobs)
    if importlib.util.find_spec("datasets") is None:
        for job in (j for j in jobs if j.needs_datasets):
            wheels = carry.CARRY / "wheels"
            unserved.setdefault(job.name, f"datasets is not installed: {sys.executable} -m pip install --no-index "
                                f"--find-links {wheels} -r {wheels}/requirements.txt")  # fmt: skip
    for job in jobs:
        log(f"carry: {job.name}: {unserved.get(job.name, 'served')}")
    if unserved and not args.dry_run:  # the dry run runs them all on examples: it tests the mechanics
        jobs = [job for job in jobs if job.name not in unserved]
    done = {}
    for job in jobs:
        found = finished(args.results_dir, job.entry, job.task, args.precision, seeds_of(job), smoke=args.dry_run)
        if found:
            done[job.name] = found
            log(f"{job.name}: done already ({found}): skipped")
    jobs = [job for job in jobs if job.name not in done]

    # 2. calibration, 3. the plan
    measured, failed = calibrate(jobs, args, cores, data, log)
    unknown_length = "its training loader has no length: the steps of an epoch cannot be estimated"
    uncalibrated = [(job.name, failed.get(job.name, unknown_length)) for job in jobs
                    if job.name not in measured or measured[job.name]["batches_per_epoch"] is None]  # fmt: skip
    jobs = [job for job in jobs if job.name not in dict(uncalibrated)]
    memory = device_memory_mb(args.accelerator) * 0.9  # a tenth for the CUDA contexts and fragmentation
    by_name = {job.name: job for job in jobs}
    label = "toy budgets" if args.dry_run else "full protocol"
    estimates = [planner.Estimate(job.name, estimate(job, measured[job.name], args.dry_run),
                                  measured[job.name]["memory_mb"]) for job in jobs]  # fmt: skip
    left_s = args.window_min * 60 - (time.monotonic() - started)
    plan = planner.pack(estimates, len(cores), left_s, memory)
    plan.left_out += [(name, why) for name, why in unserved.items() if not args.dry_run] + uncalibrated
    print_plan(plan, by_name, cores, measured, args, label, left_s)
    write_atomic(json.dumps({"placed": [p.__dict__ for p in plan.placed], "left_out": plan.left_out}, indent=1),
                 args.output / "plan.json", overwrite=True)  # fmt: skip
    if args.plan:
        if args.pack:
            bundle.pack(args.output, args.pack)
        return 0

    # 4. the run, in the plan's order
    order = sorted(plan.placed, key=lambda p: (p.start, p.slot))
    works = [Work(p.name, bench_command(by_name[p.name], args, len(cores[0]), data), p.end - p.start, p.memory_mb)
             for p in order]  # fmt: skip
    packed = (lambda _work=None: bundle.pack(args.output, args.pack)) if args.pack else (lambda _work=None: None)
    try:
        run_all(works, cores, args.output / "logs", log, window_s=left_s, memory_mb=memory, on_end=packed)
    finally:  # a campaign cut short (SIGTERM) still packs what it finished
        packed()
    failed = [w for w in works if w.rc not in (0, None)]
    for work in works:
        job = by_name[work.name]
        path = finished(args.results_dir, job.entry, job.task, args.precision, seeds_of(job), smoke=args.dry_run)
        state = f"result {path}" if path else "not started" if work.rc is None else f"exit {work.rc}, no result"
        log(f"summary: {work.name}: {state}")
    log(f"campaign: {len(works) - len(failed)} of {len(works)} planned jobs ended well, {len(done)} done before, "
        f"{len(plan.left_out)} left out")  # fmt: skip
    packed()  # with the summary in campaign.log
    return 1 if failed else 0


def device_memory_mb(accelerator: str) -> float:
    if accelerator == "gpu":
        import torch

        return torch.cuda.get_device_properties(0).total_memory / 2**20
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


if __name__ == "__main__":
    sys.exit(main())
