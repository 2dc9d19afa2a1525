"""Where things live: the repository, the data folder (read only), the output folder, the committed results."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import platformdirs

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "benchmarks" / "configs"
LEADERBOARD_DIR = REPO_ROOT / "leaderboards"
RESULTS_DIR = LEADERBOARD_DIR / "results"


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The one data-folder setting: ``--data-dir`` beats ``MILESTONES_DATA`` beats a per-user cache folder."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    if os.environ.get("MILESTONES_DATA"):
        return Path(os.environ["MILESTONES_DATA"]).expanduser().resolve()
    return Path(platformdirs.user_cache_dir("dl-milestones")) / "data"


def output_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Checkpoints, CSV logs, W&B offline runs, smoke results: ``--output-dir``, ``MILESTONES_OUTPUT`` or runs/."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    if os.environ.get("MILESTONES_OUTPUT"):
        return Path(os.environ["MILESTONES_OUTPUT"]).expanduser().resolve()
    return REPO_ROOT / "runs"


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Derived data (decoded image arrays, tokenizers): ``MILESTONES_CACHE`` or a per-user cache folder, never the
    data folder, which may be read only."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    if os.environ.get("MILESTONES_CACHE"):
        return Path(os.environ["MILESTONES_CACHE"]).expanduser().resolve()
    return Path(platformdirs.user_cache_dir("dl-milestones")) / "cache"


@contextmanager
def cache_lock(name: str, cache: str | os.PathLike | None = None) -> Iterator[None]:
    """Held while a checked cache entry is looked up, built and recorded (``<cache>/locks/<name>.lock``), so that
    processes needing the same derived data at once (DDP ranks, torchrun nodes on one host, parallel benchmark jobs)
    build it once, one after the other, and never see another's half-written entry: a peer that found a mapped file
    without its checksum record yet deleted it to map again, and the writer's read of it failed (CI, lstm-char)."""
    from filelock import FileLock

    folder = cache_dir(cache) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / f"{name}.lock")):
        yield
