"""Checkpoints (benchmarks/running/checkpoints.py): written whole or not at all, checked against their sha256 record."""

from __future__ import annotations

import pytest
import torch

from benchmarks.running import checkpoints
from benchmarks.running.checkpoints import AtomicCheckpointIO, CheckpointError, problem, record_path, save


class Killed(Exception):
    """Stands for a kill -9 at that point: nothing after it runs."""


def state(value: float) -> dict:
    return {"state_dict": {"w": torch.full((64,), value)}, "epoch": int(value)}


def killed_before_the_checkpoint_rename(monkeypatch):
    """The next save writes its record, then 'dies' before its checkpoint replaces the old one."""
    real = checkpoints.write_atomic

    def write(data, path, **kwargs):
        if kwargs.get("kill_point") == "checkpoint-write":
            raise Killed
        return real(data, path, **kwargs)

    monkeypatch.setattr(checkpoints, "write_atomic", write)


def test_a_checkpoint_round_trips_with_its_record(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(state(1), path)
    assert problem(path) is None and record_path(path).exists()
    assert torch.equal(AtomicCheckpointIO().load_checkpoint(path)["state_dict"]["w"], state(1)["state_dict"]["w"])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_changed_byte_or_a_missing_record_is_never_loaded(tmp_path):
    path = tmp_path / "last.ckpt"
    save(state(1), path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the sha256 recorded when it was written"):
        AtomicCheckpointIO().load_checkpoint(path)
    record_path(path).unlink()
    assert "has no readable checksum record" in problem(path)


def test_a_kill_between_the_two_renames_keeps_the_previous_checkpoint_valid_twice_over(tmp_path, monkeypatch):
    """Record renamed, checkpoint not: the old checkpoint is whole and accepted (the record keeps its checksum as
    'previous'). A second such kill on the next save must not lose that: 'previous' is what is on disk, not what the
    first record promised."""
    path = tmp_path / "last.ckpt"
    save(state(1), path)
    with monkeypatch.context() as m:
        killed_before_the_checkpoint_rename(m)
        with pytest.raises(Killed):
            save(state(2), path)
    assert problem(path) is None and torch.load(path, weights_only=True)["epoch"] == 1
    with monkeypatch.context() as m:
        killed_before_the_checkpoint_rename(m)
        with pytest.raises(Killed):
            save(state(3), path)
    assert problem(path) is None and torch.load(path, weights_only=True)["epoch"] == 1
    save(state(4), path)
    assert problem(path) is None and torch.load(path, weights_only=True)["epoch"] == 4
