"""The campaign's processes: each job (or calibration) is one command in its own process group, pinned to its share
of the CPU cores, its output in its own log, started when a slot is free, the estimated memory of the jobs running
stays within the budget and it is expected to end inside the window. A job writes its result file itself, atomically,
when its last seed finishes (the harness's write_atomic), so a campaign cut short keeps every finished result; run
again, it skips the jobs whose result is there (``finished``) and starts the others afresh.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.core.results import find_results, read_result

GRACE_S = 30  # after a SIGTERM, how long a job may take to stop before it is killed


@dataclass
class Work:
    name: str
    command: list[str]
    seconds: float  # estimated; the window test uses it
    memory_mb: float = 0.0
    rc: int | None = None
    wall_s: float | None = None


class Log:
    """campaign.log: one timestamped line per event, also printed."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a", buffering=1)

    def __call__(self, line: str) -> None:
        stamped = f"{datetime.now(timezone.utc):%H:%M:%S} {line}"
        print(stamped, flush=True)
        self.file.write(stamped + "\n")


def core_sets(slots: int, cores: list[int] | None = None) -> list[tuple[int, ...]]:
    """The CPU cores this process may use, cut into ``slots`` equal runs (what is left over goes unused)."""
    cores = sorted(cores if cores is not None else os.sched_getaffinity(0))
    if slots > len(cores):
        raise ValueError(f"{slots} processes at once need at least {slots} CPU cores; {len(cores)} are available")
    share = len(cores) // slots
    return [tuple(cores[i * share : (i + 1) * share]) for i in range(slots)]


def finished(results_dir: Path, entry: str, task: str, precision: str, seeds: list[int], smoke: bool) -> Path | None:
    """A result file of this job already written (its seeds, precision and kind), or None."""
    for path in find_results(results_dir):
        if path.parent.name != entry or path.parent.parent.name != task:
            continue
        result = read_result(path)
        if (result.precision == precision and sorted(s.seed for s in result.seeds) == sorted(seeds)
                and result.smoke == smoke):  # fmt: skip
            return path
    return None


def run_all(works: list[Work], cores: list[tuple[int, ...]], logs: Path, log: Log, window_s: float | None = None,
            memory_mb: float = float("inf"), limit_s: float | None = None,
            environment: dict[str, str] | None = None,
            on_end: Callable[[Work], None] | None = None) -> list[Work]:  # fmt: skip
    """Run ``works`` in their order, ``len(cores)`` at a time. Returns them with their exit status (None: never
    started). ``limit_s``: a process running longer is killed (calibrations); ``on_end`` is called as each ends."""
    started = time.monotonic()
    pending, running = list(works), {}
    free = list(range(len(cores)))
    logs.mkdir(parents=True, exist_ok=True)

    def stop_all(signum, _frame):
        for proc in running:
            os.killpg(proc.pid, signal.SIGTERM)  # the harness writes no result and says where it stopped
        deadline = time.monotonic() + GRACE_S
        for proc in running:  # a harness stops at the end of a step; one still busy after the grace is killed
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log(f"campaign cut short (signal {signum}); finished results are kept; run it again to resume")
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, stop_all) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while pending or running:
            now = time.monotonic() - started
            for work in list(pending):
                if not free:
                    break
                if window_s is not None and now + work.seconds > window_s:
                    pending.remove(work)
                    log(f"{work.name}: not started: ~{work.seconds / 60:.1f} min would end after the window")
                    continue
                if sum(w.memory_mb for w, _, _ in running.values()) + work.memory_mb > memory_mb:
                    continue  # waits for memory; a later, smaller job may start first
                pending.remove(work)
                slot = free.pop(0)
                running[launch(work, cores[slot], logs, environment)] = (work, slot, time.monotonic())
                guess = f", estimated {work.seconds / 60:.1f} min" if work.seconds else ""
                log(f"{work.name}: started on cores {cores[slot][0]}-{cores[slot][-1]}{guess}; output: "
                    f"{logs / (work.name + '.log')}")  # fmt: skip
            for proc, (work, slot, since) in list(running.items()):
                if proc.poll() is None and limit_s is not None and time.monotonic() - since > limit_s:
                    os.killpg(proc.pid, signal.SIGKILL)
                    log(f"{work.name}: killed after {limit_s:.0f} s (its limit)")
                    proc.wait()
                if proc.poll() is not None:
                    work.rc, work.wall_s = proc.returncode, time.monotonic() - since
                    del running[proc]
                    free.append(slot)
                    log(f"{work.name}: exit {work.rc} after {work.wall_s:.0f} s")
                    if on_end is not None:
                        on_end(work)
            time.sleep(0.2)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return works


def launch(work: Work, cores: tuple[int, ...], logs: Path, environment: dict[str, str] | None) -> subprocess.Popen:
    env = dict(os.environ if environment is None else environment, OMP_NUM_THREADS=str(len(cores)),
               PYTHONUNBUFFERED="1")  # fmt: skip
    out = open(logs / f"{work.name}.log", "w")
    return subprocess.Popen(work.command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                            preexec_fn=pin(cores))  # fmt: skip


def pin(cores: tuple[int, ...]) -> Callable[[], None]:
    """Run in the child before it starts: it and every thread it makes stay on ``cores``."""
    return lambda: os.sched_setaffinity(0, cores)
