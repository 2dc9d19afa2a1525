"""Environment steps per second of an agent trained by the harness against a bare PyTorch loop of the same agent in
the same environment, in the same run.

The harness row is ``milestones bench <entry> --seeds 0 --max-epochs E`` (W&B off, one torch thread): its
``samples_per_s`` counts environment steps over training time (the evaluation episodes after each epoch excluded).
The bare row is a plain loop over the same objects without Lightning: the task's data module gathers each batch with
the entry's model (``collect``), the model's own ``training_step`` gives the loss, and its own optimiser steps; no
validation, no checkpoint, no logging. Both start from the same seed; since evaluation draws from its own generators,
the two end with the same weights when the harness adds nothing to what the agent computes (``same_weights``).

Run: make perf-env   (ARGS='--entry dqn-cartpole --epochs 2')   writes leaderboards/perf/environment-steps-cpu.json
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch

from benchmarks.core.environment import cpu_model
from benchmarks.core.results import find_results, read_result
from benchmarks.perf import write_report
from benchmarks.running.registry import get_entry
from benchmarks.tasks import get_task


def digest(state: dict) -> str:
    hashed = hashlib.sha256()
    for key in sorted(state):
        hashed.update(key.encode() + state[key].detach().cpu().contiguous().numpy().tobytes())
    return hashed.hexdigest()[:16]


def harness(entry: str, epochs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="milestones-env-steps-") as folder:
        command = [str(Path(sys.executable).parent / "milestones"), "bench", entry, "--seeds", "0", "--max-epochs",
                   str(epochs), "--threads", "1", "--wandb", "off", "--progress", "none", "--offline",
                   "--output-dir", folder, "--results-dir", f"{folder}/results"]  # fmt: skip
        started = time.perf_counter()
        out = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if out.returncode:
            raise SystemExit(
                f"the harness run failed (exit {out.returncode}):\n{out.stdout[-2000:]}{out.stderr[-2000:]}"
            )
        seed = read_result(find_results(Path(folder) / "results")[0]).seeds[0]
        (last,) = Path(folder).rglob("last.ckpt")
        weights = torch.load(last, weights_only=True)["state_dict"]
    return {"steps_per_s": round(seed.samples_per_s, 1), "train_time_s": round(seed.train_time_s, 2),
            "wall_s": round(wall, 2), "weights": digest(weights)}  # fmt: skip


def bare(entry_name: str, epochs: int) -> dict:
    """The same agent and environment in a plain loop: gather a batch, take the model's loss, step its optimiser."""
    torch.set_num_threads(1)
    entry = get_entry(entry_name)
    (task_name,) = entry.config.tasks[:1]
    task = get_task(task_name)
    L.seed_everything(0, workers=True, verbose=False)  # as the harness seeds a run
    model = entry.build_model(task)
    datamodule = task.make_datamodule(None, entry.config.data.batch_size, seed=0, **entry.config.data.init_args)
    optimizer = model.configure_optimizers()
    batches = datamodule.steps_per_epoch // datamodule.batch_size
    steps = 0
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a Trainer: nothing to log to
        for _ in range(epochs):
            for index in range(batches):
                batch, units = datamodule.collect(model)
                steps += units
                loss = model.training_step(batch, index)
                if loss is not None:
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
    seconds = time.perf_counter() - started
    return {"steps_per_s": round(steps / seconds, 1), "train_time_s": round(seconds, 2),
            "weights": digest(model.state_dict())}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf.environment_steps",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("--entry", default="dqn-cartpole")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", help="report path (default: leaderboards/perf/environment-steps-cpu.json)")
    args = parser.parse_args(argv)
    rows = {"harness": harness(args.entry, args.epochs), "bare": bare(args.entry, args.epochs)}
    for name, row in rows.items():
        print(f"{name:8s} {row['steps_per_s']:>10,.0f} environment steps/s  ({row['train_time_s']:.1f} s training)")
    ratio = rows["harness"]["steps_per_s"] / rows["bare"]["steps_per_s"]
    same = rows["harness"]["weights"] == rows["bare"]["weights"]
    print(f"harness / bare: {ratio:.3f}; the same final weights: {same}")
    report = {"entry": args.entry, "epochs": args.epochs, "machine": cpu_model(), "torch_threads": 1, **rows,
              "harness_over_bare": round(ratio, 3), "same_weights": same, "command": "make perf-env"}  # fmt: skip
    out = (
        Path(args.out)
        if args.out
        else Path(__file__).resolve().parents[2] / "leaderboards/perf/environment-steps-cpu.json"
    )
    write_report(report, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
