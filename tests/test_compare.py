"""`milestones compare`: committed results side by side, environment drift, and the W&B runs the files name."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from benchmarks.core import paths
from benchmarks.judging.compare import compare, resolve_targets, wandb_lines
from benchmarks.running.harness import BenchError
from benchmarks.tasks import UnknownNameError

MNIST = paths.RESULTS_DIR / "mnist"


def test_entries_expand_to_their_results_and_sit_side_by_side():
    out = compare(["lenet5-modern", "mlp"], task="mnist")
    lines = out.splitlines()
    columns = len(list((MNIST / "lenet5-modern").glob("*.json"))) + 1
    assert lines[0].split() == [f"[{i}]" for i in range(1, columns + 1)]
    row = next(line for line in lines if line.startswith("entry / task"))
    assert "lenet5-modern / mnist" in row and row.rstrip().endswith("mlp / mnist")
    p_row = next(line for line in lines if line.startswith("p (better than 1st)")).split()
    assert p_row[4] == "reference" and float(p_row[-1]) > 0.99  # the MLP is not better than LeNet-5 (modern)
    assert all(f"[{i}] differs from this machine" in out for i in range(1, columns + 1))


def test_a_result_file_and_an_entry_mix():
    (mlp_file,) = (MNIST / "mlp").glob("*.json")
    chosen = resolve_targets([str(mlp_file), "perceptron"], task="mnist")
    assert [r.entry for _, r in chosen] == ["mlp", "perceptron"]


def test_unknown_entries_and_missing_results_are_clear_errors():
    with pytest.raises(UnknownNameError, match="did you mean"):
        compare(["lenet"])
    with pytest.raises(BenchError, match="no result files on task digits"):
        compare(["mlp"], task="digits")


class FakeApi:
    """Stands in for wandb.Api: knows one run, raises like the real one for the others."""

    def __init__(self, known: str) -> None:
        self.known, self.asked = known, []

    def run(self, path: str):
        self.asked.append(path)
        if path != self.known:
            raise ValueError(f"Could not find run {path}")
        return SimpleNamespace(
            summary={"test/error": 3.05, "epoch": 19}, state="finished", url=f"https://wandb.ai/{path}"
        )


def test_wandb_runs_are_looked_up_by_the_ids_result_files_carry():
    chosen = resolve_targets(["mlp"], task="mnist")
    run_ids = [s.wandb_run for s in chosen[0][1].seeds]
    api = FakeApi(run_ids[0])
    lines = wandb_lines(chosen, api)
    assert api.asked == run_ids
    assert f"seed 0: {run_ids[0]} (finished) test/error 3.05 https://wandb.ai/{run_ids[0]}" in lines[0]
    assert "not found on W&B" in lines[1] and "wandb sync" in lines[1]


def test_wandb_needs_online_mode(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(BenchError, match="needs W&B online"):
        compare(["mlp"], task="mnist", use_wandb=True)
