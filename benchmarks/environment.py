"""A fingerprint of the machine and software a run used, and of the code (git commit, dirty tree)."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

import torch

from benchmarks.paths import REPO_ROOT

PACKAGES = ("torch", "torchvision", "lightning", "torchmetrics", "numpy", "scikit-learn", "wandb", "pydantic")


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
    }


def hardware_label(env: dict) -> str:
    """Short label for tables: 'NVIDIA H100 80GB HBM3 ×1' or 'CPU: AMD EPYC 7B13 (2 cores)'."""
    if env["accelerator"] == "gpu":
        return f"{env['device']} ×{env['device_count']}"
    threads = env.get("torch_threads")
    suffix = f", {threads} torch thread{'s' if threads != 1 else ''}" if threads else ""
    return f"CPU: {env['device']} ({env['device_count']} cores{suffix})"


def code_identity() -> dict:
    """The git commit and whether tracked files differed from it (untracked result files do not count)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None and os.environ.get("MILESTONES_GIT_COMMIT"):
        # a copied checkout without .git (the lent GPU machine): the commit is vouched for by whoever copied it,
        # and whether the copy was clean cannot be checked here, so git_dirty stays unknown
        return {"git_commit": os.environ["MILESTONES_GIT_COMMIT"], "git_dirty": None, "commit_from": "environment"}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}
