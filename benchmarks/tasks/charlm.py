"""tiny-shakespeare at the character level (Karpathy's char-rnn data): predict the next character.

Protocol (nanoGPT's ``shakespeare_char``): the 65 distinct characters of the file are the vocabulary; the first 90 %
of the characters train, the last 10 % validate. An "epoch" is a fixed number of steps on random windows of the
context length (nanoGPT evaluates every 250 iterations), drawn as a pure function of (seed, epoch). The reported
number is nanoGPT's: the validation loss in nats per character, computed over the whole validation text in
non-overlapping windows (the same expectation as nanoGPT's average over random windows, without its sampling noise),
with the best-validation checkpoint. This usual protocol has no separate test text, so the number that selects the
checkpoint is also the one reported; it says how well a model fits, not how it generalises beyond model selection.
Bits per character (loss / ln 2) is shown beside it, and a 500-character sample is saved with each result.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

from benchmarks.tasks.base import DataIdentity, Metric, Task, count
from benchmarks.tasks.files import DataError, RemoteFile, fetch, md5sum
from benchmarks.tasks.interfaces import CHARACTER_MODEL
from benchmarks.tasks.textfiles import mapped, read_text, text_dataset

SHAKESPEARE = RemoteFile(
    "tinyshakespeare/input.txt",
    "6fb458f1232090904fb40fe944165e91",
    ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",),
)
SAMPLE_CHARS, SAMPLE_TEMPERATURE, SAMPLE_TOP_K = 500, 0.8, 200  # nanoGPT's sample.py defaults, but 500 characters


class WindowBatches:
    """``steps`` batches of random (x, y) windows, y = x shifted by one; or, with ``steps=None``, every
    non-overlapping window in order (evaluation)."""

    def __init__(self, data: torch.Tensor, batch_size: int, context: int, steps: int | None, seed=0, epoch=lambda: 0):
        if len(data) <= context:
            raise DataError(f"{len(data)} characters cannot fill one window of {context} + 1")
        self.data, self.batch_size, self.context, self.steps = data, batch_size, context, steps
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        if self.steps is not None:
            return self.steps
        return -(-((len(self.data) - 1) // self.context) // self.batch_size)

    def __iter__(self):
        offsets = torch.arange(self.context + 1, device=self.data.device)  # (T+1,)
        if self.steps is None:
            starts = torch.arange(0, len(self.data) - self.context, self.context, device=self.data.device)
            batches = starts.split(self.batch_size)
        else:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch())
            high = len(self.data) - self.context
            batches = [torch.randint(high, (self.batch_size,), generator=generator) for _ in range(self.steps)]
        for starts in batches:
            windows = self.data[starts.to(self.data.device).unsqueeze(1) + offsets]  # (B, T+1)
            yield windows[:, :-1], windows[:, 1:]


def char_ids(batch: dict, chars: list[str]) -> dict:
    """``Dataset.map`` function: every character of each text as its index in ``chars`` (one table lookup over the
    text's code points)."""
    import numpy as np

    table = np.full(max(map(ord, chars)) + 1, -1, dtype=np.int32)
    table[[ord(c) for c in chars]] = np.arange(len(chars), dtype=np.int32)
    ids = [table[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)] for text in batch["text"]]
    if any((row < 0).any() for row in ids):
        raise ValueError("a character outside the alphabet")  # cannot happen: the alphabet is the text's own
    return {"ids": ids}


class CharData(L.LightningDataModule):
    remote = SHAKESPEARE
    vocab_size = 65
    train_fraction = 0.9

    def __init__(
        self,
        data_dir,
        batch_size: int,
        seed: int = 0,
        download: bool = True,
        context: int = 256,
        steps_per_epoch: int = 250,
        eval_batch_size: int = 64,
    ):
        super().__init__()
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.batch_size, self.seed, self.download = batch_size, seed, download
        self.context, self.steps_per_epoch, self.eval_batch_size = context, steps_per_epoch, eval_batch_size
        self.chars: list[str] = []
        self.splits: dict[str, torch.Tensor] = {}

    def prepare_data(self) -> None:
        fetch(self.remote, self.data_dir, self.download)

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            path = fetch(self.remote, self.data_dir, download=False)
            text = read_text(path)  # DataError "<file>:<line>: not UTF-8 ..." on bad bytes
            self.chars = sorted(set(text))
            if len(self.chars) != self.vocab_size:
                raise DataError(f"{path}: {len(self.chars)} distinct characters, the task expects {self.vocab_size}")
            document = text_dataset(path, [text], document=True)  # the whole text as one row, as read above
            ids = mapped(document, char_ids, [text], ["chars", self.chars], chars=self.chars)
            data = ids.with_format("torch")[0]["ids"].to(torch.long)  # one row: one tensor, the text's ids in order
            n = int(self.train_fraction * len(data))
            self.splits = {"train": data[:n], "val": data[n:]}
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        self.splits = {name: data.to(device) for name, data in self.splits.items()}

    def encode(self, text: str) -> list[int]:
        return [self.chars.index(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    @classmethod
    def example(cls, folder: Path, batch_size: int, seed: int = 0, **init_args) -> CharData:
        """The task's tiny example in its own layout: 4,000 random characters over the task's 65 (each at least once)
        written to ``folder/tinyshakespeare/input.txt``, read by the same code with that file's checksum."""
        path = Path(folder) / cls.remote.relpath
        if not path.exists():
            alphabet = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # tiny-shakespeare's 65
            generator = torch.Generator().manual_seed(0)
            picks = torch.randint(len(alphabet), (4000,), generator=generator).tolist()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(alphabet + "".join(alphabet[i] for i in picks), encoding="utf-8")
        remote = RemoteFile(cls.remote.relpath, md5sum(path), ())  # no URL: the example is never downloaded
        example = type(f"Example{cls.__name__}", (cls,), {"remote": remote})
        return example(Path(folder), batch_size, seed, download=False, **init_args)

    @classmethod
    def declared_identity(cls) -> DataIdentity:
        return DataIdentity(required={cls.remote.relpath: f"md5:{cls.remote.md5}"})

    def identity(self) -> dict[str, str]:
        return {self.remote.relpath: f"md5:{self.remote.md5}"}

    def batch_units(self, batch) -> int:
        return batch[1].numel()  # characters predicted

    def train_dataloader(self):
        trainer = self.trainer
        epoch = (lambda: trainer.current_epoch) if trainer is not None else (lambda: 0)
        return WindowBatches(
            self.splits["train"], self.batch_size, self.context, self.steps_per_epoch, self.seed, epoch
        )

    def val_dataloader(self):
        return WindowBatches(self.splits["val"], self.eval_batch_size, self.context, None)

    test_dataloader = val_dataloader  # the usual protocol reports the validation loss (see the module docstring)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch if batch[0].device == device else super().transfer_batch_to_device(batch, device, dataloader_idx)


@dataclass(frozen=True)
class CharLMTask(Task):
    def evaluate(self, trainer: L.Trainer, model, datamodule, ckpt_path, artifacts: Path) -> dict[str, float]:
        metrics = super().evaluate(trainer, model, datamodule, ckpt_path, artifacts)  # loads the best weights
        generator = torch.Generator(device=model.device).manual_seed(datamodule.seed)
        start = torch.tensor([datamodule.encode("\n")], device=model.device)
        was_training = model.training
        model.eval()
        ids = model.generate(start, SAMPLE_CHARS, SAMPLE_TEMPERATURE, SAMPLE_TOP_K, generator=generator)
        model.train(was_training)
        path = artifacts / "sample.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(datamodule.decode(ids[0, 1:].tolist()), encoding="utf-8")
        return metrics | {"bpc": metrics["loss"] / math.log(2)}

    def budget(self, config: dict) -> str:
        """An epoch is a fixed number of steps here: '8 epochs (2,000 steps)'."""
        default = inspect.signature(self.make_datamodule).parameters["steps_per_epoch"].default
        steps = count(config["data"].get("init_args", {}).get("steps_per_epoch", default), "steps_per_epoch")
        return f"{super().budget(config)} ({config['trainer']['max_epochs'] * steps:,} steps)"


TASKS = [
    CharLMTask(
        name="shakespeare-char",
        description="tiny-shakespeare (Karpathy 2015), next-character prediction over 65 characters",
        metric=Metric("loss", "min", 0.0, math.inf, unit="nats/char"),
        target=2.0,  # val loss, for time-to-target
        min_seeds=3,
        make_datamodule=CharData,
        interface=CHARACTER_MODEL,
        shown_artifact="sample.txt",
        model_inputs={"vocab_size": CharData.vocab_size},
        protocol=(
            "first 90 % of the characters train, last 10 % validate (nanoGPT's split); best-val checkpoint; the "
            "validation loss in nats per character over every non-overlapping window (nanoGPT's reported number); "
            "bits per character beside it"
        ),
        extra_metrics=("bpc",),
        throughput_unit="characters",
        reported_split="validation",  # test_dataloader = val_dataloader: the usual protocol has no test text
    )
]
