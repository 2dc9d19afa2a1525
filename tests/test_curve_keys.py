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
