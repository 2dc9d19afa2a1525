"""``milestones feature-net <task>``: train a fixed classifier that scores generated samples.

Each classifier is a registered entry (``FEATURE_NETS``: ``lenet5-modern`` on mnist and fashion-mnist, which scores
generated images; ``m5`` on fsdd-digits, which hears generated spoken digits), trained by the harness itself (seed 0,
deterministic, CPU) on the classification task, and its best-validation weights are exported to
``benchmarks/featurenets/<task>-<entry>.pt`` (with the model's class path, its hyperparameters and its weights) and a
JSON file saying how they were made. The weights are committed; their sha256 is written into the code that uses them
(``benchmarks/tasks/generative.py``, ``benchmarks/tasks/heard_digits.py``) so that every result records, and every
run checks, exactly which classifier scored it. Rebuilding changes the scale of every score made with it: results
made with another classifier are not comparable, which is why the checksum is in the result.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import torch

from benchmarks.core import paths
from benchmarks.core.checksums import sha256_file
from benchmarks.core.results import write_atomic
from benchmarks.running.harness import BenchOptions, run_benchmark
from benchmarks.running.registry import get_entry
from benchmarks.scoring.sample_metrics import FEATURE_NET_DIR, FEATURE_NETS

TASKS = tuple(FEATURE_NETS)
# where each task's checksum goes: the code that loads its classifier
USED_BY = {"mnist": "benchmarks/tasks/generative.py", "fashion-mnist": "benchmarks/tasks/generative.py",
           "fsdd-digits": "benchmarks/tasks/heard_digits.py",
           "imagenette-224re": "benchmarks/tasks/style.py (EVAL_NET)"}  # fmt: skip


def export_feature_net(
    task: str, *, data_dir=None, output_dir=None, threads: int | None = 1, out_dir=None, precision: str = "32-true"
) -> Path:
    if task not in TASKS:
        raise ValueError(f"feature nets exist for {', '.join(TASKS)}, not '{task}'")
    opts = BenchOptions(
        task=task, seeds=[0], accelerator="cpu", wandb="off", data_dir=data_dir, output_dir=output_dir,
        results_dir=str(paths.output_dir(output_dir) / "feature-net-results"), threads=threads, precision=precision,
    )  # fmt: skip
    entry = FEATURE_NETS[task]
    result, _ = run_benchmark(entry, opts)
    seed = result.seeds[0]
    if seed.status != "ok":
        raise RuntimeError(f"the classifier run failed: {seed.failure}")
    best = sorted((seed.run_dir(paths.output_dir(output_dir)) / "checkpoints").glob("best-*.ckpt"))[-1]
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    hparams = dict(checkpoint["hyper_parameters"])
    class_path = get_entry(entry).config.model.class_path
    path = Path(out_dir or FEATURE_NET_DIR) / f"{task}-{entry}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"class_path": class_path, "hparams": hparams, "state_dict": checkpoint["state_dict"]}, path)
    provenance = {
        "file": path.name,
        "sha256": sha256_file(path),
        "entry": entry,
        "class_path": class_path,
        "task": task,
        "seed": 0,
        "selected_epoch": seed.selected_epoch,
        "test_error": seed.metrics.get("error"),
        "train_time_s": seed.train_time_s,
        "config_hash": result.config_hash,
        "code": result.code,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "precision": result.precision,
        "command": f"milestones feature-net {task}"
        + (f" --threads {threads}" if threads != 1 else "")
        + (f" --precision {precision}" if precision != "32-true" else ""),
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    }
    write_atomic(json.dumps(provenance, indent=2) + "\n", path.with_suffix(".json"), overwrite=True)
    print(f"{path}: sha256 {provenance['sha256']} (test error {provenance['test_error']:.2f} %)")
    print(f"put this checksum in {USED_BY[task]}; results scored with another classifier differ")
    return path
