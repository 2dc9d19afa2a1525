"""transformer-base: the paper's base model (Vaswani et al. 2017, Table 3) and its checkpoint averaging (§6.1). The
averaged weights are the mean of the last k checkpoints; through the harness they, not a selected checkpoint, are the
tested weights; an interrupted run, during training or after it, resumes to exactly the uninterrupted run's average."""

from __future__ import annotations

import gzip
import inspect
import math
import os
import random
from pathlib import Path

import lightning as L
import pytest
import torch

from benchmarks.running.harness import run_benchmark
from benchmarks.running.registry import TASK_FIXED, DataSpec, Entry, ModelSpec, TrainerSpec, get_entry
from benchmarks.tasks.base import Metric
from benchmarks.tasks.files import md5sum
from benchmarks.tasks.translation import EOS, PAD, TranslationData
from lightning_modules.transformer_base import CheckpointAverage, TransformerBase

# Table 3's "base" row and §5.3, §5.4, §6.1
PAPER_BASE = dict(
    n_layers=6, d_model=512, n_heads=8, d_ff=2048, dropout=0.1, label_smoothing=0.1, warmup_steps=4000, lr_factor=1.0,
    betas=(0.9, 0.98), eps=1e-9, beam_size=4, length_penalty=0.6, max_extra_length=50, average_last=5,
)  # fmt: skip
TINY = dict(n_layers=1, d_model=16, n_heads=2, d_ff=32, warmup_steps=4, max_extra_length=4)
BATCHES_AN_EPOCH = 21  # 25,000-token batches of real Multi30k (measured by the real-data test below)


def floats(model: L.LightningModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}


def mean_of(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: (sum(s[k].double() for s in states) / len(states)).float() for k in states[0]}


def assert_states_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


class Snapshots(L.Callback):
    """The model's floating-point weights after every optimizer step, and the weights ``trainer.test`` runs on."""

    def __init__(self) -> None:
        self.after_step: dict[int, dict[str, torch.Tensor]] = {}
        self.tested: dict[str, torch.Tensor] | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after_step[trainer.global_step] = floats(pl_module)

    def on_test_start(self, trainer, pl_module):
        self.tested = floats(pl_module)


# --- the paper's base model -------------------------------------------------------------------------------------------
def test_the_config_is_the_papers_base_model_with_averaging():
    entry = get_entry("transformer-base")
    task = entry.task()
    args = entry.model_args(task)
    assert {k: args[k] for k in PAPER_BASE} == PAPER_BASE
    signature = inspect.signature(TransformerBase.__init__).parameters.items()
    defaults = {k: p.default for k, p in signature if k in args and k != "vocab_size"}
    assert {k: args[k] for k in defaults} == defaults, "the config changes none of the paper's defaults"
    assert entry.config.division == "closed" and {d.kind for d in entry.config.deviations} <= set(TASK_FIXED)
    model = entry.build_model(task)
    assert model.tests_final_weights and model.hparams.average_every_steps == 1500
    assert sum(p.numel() for p in model.parameters()) == 48_234_496  # 65M in Table 3 with its ~37,000-token vocabulary
    (averaging,) = model.configure_callbacks()
    assert entry.config.data.init_args == {"max_tokens": 25_000}, "§5.1's batches of ~25,000 tokens a side"
    assert 50 * entry.config.data.batch_size >= 29_000, "the sorting pool covers the training set"
    steps = BATCHES_AN_EPOCH * entry.config.trainer.max_epochs
    assert steps == 100_002, "the paper's 100,000 steps (§5.2), in whole epochs"
    assert averaging.checkpoint_steps(steps) == [94_002, 95_502, 97_002, 98_502, 100_002]
    every = entry.config.trainer.check_val_every_n_epoch
    assert 1_400 <= every * BATCHES_AN_EPOCH <= 1_600, "validation about as often as an averaged checkpoint"
    assert entry.resolved_config(task)["trainer"]["check_val_every_n_epoch"] == every
    assert entry.resolved_config(task, max_epochs=3)["trainer"]["check_val_every_n_epoch"] == 3, "a smoke run validates"


def test_the_batches_hold_up_to_25000_padded_source_and_target_tokens():
    """§5.1: ~25,000 source and ~25,000 target tokens a batch, counted padded (real Multi30k; skipped without it)."""
    folder = Path(os.environ.get("MILESTONES_DATA", "/nonexistent")) / "multi30k"
    if not (folder / "train.de.gz").exists():
        pytest.skip("real-data test: set MILESTONES_DATA to a folder holding multi30k/")
    config = get_entry("transformer-base").config.data
    data = TranslationData(folder.parent, config.batch_size, seed=1, download=False, **config.init_args)
    data.prepare_data()
    data.setup()
    batches = list(data.train_dataloader())
    assert len(batches) == len(data.train_dataloader()) == BATCHES_AN_EPOCH
    assert sum(len(s) for s, _ in batches) == 29_000
    source, target = [s.numel() for s, _ in batches], [t[:, 1:].numel() for _, t in batches]  # padded, </s> in
    assert max(source) <= 25_000 and max(target) <= 25_000
    assert 23_000 < sum(source) / len(batches) < 25_000 and 23_000 < sum(target) / len(batches) < 25_000
    real = sum(int((t[:, 1:] != PAD).sum()) for _, t in batches) / len(batches)
    assert 20_500 < real < 22_000, "sorted by length, ~90% of the padded target tokens are real"


# --- averaging --------------------------------------------------------------------------------------------------------
def test_the_averaged_weights_are_the_mean_of_the_last_k_checkpoints():
    torch.manual_seed(0)
    model = TransformerBase(vocab_size=40, **TINY, average_last=3, average_every_steps=2)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 40, (4, 2, 6, 5), generator=generator)  # 4 batches of (source, target), 6 pairs of 5
    batches = [(s, torch.cat([torch.full((6, 1), 1), t, torch.full((6, 1), EOS)], 1)) for s, t in ids.unbind(0)]
    snapshots = Snapshots()
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[snapshots])  # fmt: skip
    trainer.fit(model, torch.utils.data.DataLoader(batches, batch_size=None))  # the batches as they are
    (averaging,) = [c for c in trainer.callbacks if isinstance(c, CheckpointAverage)]
    assert averaging.steps == averaging.taken == [8, 10, 12], "3 checkpoints, 2 steps apart, ending at the last"
    assert_states_equal(floats(model), mean_of([snapshots.after_step[s] for s in (8, 10, 12)]))
    assert not torch.equal(model.embedding.weight, snapshots.after_step[12]["embedding.weight"])


def test_a_run_shorter_than_the_averaging_window_averages_the_checkpoints_it_has():
    assert CheckpointAverage(5, 1500).checkpoint_steps(3000) == [1500, 3000]
    assert CheckpointAverage(5, 1500).checkpoint_steps(1) == [1]
    with pytest.raises(ValueError, match="at least 1"):
        CheckpointAverage(0, 1500)


# --- through the harness ----------------------------------------------------------------------------------------------
WORDS = {
    "de": "ein mann eine frau zwei hunde spielen im schnee auf der straße mit einem ball rot blau".split(),
    "en": "a man a woman two dogs play in the snow on the street with a ball red blue".split(),
}


@pytest.fixture
def tiny_multi30k(tmp_path, monkeypatch):
    """Word-for-word 'translations': 120 train, 10 val, 10 test 2016 pairs in the task's file layout."""
    folder = tmp_path / "data" / "multi30k"
    folder.mkdir(parents=True)
    rng = random.Random(0)
    for split, n in (("train", 120), ("val", 10), ("test_2016_flickr", 10)):
        rows = [[rng.randrange(len(WORDS["de"])) for _ in range(rng.randint(2, 6))] for _ in range(n)]
        for lang in ("de", "en"):
            with gzip.open(folder / f"{split}.{lang}.gz", "wb") as f:
                f.write(("\n".join(" ".join(WORDS[lang][i] for i in r) for r in rows) + "\n").encode())
    monkeypatch.setattr(TranslationData, "md5", {p.name: md5sum(p) for p in folder.iterdir()})
    monkeypatch.setattr(TranslationData, "optional", ())
    monkeypatch.setenv("MILESTONES_CACHE", str(tmp_path / "cache"))
    return folder.parent


def tiny_entry(every_steps: int, data: DataSpec | None = None, trainer: TrainerSpec | None = None) -> Entry:
    """transformer-base's entry with a tiny network, 40-pair batches (3 steps an epoch on tiny_multi30k) and
    validation every epoch, unless ``data`` and ``trainer`` say otherwise."""
    base = get_entry("transformer-base")
    model = ModelSpec(class_path=base.config.model.class_path, init_args=TINY | dict(average_every_steps=every_steps))
    data = data or DataSpec(batch_size=40)
    trainer = trainer or TrainerSpec(max_epochs=base.config.trainer.max_epochs)
    return Entry(base.config.model_copy(update={"model": model, "data": data, "trainer": trainer}), base.path)


def test_the_harness_tests_the_average_and_selects_no_checkpoint(quick, tiny_multi30k, tmp_path):
    snapshots = Snapshots()
    opts = quick(task="multi30k-de-en", data_dir=str(tiny_multi30k), max_epochs=3, callbacks=[snapshots])
    result, _ = run_benchmark(tiny_entry(every_steps=2), opts)
    seed = result.seeds[0]
    assert result.status == "ok" and seed.epochs == 3 and len(seed.val_history) == 3
    assert seed.selected_epoch is None, "nothing is selected by validation"
    assert_states_equal(snapshots.tested, mean_of([snapshots.after_step[s] for s in (1, 3, 5, 7, 9)]))
    assert not torch.equal(snapshots.tested["embedding.weight"], snapshots.after_step[9]["embedding.weight"])
    checkpoints = seed.run_dir(opts.output_dir) / "checkpoints"
    assert [p.name for p in checkpoints.glob("*.ckpt")] == ["last.ckpt"], "no best checkpoint"
    assert 0 <= seed.metrics["bleu"] <= 100 and math.isfinite(seed.metrics["loss"])


class ValidationLog(L.Callback):
    """The trainer's check_val_every_n_epoch, the epochs that validated, and the steps an epoch."""

    def __init__(self) -> None:
        self.every, self.validated, self.steps = None, [], []

    def on_train_start(self, trainer, pl_module):
        self.every = trainer.check_val_every_n_epoch

    def on_validation_end(self, trainer, pl_module):
        self.validated.append(trainer.current_epoch)

    def on_train_epoch_end(self, trainer, pl_module):
        self.steps.append(trainer.global_step)


def test_token_batches_and_validation_every_n_epochs_through_the_harness(quick, tiny_multi30k, monkeypatch):
    """data.init_args.max_tokens reaches the data module, trainer.check_val_every_n_epoch the Trainer; time-to-target
    and the validation history come from the epochs that validated; the averaged steps end at the run's last step."""
    monkeypatch.setattr(Metric, "reached", lambda self, value, target: True)  # any BLEU reaches the target
    entry = tiny_entry(
        every_steps=2,
        data=DataSpec(batch_size=40, init_args={"max_tokens": 120}),
        trainer=TrainerSpec(max_epochs=5, check_val_every_n_epoch=2),
    )
    log, snapshots = ValidationLog(), Snapshots()
    result, _ = run_benchmark(
        entry, quick(task="multi30k-de-en", data_dir=str(tiny_multi30k), max_epochs=5, callbacks=[log, snapshots])
    )
    seed = result.seeds[0]
    assert result.status == "ok" and log.every == 2 and log.validated == [1, 3]
    assert [row["epoch"] for row in seed.val_history] == [1, 3] and seed.epoch_to_target == 1
    assert seed.time_to_target_s == seed.val_history[0]["train_seconds"] > 0
    per_epoch = {b - a for a, b in zip([0, *log.steps], log.steps)}
    assert len(per_epoch) == 1 and per_epoch.pop() > 3, "a fixed number of token batches an epoch, more than 3"
    final = log.steps[-1]
    assert_states_equal(snapshots.tested, mean_of([snapshots.after_step[s] for s in range(final, 0, -2)[:5]]))
    assert result.config["trainer"]["check_val_every_n_epoch"] == 2
    assert result.config["data"]["init_args"] == {"max_tokens": 120}


class Interrupt(L.Callback):
    """Ctrl-C at the start of a training epoch, or when testing begins (training done, nothing recorded yet)."""

    def __init__(self, epoch: int | None = None) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt

    def on_test_start(self, trainer, pl_module):
        if self.epoch is None:
            raise KeyboardInterrupt


@pytest.mark.parametrize("epoch", [2, None], ids=["during-training", "before-testing"])
def test_an_interrupted_run_resumes_to_the_uninterrupted_average(quick, tiny_multi30k, tmp_path, epoch):
    entry = tiny_entry(every_steps=3)  # 4 epochs of 3 steps: checkpoints at steps 3, 6, 9, 12
    opts = dict(task="multi30k-de-en", data_dir=str(tiny_multi30k), max_epochs=4)
    reference_weights = Snapshots()
    reference, _ = run_benchmark(entry, quick(**opts, output_dir=str(tmp_path / "a"), callbacks=[reference_weights]))

    with pytest.raises(SystemExit):
        run_benchmark(entry, quick(**opts, output_dir=str(tmp_path / "b"), callbacks=[Interrupt(epoch)]))
    (last,) = (tmp_path / "b").rglob("last.ckpt")
    state = torch.load(last, weights_only=False)["callbacks"]
    (averaging,) = [v for k, v in state.items() if "CheckpointAverage" in k]
    assert averaging["taken"] == ([3, 6] if epoch == 2 else [3, 6, 9, 12]), "the running sum is in the checkpoint"

    resumed_weights = Snapshots()
    resumed, _ = run_benchmark(
        entry, quick(**opts, output_dir=str(tmp_path / "b"), resume=True, callbacks=[resumed_weights])
    )
    assert resumed.seeds[0].metrics == reference.seeds[0].metrics
    assert resumed.seeds[0].epochs == reference.seeds[0].epochs == 4
    for key, value in reference_weights.tested.items():
        assert torch.equal(resumed_weights.tested[key], value), key
