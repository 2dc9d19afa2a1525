"""Kill points for the fault model's tests (tests/test_faults.py): where a run can be killed, by name.

``MILESTONES_KILL_AT=<phase>[:<n>]`` makes the process SIGKILL itself the n-th time (default 1st) it reaches ``phase``,
exactly as ``kill -9`` would at that moment: no handler runs, no file is closed. The tests use it to kill a run in each
phase and check that ``--resume`` then ends with the metrics of an uninterrupted run. Unset, as it always is outside the
tests, ``reached`` does nothing.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

PHASES = {
    "training": "after a training batch (mid-epoch)",
    "checkpoint-write": "halfway through writing a checkpoint's bytes",
    "evaluation": "after a test batch, before the test metrics exist",
    "artifact-copy": "after the first artifact is copied beside the result",
    "result-write": "halfway through writing the result file",
    "cache-build": "after the first chunk of a derived-data cache is written",
}
_counts: Counter[str] = Counter()


def armed() -> bool:
    """Whether MILESTONES_KILL_AT names a kill point in this process (the harness adds its per-step ones only then)."""
    return bool(os.environ.get("MILESTONES_KILL_AT"))


def reached(phase: str) -> None:
    """SIGKILL this process if MILESTONES_KILL_AT names ``phase`` and this is its n-th arrival there."""
    if phase not in PHASES:
        raise ValueError(f"unknown kill point {phase!r}; known: {', '.join(PHASES)}")
    wanted = os.environ.get("MILESTONES_KILL_AT")
    if not wanted:
        return
    name, _, nth = wanted.partition(":")
    if name != phase:
        return
    _counts[phase] += 1
    if _counts[phase] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
