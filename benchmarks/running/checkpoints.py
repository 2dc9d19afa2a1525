"""Checkpoints that survive a kill or a full disk, and are checked before they are trusted.

Lightning's own save writes to the system temp folder and then *copies* over the target when the two are on different
filesystems: a kill or a full disk during that copy leaves a truncated ``last.ckpt``, the only resume point. Here a
checkpoint is written to a temp file in its own folder, fsynced, and renamed over the target, so the previous one stays
whole until the new one is complete. Its sha256 goes into ``<name>.sha256`` beside it; that record keeps the previous
checksum too, because the record is renamed first and a kill between the two renames leaves the old, whole checkpoint.
Every load through Lightning, and every ``--resume``, checks a checkpoint against its record.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from benchmarks.core.results import write_atomic

SUFFIX = ".sha256"
_on_disk: dict[Path, str] = {}  # the sha256 of each checkpoint this process wrote or verified: what is there now


class CheckpointError(OSError):
    """A checkpoint that does not match its recorded checksum, or cannot be read."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def record_path(path: Path) -> Path:
    return path.with_name(path.name + SUFFIX)


def save(checkpoint: dict[str, Any], path: Path) -> None:
    """``torch.save`` to ``path`` atomically, with its checksum record (see the module's docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    data = buffer.getvalue()
    # the checksum of what stays on disk if a kill comes between the two renames below: known when this process wrote
    # or verified it (after a kill between renames the record names bytes that never landed), else the record's
    previous = _on_disk.get(path.resolve(), _recorded(path).get("sha256")) if path.exists() else None
    record = {"sha256": hashlib.sha256(data).hexdigest(), "previous": previous, "bytes": len(data)}
    write_atomic(json.dumps(record) + "\n", record_path(path), overwrite=True)  # same folder, fsync, rename
    write_atomic(data, path, overwrite=True, kill_point="checkpoint-write")
    _fsync_dir(path.parent)
    _on_disk[path.resolve()] = record["sha256"]


def _recorded(path: Path) -> dict:
    try:
        record = json.loads(record_path(path).read_text())
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def problem(path: Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be trusted, or None when it matches its record."""
    path = Path(path)
    if not path.is_file():
        return "is missing"
    record = _recorded(path)
    if not record:
        return f"has no readable checksum record ({record_path(path).name})"
    actual = _sha256(path)
    if actual not in (record.get("sha256"), record.get("previous")):
        return f"does not match the sha256 recorded when it was written ({record_path(path).name}): damaged"
    _on_disk[path.resolve()] = actual
    return None


def verify(path: Path) -> None:
    found = problem(path)
    if found:
        raise CheckpointError(f"checkpoint {path} {found}")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, saving with ``save`` and checking each checkpoint before it is loaded."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        save(checkpoint, Path(path))

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only=None) -> dict[str, Any]:
        verify(Path(path))
        return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)

    def remove_checkpoint(self, path) -> None:
        super().remove_checkpoint(path)
        record_path(Path(path)).unlink(missing_ok=True)
        _on_disk.pop(Path(path).resolve(), None)


class EpochCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, which also saves after an epoch in which the model made no optimiser step.

    Lightning skips a save when ``trainer.global_step`` has not moved since its last one, and only an optimiser step
    moves it. A learning rule that updates buffers (the perceptron, Adaline, the Neocognitron's reinforcement) never
    does: such a run kept no best and no last checkpoint, so its test used the final weights while its result named the
    best epoch, and ``--resume`` started it over. Here a new epoch counts as progress too."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._last_epoch_saved: int | None = None

    def _should_skip_saving_checkpoint(self, trainer) -> bool:
        fitting = trainer.state.fn == "fit" and not (trainer.fast_dev_run or trainer.sanity_checking)
        new_epoch = self._last_epoch_saved != trainer.current_epoch
        if fitting and new_epoch and self._last_global_step_saved == trainer.global_step:
            return False  # an epoch of a learning rule that makes no optimiser step: save it
        return super()._should_skip_saving_checkpoint(trainer)

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        self._last_epoch_saved = trainer.current_epoch
