"""The spoken-digit data: the release pinned by its files' checksums, strict WAV reading with one-line errors that
name the file (another sample rate, stereo, truncated, not a WAV, a missing speaker), μ-law companding, the split."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.tasks.files import DataError
from benchmarks.tasks.fsdd import SpokenDigitData, split_for
from benchmarks.tasks.manifest import read_manifest
from benchmarks.tasks.spoken_digits import (
    MANIFEST,
    SPEAKERS,
    manifest_records,
    mu_law_decode,
    mu_law_encode,
    parse_name,
    read_wav,
    records,
    write_wav,
)

SESSION_DATA = os.environ.get("MILESTONES_DATA")


def write_raw(path: Path, samples: np.ndarray, rate: int = 8000, channels: int = 1, width: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def test_a_wav_round_trips(tmp_path):
    samples = np.sin(np.arange(800) / 5).astype(np.float32) * 0.5
    back = read_wav(write_wav(tmp_path / "0_theo_0.wav", samples))
    assert back.dtype == np.float32 and np.abs(back - samples).max() < 1 / 32768


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: write_raw(p, np.zeros(100, "<i2"), rate=16000), "sample rate 16000 Hz"),
        (lambda p: write_raw(p, np.zeros(200, "<i2"), channels=2), "2 channels"),
        (lambda p: write_raw(p, np.zeros(100, "u1"), width=1), "8-bit samples"),
        (lambda p: p.write_bytes(write_raw(p, np.zeros(1000, "<i2")).read_bytes()[:-500]), "truncated"),
        (lambda p: p.write_bytes(b"not a wav at all"), "not a PCM WAV"),
    ],
)
def test_bad_recordings_are_one_line_errors_naming_the_file(tmp_path, make, message):
    path = tmp_path / "3_theo_7.wav"
    make(path)
    with pytest.raises(DataError) as error:
        read_wav(path)
    assert str(error.value).startswith(str(path)) and message in str(error.value) and "\n" not in str(error.value)


def test_a_missing_speaker_is_named(tmp_path):
    for digit in range(2):
        write_wav(tmp_path / "recordings" / f"{digit}_theo_0.wav", np.zeros(100, np.float32))
    with pytest.raises(DataError, match="no recordings of speaker 'george'"):
        records(tmp_path, speakers=("george", "theo"))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-2] + b"\x01\x02"), "altered"),
        (lambda p: write_wav(p, read_wav(p), rate=16000), "sample rate 16000 Hz"),
        (lambda p: p.write_bytes(p.read_bytes()[:-300]), "truncated"),
    ],
)
def test_a_recording_that_is_not_the_releases_is_named_with_what_is_wrong(tmp_path, damage, message):
    data = SpokenDigitData.example(tmp_path, 4)
    victim = tmp_path / "fsdd" / "recordings" / "3_george_10.wav"
    damage(victim)
    with pytest.raises(DataError) as error:
        data.setup()
    text = str(error.value)
    assert text.startswith(f"{victim}: sha256") and message in text and "\n" not in text, text


def test_names_and_split():
    assert parse_name("3_theo_17.wav") == (3, "theo", 17)
    with pytest.raises(DataError, match="not a recording name"):
        parse_name("theo-3.wav")
    assert [split_for(t) for t in (0, 4, 5, 9, 10, 49)] == ["test", "test", "val", "val", "train", "train"]


def test_mu_law_round_trips_within_its_quantisation():
    x = torch.linspace(-1, 1, 10_001)
    ids = mu_law_encode(x)
    assert ids.min() == 0 and ids.max() == 255 and mu_law_encode(torch.zeros(1)).item() == 128
    assert (mu_law_decode(ids) - x).abs().max() < 0.025  # the widest class, at ±1
    assert (mu_law_decode(ids[4900:5100]) - x[4900:5100]).abs().max() < 1e-3  # fine near silence
    assert torch.equal(mu_law_encode(mu_law_decode(torch.arange(256))), torch.arange(256))


def test_the_committed_manifest_pins_the_release():
    listed = read_manifest(MANIFEST)
    assert len(listed) == 3000 and sum(r.split == "test" for r in listed) == 300
    assert {parse_name(r.path)[1] for r in listed} == set(SPEAKERS)


@pytest.mark.skipif(not SESSION_DATA or not (Path(SESSION_DATA) / "fsdd").is_dir(),
                    reason="real-data test: set MILESTONES_DATA to a folder holding fsdd/recordings")  # fmt: skip
def test_the_real_release_matches_the_committed_manifest_and_reads():
    root = Path(SESSION_DATA) / "fsdd"
    assert sorted(manifest_records(root), key=str) == sorted(read_manifest(MANIFEST), key=str)
    data = SpokenDigitData(Path(SESSION_DATA), batch_size=8)
    data.setup()
    assert {k: len(v) for k, v in data.clips.items()} == {"train": 2400, "val": 300, "test": 300}
    audio, mask, digit, speaker = next(iter(data.train_dataloader()))
    assert audio.shape[0] == 8 and audio.shape[1] <= 4000 and mask.any(1).all()
