"""The task registry: every module in this package contributes its ``TASKS`` list."""

from __future__ import annotations

import difflib
import importlib
import pkgutil

from benchmarks.tasks.base import Metric, Task

__all__ = ["Metric", "Task", "all_tasks", "get_task", "UnknownNameError"]


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
    for module in pkgutil.iter_modules(__path__):
        for task in getattr(importlib.import_module(f"{__name__}.{module.name}"), "TASKS", []):
            tasks[task.name] = task
    return tasks


def get_task(name: str) -> Task:
    tasks = all_tasks()
    if name not in tasks:
        raise unknown("task", name, list(tasks))
    return tasks[name]
