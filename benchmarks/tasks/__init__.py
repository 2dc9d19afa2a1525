"""The task registry: every module in this package contributes its ``TASKS`` list.

Importing the package imports nothing heavy: ``Task`` and ``Metric`` (base.py, which needs Lightning) load on first
use, and ``task_summaries`` answers ``milestones tasks`` from a cache while the code is unchanged.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import os
import pkgutil
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmarks.tasks.base import Metric, Task

__all__ = ["Metric", "Task", "all_tasks", "get_task", "task_summaries", "UnknownNameError"]


def __getattr__(name: str):
    if name in ("Metric", "Task"):
        from benchmarks.tasks import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class UnknownNameError(KeyError):
    """An unknown entry or task name; the message lists close matches."""

    def __str__(self) -> str:
        return str(self.args[0])


def unknown(kind: str, name: str, known: list[str]) -> UnknownNameError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(known))}"
    return UnknownNameError(f"unknown {kind} '{name}'; {hint}")


def all_tasks() -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    for module in _task_modules():
        for task in getattr(module, "TASKS", []):  # read each time: a test may replace a module's TASKS
            tasks[task.name] = task
    return tasks


@cache
def _task_modules() -> tuple:
    """The modules of this package, listed and imported once per process (a validate asks for tasks per file)."""
    return tuple(importlib.import_module(f"{__name__}.{module.name}") for module in pkgutil.iter_modules(__path__))


def get_task(name: str) -> Task:
    tasks = all_tasks()
    if name not in tasks:
        raise unknown("task", name, list(tasks))
    return tasks[name]


def summary(task: Task) -> dict:
    """What ``milestones tasks`` shows of a task, as plain JSON values."""
    return {
        "name": task.name,
        "description": task.description,
        "metric": task.metric.name,
        "direction": task.metric.direction,
        "target": task.target,
        "min_seeds": task.min_seeds,
        "protocol": task.protocol,
        "interface": [task.interface.name, list(task.interface.methods)],
        "optional_interfaces": [[i.name, list(i.methods)] for i in task.optional_interfaces],
    }


def code_fingerprint() -> str:
    """A sha256 over the source of benchmarks/ (every .py file, and every file of this package: class lists,
    manifests) and the Python version: what a task's declaration could depend on. A few milliseconds."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(sys.version.encode())
    files = {*root.rglob("*.py"), *(p for p in Path(__file__).parent.rglob("*") if p.is_file())}
    for path in sorted(p for p in files if "__pycache__" not in p.parts):
        digest.update(f"\0{path.relative_to(root)}\0".encode() + path.read_bytes())
    return digest.hexdigest()


def task_summaries() -> list[dict]:
    """``summary`` of every task, by name. Building them imports every task module (torch, Lightning, the data
    modules: seconds), so they are kept in the cache folder (``paths.cache_dir()``) under the fingerprint of the code
    (``code_fingerprint``): any edit of benchmarks/ builds them again, and an unwritable cache only costs the time."""
    from benchmarks.core import paths

    cached = paths.cache_dir() / "listing" / f"tasks-{code_fingerprint()[:32]}.json"
    try:
        return json.loads(cached.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    summaries = [summary(task) for task in sorted(all_tasks().values(), key=lambda task: task.name)]
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(summaries, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, cached)  # whole or not at all: a reader never sees half a file
    except OSError:
        pass
    return summaries
