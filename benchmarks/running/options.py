"""How one ``milestones bench`` runs: ``BenchOptions``, the single place an option and its default are declared.

Its own module, importing neither torch nor Lightning: ``milestones bench --help`` (and ``demo --help``) build their
flags from these fields (``cli.add_options``) without waiting for the harness to load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal


def option(default=None, help: str = "", *, flag: str | None = None, bench_only: bool = False, default_factory=None):
    """A field of ``BenchOptions`` with its command-line help: ``milestones bench`` (and ``demo``, unless
    ``bench_only``) get ``--<name>`` from it (``cli.add_options``); ``flag`` names a flag that differs from the field
    (``--offline`` sets ``download=False``). A ``default_factory`` is read when the command line is built."""
    metadata = {"help": help, "flag": flag, "bench_only": bench_only, "cli": True}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class BenchOptions:
    """How one `milestones bench` runs: the single place an option and its default are declared. Each field with a
    ``help`` is a flag of ``milestones bench`` (cli.add_options derives name, type, choices and default from it)."""

    task: str | None = option(help="run on this task instead of the entry's default (see `milestones list`)")
    seeds: list[int] | None = option(help="comma-separated seeds (default: the entry's count, from 0)")
    precision: str = option(
        "auto", "auto (bf16-mixed/16-mixed on GPU, 32-true on CPU) or any Lightning precision string"
    )
    accelerator: Literal["auto", "cpu", "gpu"] = option("auto", "auto: a GPU where there is one, else the CPU")
    devices: int | str = option(1, "devices per node: a count, -1 or auto (all), or GPU indices such as 0,1")
    num_nodes: int = option(1, "nodes (machines) the run spans; each starts the same command (torchrun, srun)")
    strategy: Literal["auto", "ddp", "ddp_find_unused_parameters_true", "fsdp"] = option(
        "auto", "Lightning's distributed strategy (auto: DDP when more than one process; fsdp: GPUs only)"
    )
    data_dir: str | None = option(help="data folder (default: $MILESTONES_DATA or a per-user cache folder)")
    output_dir: str | None = option(help="checkpoints, logs, W&B runs (default: $MILESTONES_OUTPUT or runs/)")
    results_dir: str | None = option(  # smoke runs: <output>/smoke-results
        help="where the result file goes (default: leaderboards/results)"
    )
    wandb: Literal["auto", "online", "offline", "off"] = option(
        "auto", "auto = online with credentials, offline otherwise"
    )
    wandb_project: str = option(default_factory=lambda: os.environ.get("WANDB_PROJECT", "dl-milestones"),
                                help="W&B project (default: $WANDB_PROJECT or dl-milestones)")  # fmt: skip
    max_epochs: int | None = option(help="override the budget (a smoke run: never on the leaderboard)", bench_only=True)
    fast_dev_run: bool = option(False, "one batch of each kind (a smoke run)", bench_only=True)
    limit_train_batches: int | float | None = option(
        help="train on this many batches per epoch (a smoke run)", bench_only=True
    )
    resume: bool = option(False, "continue an interrupted run from its last checkpoint", bench_only=True)
    part: bool = option(False, "one part of a benchmark whose seeds run as separate jobs: its result goes to "
                        "<output>/parts/ (or --results-dir) for `milestones join`", bench_only=True)  # fmt: skip
    deterministic: bool = option(True, "allow non-deterministic (faster) kernels; recorded in the result",
                                 flag="--no-deterministic")  # fmt: skip
    threads: int | None = option(help="torch CPU threads (default: torch's choice); recorded in the result")
    download: bool = option(True, "never download: use the data folder or fail", flag="--offline")
    progress: Literal["auto", "rich", "plain", "none"] = option(
        "auto", "auto: rich on a terminal, plain lines otherwise"
    )
    example_data: bool = option(False, "the task's tiny generated example instead of its data: no download (a smoke "
                                "run)", bench_only=True)  # fmt: skip
    callbacks: list = field(default_factory=list)  # extra callbacks (tests, tools): not on the command line

    @property
    def smoke(self) -> bool:
        return (self.fast_dev_run or self.max_epochs is not None or self.limit_train_batches is not None
                or self.example_data)  # fmt: skip
