"""Progress a person can read: epochs counted from 1, a seed's ETA after each epoch and the run's after each seed, and
a line at a steady interval inside a long epoch, so a log (no terminal) never goes silent for minutes."""

from __future__ import annotations

import re

from benchmarks.running.callbacks import EpochProgressBar, PlainProgress, format_duration
from benchmarks.running.harness import run_benchmark


def test_plain_progress_counts_epochs_from_one_and_gives_the_seed_and_run_eta(quick, capsys):
    run_benchmark("lenet5-modern", quick(task="digits", seeds=[0, 1], max_epochs=2, progress="plain"))
    out = capsys.readouterr().out
    assert "lenet5-modern seed 0 epoch 1/2" in out and "lenet5-modern seed 0 epoch 2/2" in out
    assert "epoch 0/" not in out
    assert re.search(r"seed 0 epoch 1/2 .* seed ETA \d+ s", out), out
    assert re.search(r"lenet5-modern: seed 0 done; seeds \[1\] left, about \d+ s", out), out
    assert "seeds [] left" not in out  # nothing said after the last seed


def test_a_long_epoch_prints_a_line_at_a_steady_interval(quick, capsys):
    progress = PlainProgress("lenet5-modern seed 0", "val/error", every_s=0.0)  # every batch here
    run_benchmark("lenet5-modern", quick(task="digits", progress="none", callbacks=[progress]))
    lines = [line for line in capsys.readouterr().out.splitlines() if " batch " in line]
    assert len(lines) >= 2 and re.fullmatch(r"lenet5-modern seed 0 epoch 1/1  batch 1/\d+  \d+s", lines[0]), lines


def test_the_live_bar_counts_epochs_from_one():
    class Trainer:
        max_epochs = 12

    bar = EpochProgressBar()
    bar._trainer = Trainer()
    assert bar._get_train_description(0).strip() == "Epoch 1/12"
    assert bar._get_train_description(11).strip() == "Epoch 12/12"


def test_durations_read_naturally():
    assert [format_duration(s) for s in (5, 89, 600, 5399, 7200)] == ["5 s", "89 s", "10 min", "90 min", "2.0 h"]
