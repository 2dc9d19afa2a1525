"""benchmarks/running/lightning_speedups.py removes costs, never behaviour: a run with and without it trains the same
weights, logs the same values, calls the same hooks in the same order and writes the same checkpoint keys."""

from __future__ import annotations

import csv
import functools

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import signature_utils
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.running import lightning_speedups
from benchmarks.running.lightning_speedups import NoProfiler


class Probe(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
        self.fx_names: list[str] = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        self.fx_names.append(self._current_fx_name)
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/batch", float(batch_idx), on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


class HookRecorder(L.Callback):
    """Records the hooks it overrides, with the module's current hook name at the time."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def _record(self, name, pl_module):
        self.calls.append((name, pl_module._current_fx_name))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._record("on_train_batch_start", pl_module)

    def on_before_backward(self, trainer, pl_module, loss):
        self._record("on_before_backward", pl_module)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self._record("on_before_optimizer_step", pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._record("on_train_batch_end", pl_module)

    def on_validation_end(self, trainer, pl_module):
        self._record("on_validation_end", pl_module)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self._record("on_save_checkpoint", pl_module)


def train(folder, speedups: bool):
    lightning_speedups.install(speedups)
    try:
        torch.manual_seed(0)
        x, y = torch.randn(96, 8), torch.randint(0, 3, (96,))
        train_data = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
        val_data = DataLoader(TensorDataset(x[:16], y[:16]), batch_size=8)
        model, recorder = Probe(), HookRecorder()
        trainer = L.Trainer(
            accelerator="cpu", max_epochs=2, deterministic=True, log_every_n_steps=3, enable_progress_bar=False,
            enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=folder,
            logger=CSVLogger(folder, name="csv"), profiler=NoProfiler() if speedups else None,
            callbacks=[recorder, ModelCheckpoint(dirpath=folder / "ckpt", monitor="val/loss", filename="best"),
                       ModelCheckpoint(dirpath=folder / "ckpt", filename="last", save_on_train_epoch_end=True)],
        )  # fmt: skip
        trainer.fit(model, train_dataloaders=train_data, val_dataloaders=val_data)
    finally:
        lightning_speedups.install(False)
    with open(next((folder / "csv").rglob("metrics.csv"))) as f:
        logged = list(csv.DictReader(f))
    checkpoint = torch.load(folder / "ckpt" / "last.ckpt", weights_only=True)
    return model, recorder.calls, logged, checkpoint, dict(trainer.callback_metrics)


def test_a_run_with_the_speedups_is_the_same_run(tmp_path):
    plain = train(tmp_path / "plain", speedups=False)
    fast = train(tmp_path / "fast", speedups=True)
    for a, b in zip(plain[0].parameters(), fast[0].parameters(), strict=True):
        assert torch.equal(a, b)  # the same weights, bit for bit
    assert plain[0].fx_names == fast[0].fx_names == ["training_step"] * 24
    assert plain[1] == fast[1] and len(plain[1]) > 50  # the same hooks, in order, with the same current hook name
    assert plain[2] == fast[2]  # the same CSV log, row for row
    assert plain[3].keys() == fast[3].keys()
    assert plain[3]["callbacks"].keys() == fast[3]["callbacks"].keys()  # ModelCheckpoint's state keys
    for key in plain[3]["state_dict"]:
        assert torch.equal(plain[3]["state_dict"][key], fast[3]["state_dict"][key])
    assert plain[4].keys() == fast[4].keys()
    assert all(torch.equal(plain[4][k], fast[4][k]) for k in plain[4])


def test_the_speedups_are_put_back_and_lean_hooks_need_the_lightning_they_were_read_from():
    from lightning.pytorch.trainer import call

    original = call._call_callback_hooks
    assert lightning_speedups.install(True), (
        f"Lightning {L.__version__} is not {lightning_speedups.LIGHTNING}, which lean_hook_calls was copied from: "
        "compare lightning/pytorch/trainer/call.py's three functions with the copies, then update LIGHTNING"
    )
    assert call._call_callback_hooks is not original
    lightning_speedups.install(False)
    assert call._call_callback_hooks is original


def test_a_metric_is_still_moved_or_cast_when_it_has_to_be():
    from lightning.pytorch.trainer.connectors.logger_connector.result import _Metadata, _ResultMetric

    lightning_speedups.skip_needless_metric_moves(True)
    try:
        metric = _ResultMetric(_Metadata(fx="training_step", name="loss"), is_tensor=True)
        metric.update(torch.tensor(2.0), 4)
        assert metric.to(torch.device("cpu")) is metric and metric.value.device.type == "cpu"
        metric.to(torch.float64)  # a cast takes Lightning's own path
        assert metric.value.dtype == torch.float64
    finally:
        lightning_speedups.skip_needless_metric_moves(False)


def decorated(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


class Steps:
    def two(self, batch, batch_idx): ...

    def one(self, batch): ...

    def star(self, *args): ...

    def iterator(self, dataloader_iter): ...

    @decorated
    def wrapped(self, batch, batch_idx, dataloader_idx=0): ...


QUESTIONS = [("batch_idx", False, 2), ("dataloader_iter", True, None), ("dataloader_idx", False, None)]  # Lightning's


@pytest.mark.parametrize("method", ["two", "one", "star", "iterator", "wrapped"])
@pytest.mark.parametrize(("param", "explicit", "min_args"), QUESTIONS)
def test_a_remembered_signature_answers_as_inspect_does(method, param, explicit, min_args):
    hook = getattr(Steps(), method)
    expected = signature_utils.is_param_in_hook_signature(hook, param, explicit, min_args)
    assert lightning_speedups._remembered(hook, param, explicit, min_args) is expected
    assert lightning_speedups._remembered(getattr(Steps(), method), param, explicit, min_args) is expected  # cached
