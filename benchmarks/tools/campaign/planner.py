"""Packing the campaign's jobs into its time window: pure arithmetic on measured estimates, nothing run here.

Jobs are taken in order of value. Each goes to the earliest moment a process slot is free and the GPU memory of the
jobs then running, plus its own, stays within the budget; a job that would end after the window is left out (with
the reason), and the next, perhaps shorter, one is tried. Greedy, not optimal: value order comes first.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Estimate:
    name: str
    seconds: float  # the whole job: process start, every seed, every epoch, the test
    memory_mb: float  # its peak device memory, measured


@dataclass(frozen=True)
class Placement:
    name: str
    slot: int
    start: float
    end: float
    memory_mb: float


@dataclass
class Plan:
    placed: list[Placement]
    left_out: list[tuple[str, str]]  # (job, why)

    @property
    def seconds(self) -> float:
        return max((p.end for p in self.placed), default=0.0)


def memory_in_use(placed: list[Placement], start: float, end: float) -> float:
    """The most memory the ``placed`` jobs hold at any moment of [start, end)."""
    moments = [start] + [p.start for p in placed if start < p.start < end]
    return max(sum(p.memory_mb for p in placed if p.start <= t < p.end) for t in moments)


def pack(estimates: list[Estimate], slots: int, window_s: float, memory_mb: float) -> Plan:
    if slots < 1:
        raise ValueError(f"slots must be at least 1, got {slots}")
    free = [0.0] * slots  # when each slot's last job ends
    plan = Plan([], [])
    for job in estimates:
        if job.memory_mb > memory_mb:
            plan.left_out.append((job.name, f"needs {job.memory_mb:,.0f} MB, the budget is {memory_mb:,.0f} MB"))
            continue
        ends = sorted({0.0} | {p.end for p in plan.placed})  # memory or a slot frees only when a job ends
        for start in (t for t in ends if min(free) <= t):
            end = start + job.seconds
            if end > window_s:  # every later start ends later still
                plan.left_out.append((job.name, f"~{job.seconds / 60:.1f} min from minute {start / 60:.1f} would "
                                      f"end after the {window_s / 60:.0f}-minute window"))  # fmt: skip
                break
            if memory_in_use(plan.placed, start, end) + job.memory_mb <= memory_mb:
                slot = min(i for i, t in enumerate(free) if t <= start)
                plan.placed.append(Placement(job.name, slot, start, end, job.memory_mb))
                free[slot] = end
                break
        else:  # every start inside the window was short of memory
            plan.left_out.append((job.name, f"never {job.memory_mb:,.0f} MB free within the window"))
    return plan
