"""Training-curve recording (``Task.curve_keys``): the harness's meter adds the task's epoch-level ``train/*`` values
to each epoch's history row, after that epoch's validation, so a result file holds training beside validation error."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from benchmarks.running.callbacks import BenchmarkMeter


def fake_trainer(epoch: int, metrics: dict) -> SimpleNamespace:
    device = SimpleNamespace(type="cpu")
    return SimpleNamespace(sanity_checking=False, current_epoch=epoch, callback_metrics=metrics,
                           strategy=SimpleNamespace(root_device=device))  # fmt: skip


def epoch(meter: BenchmarkMeter, number: int, val: float, train: float | None, validate: bool = True) -> None:
    trainer = fake_trainer(number, {"val/error": torch.tensor(val)})
    if validate:
        meter.on_validation_start(trainer, None)
        meter.on_validation_end(trainer, None)
    if train is not None:
        trainer.callback_metrics["train/error"] = torch.tensor(train)
    meter.on_train_epoch_end(trainer, None)


def test_meter_records_the_task_curve_keys_in_the_epoch_row():
    meter = BenchmarkMeter("val/error", lambda v: v <= 1.0, curve_keys=("train/error", "train/absent"))
    epoch(meter, 0, 50.0, 60.0)
    epoch(meter, 1, 40.0, float("nan"))  # not finite: recorded as null, as validation values are
    epoch(meter, 2, 30.0, 20.0, validate=False)  # no validation this epoch: no row to add to, nothing recorded
    rows = [{k: v for k, v in row.items() if k != "train_seconds"} for row in meter.history]
    assert rows == [{"epoch": 0, "val/error": 50.0, "train/error": 60.0}, {"epoch": 1, "val/error": 40.0,
                                                                         "train/error": None}]  # fmt: skip
    assert meter.state_dict()["history"] == meter.history  # checkpointed with the rest: a resumed run keeps them


def test_meter_without_curve_keys_records_only_validation():
    meter = BenchmarkMeter("val/error", lambda v: v <= 1.0)
    epoch(meter, 0, 50.0, 60.0)
    assert set(meter.history[0]) == {"epoch", "val/error", "train_seconds"}


def test_a_task_with_curve_keys_plots_training_dashed_beside_validation_against_iterations():
    """imagenette-32's leaderboard plot is He et al.'s Fig. 6: per row, the validation error (solid, the seeds' mean)
    and the training error (dashed, same colour) at x = (epoch + 1) × iterations per epoch."""
    from types import SimpleNamespace

    from benchmarks.judging import curves
    from benchmarks.tasks import all_tasks

    task = all_tasks()["imagenette-32"]
    history = [[(50.0, 60.0), (40.0, 45.0)], [(54.0, 62.0), (44.0, 47.0)]]  # per seed, per epoch: (val, train)
    seeds = [SimpleNamespace(val_history=[{"epoch": e, "val/error": v, "train/error": t} for e, (v, t) in
                                          enumerate(rows)]) for rows in history]  # fmt: skip
    result = SimpleNamespace(seeds=seeds, config={"trainer": {"max_epochs": 2}, "data": {"batch_size": 128}})
    per_epoch = -(-(9_469 - 500) // 128)  # 71 iterations of batch 128
    assert curves.curve_points(result, task) == ([per_epoch, 2 * per_epoch], [52.0, 42.0], [50.0, 40.0], [54.0, 44.0])
    assert curves.curve_points(result, task, "train/error")[1] == [61.0, 46.0]
    row = {"entry": "resnet20", "precision": "32-true", "n": 2, "provisional": False, "file": "r.json",
           "paper_value": 8.75, "paper_task": "cifar10", "paper_metric": None}  # fmt: skip
    ax = curves.curve_figure("imagenette-32", [row], {"r.json": result}, task).axes[0]
    solid, dashed = ax.get_lines()[:2]
    assert list(solid.get_ydata()) == [52.0, 42.0] and list(dashed.get_ydata()) == [61.0, 46.0]
    assert dashed.get_linestyle() == "--" and dashed.get_color() == solid.get_color()
    assert "iterations" in ax.get_xlabel() and "training (dashed)" in ax.get_ylabel()
    assert 8.75 not in [float(line.get_ydata()[0]) for line in ax.get_lines()]  # a CIFAR-10 number: not drawn here
    assert task.budget(result.config) == f"2 epochs ({2 * per_epoch} iterations)"
