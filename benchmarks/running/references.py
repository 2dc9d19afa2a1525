"""Reference numbers the suite computes itself, on a task's own split, when no paper gives the right one.

A leaderboard's reference column says what a row should be read against. Where the only published number is for
another method (e.g. "a linear classifier, 12.0 %" for an LMS-trained Adaline that cannot reach it), the honest
reference is the one the method is known to approach, computed here on exactly the data the entries see:

- ``least-squares``: the linear least-squares classifier — ten one-vs-rest linear units with a bias, inputs mapped to
  the ±1 switch levels, targets ±1, fitted in closed form (the minimum-norm solution, numpy's SVD ``lstsq``) on the
  task's training split, read out by the largest output. It is the Wiener solution that the LMS rule converges to
  (Widrow & Hoff 1960), so an Adaline row should come close to it (it minimises the squared error, not the error
  rate, so a pass on the way can test slightly below it).

``milestones reference <name> --task <task>`` writes ``leaderboards/references/<task>/<name>.json`` (value, details,
dataset checksums, commit, versions). An entry config quotes it as ``reported: {kind: suite, reference: <name>, ...}``
and the registry refuses a quote that differs from the committed record.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks.core import paths
from benchmarks.core.environment import code_identity, environment
from benchmarks.core.results import write_atomic

REFERENCES_DIR = paths.LEADERBOARD_DIR / "references"


class ReferenceError(ValueError):
    """A missing or mismatching reference record; the message names the file and says what to run."""


def _switch_levels(images) -> np.ndarray:
    """(N, ...) uint8 → (N, D+1) float64 in [−1, +1] with a constant +1 bias input, as the Adaline sees them."""
    x = images.reshape(len(images), -1).numpy().astype(np.float64) / 255.0 * 2 - 1
    return np.hstack([x, np.ones((len(x), 1))])


def least_squares(splits: dict, num_classes: int) -> dict:
    """Test error (%) of the closed-form least-squares one-vs-rest linear classifier, fitted on the training split."""
    (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
    inputs = _switch_levels(train_x)  # (N, D+1)
    targets = -np.ones((len(train_y), num_classes))
    targets[np.arange(len(train_y)), train_y.numpy()] = 1.0  # (N, C) desired responses ±1
    weights, _, rank, _ = np.linalg.lstsq(inputs, targets, rcond=None)  # (D+1, C)

    def error(x, y) -> float:
        return float(100.0 * np.mean((_switch_levels(x) @ weights).argmax(1) != y.numpy()))

    return {
        "value": error(test_x, test_y),
        "details": {
            "train_error": error(train_x, train_y),
            "val_error": error(*splits["val"]),
            "train_mse": float(np.mean((inputs @ weights - targets) ** 2)),
            "rank": int(rank),
            "inputs": int(inputs.shape[1]),
            "train_images": len(train_y),
        },
    }


COMPUTATIONS: dict[str, tuple[Callable[[dict, int], dict], str]] = {
    "least-squares": (least_squares, "closed-form linear least squares, ±1 targets, one-vs-rest (test error %)"),
}


def reference_path(task: str, name: str) -> Path:
    return REFERENCES_DIR / task / f"{name}.json"


def read_reference(task: str, name: str) -> dict:
    path = reference_path(task, name)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ReferenceError(f"{path}: no readable reference record ({error.__class__.__name__}); make it with "
                             f"`milestones reference {name} --task {task}` and commit it") from None  # fmt: skip


def check_quote(task: str, name: str, value: float, source: Path) -> None:
    """An entry's ``reported.value`` must be the committed record's value (to the 2 decimals a config quotes)."""
    if name not in COMPUTATIONS:
        raise ReferenceError(f"{source}: reported.reference '{name}' is not one of {sorted(COMPUTATIONS)}")
    record = read_reference(task, name)
    if round(record["value"], 2) != round(value, 2):
        raise ReferenceError(f"{source}: reported.value {value:g} ≠ {record['value']:.4f} in "
                             f"{reference_path(task, name)} (quote the record, rounded to 2 decimals)")  # fmt: skip


def compute_reference(name: str, task_name: str, data_dir=None, download: bool = True) -> Path:
    """Compute one reference on one task's split and write its record; returns the file."""
    from benchmarks.tasks import get_task, unknown

    if name not in COMPUTATIONS:
        raise unknown("reference", name, list(COMPUTATIONS))
    task = get_task(task_name)
    function, description = COMPUTATIONS[name]
    datamodule = task.make_datamodule(paths.data_dir(data_dir), 1, seed=0, download=download)
    datamodule.prepare_data()
    datamodule.setup("fit")
    computed = function(datamodule.splits, task.model_inputs["num_classes"])
    record = {
        "reference": name,
        "task": task.name,
        "metric": task.metric.name,
        "description": description,
        "value": computed["value"],
        "details": computed["details"],
        "dataset": datamodule.identity(),
        "code": code_identity(),
        "environment": environment("cpu"),
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    }
    return write_atomic(json.dumps(record, indent=2) + "\n", reference_path(task.name, name), overwrite=True)
