"""Shared fixtures. Unit tests make their own tiny data; real-data tests need MILESTONES_DATA (CI points it at
../shared/data) and skip with a reason where that folder is absent."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from benchmarks.running.harness import BenchOptions

warnings.filterwarnings("ignore", ".*(does not have many workers|smaller than the logging interval).*")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test writes its runs under its own tmp folder and never talks to a W&B server."""
    monkeypatch.setenv("MILESTONES_OUTPUT", str(tmp_path / "runs"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture
def real_data_dir() -> Path:
    value = os.environ.get("MILESTONES_DATA")
    if not value or not (Path(value) / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("real-data test: set MILESTONES_DATA to a folder holding MNIST/raw (CI uses ../shared/data)")
    return Path(value)


@pytest.fixture
def quick(tmp_path):
    """Options for a fast, offline, smoke-marked CPU run whose result goes to a tmp results folder."""

    def make(**overrides) -> BenchOptions:
        options = dict(
            seeds=[0], accelerator="cpu", wandb="off", progress="none", max_epochs=1,
            output_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "results"),
        )  # fmt: skip
        options.update(overrides)
        return BenchOptions(**options)

    return make


@pytest.fixture
def leaderboard_of():
    """leaderboard_of(result, path, folder): the leaderboard of one smoke result as if it were a full run."""
    return _leaderboard_of


def _leaderboard_of(result, path: Path, folder: Path) -> str:
    import shutil

    from benchmarks.judging.leaderboard import render_markdown

    board = folder / result.task / result.entry / path.name
    board.parent.mkdir(parents=True)
    board.write_text(result.model_copy(update={"smoke": False}).model_dump_json())
    if path.with_suffix("").exists():
        shutil.copytree(path.with_suffix(""), board.with_suffix(""))
    return render_markdown(folder)
