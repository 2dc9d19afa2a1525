"""A learning rule that makes no optimiser step (the perceptron's error correction) keeps its best and last
checkpoints like any other entry, and its test uses the best-validation weights its result names (before
``checkpoints.EpochCheckpoint``, Lightning skipped every save because ``global_step`` never moved: the test used the
final weights, and --resume started over)."""

from __future__ import annotations

import subprocess
import sys

from benchmarks.core.paths import REPO_ROOT
from benchmarks.core.results import find_results, read_result


def test_a_stepless_learning_rule_tests_the_checkpoint_of_the_epoch_its_result_names(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.cli", "bench", "perceptron", "--task", "digits", "--seeds",
                           "0", "--max-epochs", "3", "--example-data", "--wandb", "off", "--progress", "none",
                           "--output-dir", str(tmp_path), "--results-dir", str(tmp_path / "results")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = find_results(tmp_path / "results")
    seed = read_result(path).seeds[0]
    folder = seed.run_dir(tmp_path) / "checkpoints"
    assert (folder / f"best-epoch{seed.selected_epoch:03d}.ckpt").is_file(), sorted(folder.glob("*"))
    assert (folder / "last.ckpt").is_file()
