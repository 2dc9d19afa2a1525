"""A fingerprint of the machine and software a run used, and of the code (git commit, dirty tree)."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

import torch

from benchmarks.core.paths import REPO_ROOT

# Every package that can move a number: the training (torch, torchvision, lightning, numpy), the data (pillow decodes
# the JPEGs, datasets reads the text, tokenizers trains the BPE, scikit-learn ships the digits), the scoring
# (torchmetrics, sacrebleu, scipy: the Student-t intervals), jsonargparse (builds the model from its config) and the
# environments and games of the interactive tasks (gymnasium, ale-py with its ROMs, open_spiel's rules).
# verify and compare report a difference in any of them (DRIFT_FIELDS). pydantic (the result schema) and wandb
# (logging) cannot move a number: recorded, not compared. constraints.txt pins them all for `make setup`.
NUMERIC_PACKAGES = ("torch", "torchvision", "lightning", "torchmetrics", "numpy", "scipy", "scikit-learn", "pillow",
                    "sacrebleu", "tokenizers", "datasets", "jsonargparse",
                    "gymnasium", "ale-py", "open_spiel")  # fmt: skip
PACKAGES = (*NUMERIC_PACKAGES, "pydantic", "wandb")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(accelerator: str) -> dict:
    cuda = accelerator == "gpu" and torch.cuda.is_available()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    return {
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "accelerator": "gpu" if cuda else "cpu",
        "device": gpus[0] if gpus else cpu_model(),
        "device_count": len(gpus) if gpus else (os.cpu_count() or 1),
        "torch_threads": torch.get_num_threads(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "malloc_tunables": os.environ.get("GLIBC_TUNABLES"),  # the Makefile keeps freed memory (see README, Speed)
    }


def hardware_label(env: dict, world_size: int = 1) -> str:
    """Short label for tables: 'NVIDIA H100 80GB HBM3 ×1' or 'CPU: AMD EPYC 7B13 (2 cores)'; a run of several
    processes (DDP) says how many: 'NVIDIA H100 ×8, 32 processes', 'CPU: … (2 cores), 2 processes'."""
    processes = f", {world_size} processes" if world_size > 1 else ""
    if env["accelerator"] == "gpu":
        return f"{env['device']} ×{env['device_count']}{processes}"
    threads = env.get("torch_threads") if world_size == 1 else None  # a process's own: the result's ranks record them
    suffix = f", {threads} torch thread{'s' if threads != 1 else ''}" if threads else ""
    return f"CPU: {env['device']} ({env['device_count']} cores{suffix}){processes}"


def git(*args: str, input: str | None = None) -> str | None:
    """Run git in the repository (``input`` on its stdin); its stdout, or None when git is missing or the command
    fails."""
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, input=input)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_identity() -> dict:
    """The git commit and whether tracked files differed from it (untracked result files do not count)."""
    if os.environ.get("MILESTONES_GIT_COMMIT"):
        # a copied checkout whose .git is absent or stale (the lent GPU machine): the commit is vouched for by whoever
        # copied it, and whether the copy was clean cannot be checked here, so git_dirty stays unknown
        return {"git_commit": os.environ["MILESTONES_GIT_COMMIT"], "git_dirty": None, "commit_from": "environment"}
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


UNRECORDED = object()  # a package an older result did not record (not the same as None: recorded as not installed)


def _package(name: str):
    return lambda env: env.get("packages", {}).get(name, UNRECORDED)


# What can move a number when it differs between the machine that made a result and the one re-running it.
DRIFT_FIELDS = {
    "python": lambda env: env.get("python"),
    **{name: _package(name) for name in NUMERIC_PACKAGES},
    "accelerator": lambda env: env.get("accelerator"),
    "device": lambda env: env.get("device"),
    "GPU count": lambda env: env.get("device_count") if env.get("accelerator") == "gpu" else None,
    "CUDA": lambda env: env.get("cuda"),
    "cuDNN": lambda env: env.get("cudnn"),
    "torch threads": lambda env: env.get("torch_threads") if env.get("accelerator") == "cpu" else None,
    "machine": lambda env: env.get("machine"),
}


def drift(recorded: dict, current: dict) -> list[tuple[str, object, object]]:
    """(field, recorded, current) for every field in DRIFT_FIELDS that differs; empty when the machines match.

    A package the recorded environment does not name (a result made before it was recorded) is not drift: nothing is
    known about it, and verify's exact comparison, the stricter one, stays in force."""
    return [
        (name, get(recorded), get(current))
        for name, get in DRIFT_FIELDS.items()
        if UNRECORDED not in (get(recorded), get(current)) and get(recorded) != get(current)
    ]
