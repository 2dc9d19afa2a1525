"""Spoken digits (the Free Spoken Digit Dataset v1.0.10, ``spoken_digits.py``): a likelihood task for audio models.

Protocol. The dataset's own split: takes 0–4 of every (digit, speaker) are the test set (300 recordings); of its
training takes 5–49, takes 5–9 validate (300, for model selection) and takes 10–49 train (2,400). Audio is 8 kHz,
μ-law companded to 256 classes (WaveNet §2.2). A model predicts every sample from the samples before it, given the
digit and the speaker (WaveNet §2.5's global conditioning); the first sample is predicted from silence. The metric is
the negative log-likelihood of every sample of every test recording, in bits per sample (the summed nats of all
samples / their count / ln 2), from the best-validation checkpoint. Training batches are random crops of each
training recording (``crop`` samples; a shorter recording whole), every recording once an epoch.

Samples. After the test the task generates one clip per (digit, speaker) — 60 clips of 0.75 s — from a
generator seeded by the run's seed. One speaker's ten (the seed's, modulo 6) are published beside the result as
``digit-<d>.wav`` with their spectrograms beside real test takes of the same speaker (``spectrograms.png``, which a
leaderboard row shows, with links to the WAVs); all 60 stay in the run folder (``all-samples/``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch

from benchmarks.core.checksums import sha256_file
from benchmarks.tasks.base import DataIdentity, Metric, Task
from benchmarks.tasks.files import DataError
from benchmarks.tasks.interfaces import SPOKEN_AUDIO
from benchmarks.tasks.manifest import ImageRecord, write_manifest
from benchmarks.tasks.spoken_digits import (
    FOLDER,
    JUDGE,
    MANIFEST,
    SAMPLE_RATE,
    SPEAKERS,
    download_release,
    mu_law_decode,
    mu_law_encode,
    parse_name,
    read_wav,
    records,
    split_of,
    write_wav,
)

SILENCE = 128  # the μ-law class of 0.0
VAL_TAKES = range(5, 10)


def split_for(take: int) -> str:
    """test: takes 0–4 (the dataset's); val: 5–9; train: 10–49."""
    return "test" if split_of(take) == "test" else "val" if take in VAL_TAKES else "train"


@dataclass(frozen=True)
class Clip:
    ids: torch.Tensor  # (T,) uint8 μ-law classes
    digit: int
    speaker: int  # index into the data module's speakers


def pad(clips: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal-length (B, T) int64 ids, padded with silence, and the (B, T) mask of the real samples."""
    length = max(len(c) for c in clips)
    audio = torch.full((len(clips), length), SILENCE, dtype=torch.long)
    mask = torch.zeros((len(clips), length), dtype=torch.bool)
    for i, c in enumerate(clips):
        audio[i, : len(c)], mask[i, : len(c)] = c.long(), True
    return audio, mask


class ClipCrops:
    """Training batches ``(audio, mask, digit, speaker)``: every training recording once an epoch, in an order drawn
    from (seed, epoch), each as a random ``crop`` of its samples (a shorter recording whole)."""

    def __init__(self, clips: list[Clip], batch_size: int, crop: int, seed: int, epoch) -> None:
        self.clips, self.batch_size, self.crop, self.seed, self.epoch = clips, batch_size, crop, seed, epoch

    def __len__(self) -> int:
        return -(-len(self.clips) // self.batch_size)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch())
        order = torch.randperm(len(self.clips), generator=generator).tolist()
        for start in range(0, len(order), self.batch_size):
            chosen = [self.clips[i] for i in order[start : start + self.batch_size]]
            crops = []
            for clip in chosen:
                offset = int(torch.randint(max(1, len(clip.ids) - self.crop + 1), (1,), generator=generator))
                crops.append(clip.ids[offset : offset + self.crop])
            yield batch_of(chosen, crops)


class WholeClips:
    """Evaluation batches of whole recordings, longest first (less padding), in a fixed order."""

    def __init__(self, clips: list[Clip], batch_size: int) -> None:
        self.clips = sorted(clips, key=lambda c: -len(c.ids))
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.clips) // self.batch_size)

    def __iter__(self):
        for start in range(0, len(self.clips), self.batch_size):
            chosen = self.clips[start : start + self.batch_size]
            yield batch_of(chosen, [c.ids for c in chosen])


def batch_of(chosen: list[Clip], ids: list[torch.Tensor]):
    audio, mask = pad(ids)
    digits = torch.tensor([c.digit for c in chosen])
    speakers = torch.tensor([c.speaker for c in chosen])
    return audio, mask, digits, speakers  # (B, T), (B, T), (B,), (B,)


class SpokenDigitData(L.LightningDataModule):
    manifest: Path = MANIFEST
    speakers: tuple[str, ...] = SPEAKERS
    shards_by_rank = False  # batches are cut by the harness under DDP (RankSlices)
    sample_seconds = 0.75  # the length of each generated clip (a digit lasts 0.44 s on average)

    def __init__(self, data_dir, batch_size: int, seed: int = 0, download: bool = True, crop: int = 4000,
                 eval_batch_size: int = 16):  # fmt: skip
        super().__init__()
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.batch_size, self.seed, self.download = batch_size, seed, download
        self.crop, self.eval_batch_size = crop, eval_batch_size
        self.clips: dict[str, list[Clip]] = {}

    def root(self) -> Path:
        if self.data_dir is None:
            raise DataError("no data folder: set --data-dir or MILESTONES_DATA")
        return self.data_dir / FOLDER

    def prepare_data(self) -> None:
        folder = self.root() / "recordings"
        if self.download and not any(folder.glob("*.wav")):
            download_release(self.root())

    def setup(self, stage: str | None = None) -> None:
        if self.clips:
            return
        clips: dict[str, list[Clip]] = {"train": [], "val": [], "test": []}
        for record in records(self.root(), self.manifest, self.speakers):  # every file checked against its sha256
            digit, speaker, take = parse_name(record.path)
            ids = mu_law_encode(torch.from_numpy(read_wav(self.root() / record.path))).to(torch.uint8)
            clips[split_for(take)].append(Clip(ids, digit, self.speakers.index(speaker)))
        self.clips = clips

    def train_dataloader(self):
        trainer = self.trainer
        epoch = (lambda: trainer.current_epoch) if trainer is not None else (lambda: 0)
        return ClipCrops(self.clips["train"], self.batch_size, self.crop, self.seed, epoch)

    def val_dataloader(self):
        return WholeClips(self.clips["val"], self.eval_batch_size)

    def test_dataloader(self):
        return WholeClips(self.clips["test"], self.eval_batch_size)

    def batch_units(self, batch) -> int:
        return int(batch[1].sum())  # audio samples predicted

    def real_clips(self, digit: int, speaker: int, n: int) -> list[Clip]:
        """``n`` test recordings of ``digit`` said by ``speaker`` (in the order read)."""
        return [c for c in self.clips["test"] if c.digit == digit and c.speaker == speaker][:n]

    @classmethod
    def declared_identity(cls) -> DataIdentity:
        return DataIdentity(required={f"{FOLDER}/{cls.manifest.name}": f"sha256:{sha256_file(cls.manifest)}"})

    def identity(self) -> dict[str, str]:
        return {f"{FOLDER}/{self.manifest.name}": f"sha256:{sha256_file(self.manifest)}"}

    @classmethod
    def example(cls, folder: Path, batch_size: int, seed: int = 0, **init_args) -> SpokenDigitData:
        """The task's tiny example in the dataset's layout: 2 speakers × 10 digits × takes 0, 5, 10 and 11 (test, val,
        train), each a 0.05–0.1 s tone whose pitch is its digit's, as 8 kHz WAVs under ``folder/fsdd/recordings``
        with their own manifest, read by the same code."""
        root = Path(folder) / FOLDER
        speakers = SPEAKERS[:2]
        generator = np.random.default_rng(0)
        found = []
        for digit in range(10):
            for speaker in speakers:
                for take in (0, 5, 10, 11):
                    path = root / "recordings" / f"{digit}_{speaker}_{take}.wav"
                    if not path.exists():
                        t = np.arange(int(generator.integers(400, 800))) / SAMPLE_RATE
                        tone = 0.5 * np.sin(2 * np.pi * (200 + 60 * digit) * t) + 0.01 * generator.normal(size=len(t))
                        write_wav(path, tone)
                    found.append(ImageRecord(split_of(take), f"recordings/{path.name}", str(digit), sha256_file(path)))
        manifest = root / "example-manifest.csv.gz"
        write_manifest(found, manifest)
        short = 0.01  # generated clips of 80 samples: the example tests the code, not the sound
        example = type(f"Example{cls.__name__}", (cls,), {"manifest": manifest, "speakers": speakers,
                                                          "sample_seconds": short})  # fmt: skip
        return example(Path(folder), batch_size, seed, download=False, **init_args)


class GeneratedDigitData(SpokenDigitData):
    """The ``fsdd`` task's data: the recordings, and the committed judge that listens to the samples, whose checksum
    every result records (as the generative image tasks record their feature classifier)."""

    @classmethod
    def declared_identity(cls) -> DataIdentity:
        judge = {f"benchmarks/featurenets/{JUDGE[0]}": f"sha256:{JUDGE[1]}"}
        return DataIdentity(required={**super().declared_identity().required, **judge})

    def identity(self) -> dict[str, str]:
        return super().identity() | {f"benchmarks/featurenets/{JUDGE[0]}": f"sha256:{JUDGE[1]}"}


# --- samples --------------------------------------------------------------------------------------------------------
@torch.no_grad()
def generate_clips(model, n_samples: int, seed: int, speakers: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One clip per (digit, speaker): (digits, speakers, (10·speakers, n_samples) μ-law ids), drawn with a CPU
    generator seeded by ``seed``."""
    was_training = model.training
    model.eval()
    digits = torch.arange(10).repeat_interleave(speakers)
    who = torch.arange(speakers).repeat(10)
    ids = model.generate(digits.to(model.device), who.to(model.device), n_samples, torch.Generator().manual_seed(seed))
    model.train(was_training)
    return digits, who, ids.cpu()


def log_spectrogram(samples: np.ndarray, n_fft: int = 256, hop: int = 64) -> np.ndarray:
    """(frequencies, frames) power in dB of a Hann-windowed STFT (32 ms windows at 8 kHz)."""
    x = torch.from_numpy(np.asarray(samples, dtype=np.float32))
    if len(x) < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - len(x)))
    power = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs() ** 2
    return (10 * torch.log10(power + 1e-10)).numpy()


def spectrogram_grid(rows: list[tuple[str, list[tuple[str, np.ndarray]]]], path: Path, title: str,
                     seconds: float) -> Path:  # fmt: skip
    """A grid of spectrograms: one row per label, one panel per (caption, clip), on one time axis (0 … ``seconds``, or
    the longest clip) in s and frequency in kHz."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(len(clips) for _, clips in rows)
    longest = max([seconds] + [len(clip) / SAMPLE_RATE for _, clips in rows for _, clip in clips])
    figure, axes = plt.subplots(len(rows), columns, figsize=(2.2 * columns + 0.8, 1.15 * len(rows) + 0.8),
                                squeeze=False, sharex=True, sharey=True)  # fmt: skip
    for r, (label, clips) in enumerate(rows):
        for c in range(columns):
            axis = axes[r][c]
            if c >= len(clips):
                axis.axis("off")
                continue
            caption, clip = clips[c]
            spectrogram = log_spectrogram(clip)
            seconds = len(clip) / SAMPLE_RATE
            axis.imshow(spectrogram, origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=20,
                        extent=(0, seconds, 0, SAMPLE_RATE / 2000))  # fmt: skip
            axis.set_xlim(0, longest)
            axis.tick_params(labelsize=6)
            axis.set_title(caption, fontsize=7, pad=2)
            if c == 0:
                axis.set_ylabel(f"{label}\nkHz", fontsize=7)
            if r == len(rows) - 1:
                axis.set_xlabel("s", fontsize=7)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


@dataclass(frozen=True)
class SpokenDigitTask(Task):
    def budget(self, config: dict) -> str:
        return super().budget(config) + f" of {config['data']['batch_size']}-clip batches"

    def evaluate(self, trainer: L.Trainer, model, datamodule, ckpt_path, artifacts: Path):
        from benchmarks.tasks.heard_digits import heard_as, heard_as_real

        metrics = super().evaluate(trainer, model, datamodule, ckpt_path, artifacts)  # test bits per sample
        if ckpt_path:
            state = torch.load(ckpt_path, map_location=model.device, weights_only=True)["state_dict"]
            model.load_state_dict(state)
        speakers = datamodule.speakers
        n = int(datamodule.sample_seconds * SAMPLE_RATE)
        digits, who, ids = generate_clips(model, n, datamodule.seed, len(speakers))
        clips = mu_law_decode(ids)
        heard, real = heard_as(clips, digits), heard_as_real(datamodule)
        judged = {**heard, **real, "judge": JUDGE[0], "judge_sha256": JUDGE[1]}
        (artifacts / "heard.json").write_text(json.dumps(judged) + "\n")  # the confusions, what each clip is heard as
        shown = datamodule.seed % len(speakers)  # one speaker per seed is published: 10 WAVs and their picture
        for digit, speaker, clip in zip(digits.tolist(), who.tolist(), clips.numpy()):
            write_wav(artifacts / "all-samples" / f"{digit}_{speakers[speaker]}.wav", clip)  # kept in the run folder
            if speaker == shown:
                write_wav(artifacts / f"digit-{digit}.wav", clip)  # beside the result
        rows = []
        for digit in range(10):
            real_takes = [("real", mu_law_decode(c.ids.long()).numpy()) for c in datamodule.real_clips(digit, shown, 2)]
            i = digit * len(speakers) + shown
            generated = (f"generated: heard as {heard['heard_digits'][i]}", clips[i].numpy())
            rows.append((f"{digit}", real_takes + [generated]))
        title = (f"digits 0–9: 2 real test takes of {speakers[shown]}, then WaveNet's sample\n"
                 f"(seed {datamodule.seed}, {datamodule.sample_seconds} s), and the digit the judge hears")  # fmt: skip
        spectrogram_grid(rows, artifacts / "spectrograms.png", title, datamodule.sample_seconds)
        return metrics | {"heard_as_digit": heard["heard_as_digit"], "real_heard_as_digit": real["real_heard_as_digit"]}


TASKS = [
    SpokenDigitTask(
        name="fsdd",
        description="Free Spoken Digit Dataset v1.0.10 (8 kHz, μ-law): bits per sample of the test recordings",
        metric=Metric("bits_per_sample", "min", 0.0, 8.0, unit="bits/sample"),
        target=5.0,  # val bits per sample, for time-to-target
        min_seeds=3,
        make_datamodule=GeneratedDigitData,
        interface=SPOKEN_AUDIO,
        model_inputs={"n_speakers": len(SPEAKERS), "n_classes": 256},
        protocol=(
            "takes 0–4 test (the dataset's split), 5–9 validate, 10–49 train; 8 kHz μ-law (256 classes); best-val "
            "checkpoint; negative log-likelihood of every test sample given the samples before it, the digit and "
            "the speaker, in bits per sample; 60 generated clips (one per digit and speaker) heard by the committed "
            "judge (heard_as_digit, %), one speaker's ten kept as WAVs with the result"
        ),
        throughput_unit="audio samples",
        shown_artifact="spectrograms.png",
        linked_artifacts="digit-*.wav",
        extra_metrics=("heard_as_digit",),
        reference_metrics=("real_heard_as_digit",),
        reference_meaning="the real test recordings, heard by the same judge",
    )
]
