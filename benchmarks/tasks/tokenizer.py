"""A byte-level BPE vocabulary (Hugging Face ``tokenizers``) trained on a task's training text only, deterministically,
and cached under a key made of that text's checksum and the settings, so every run of a task uses the same one.

Byte-level BPE (GPT-2's scheme) has no unknown token and decodes back to exactly the input text. The tokenizer's own
sha256 goes into every result, so two results are comparable only when they share it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass

from benchmarks import paths
from benchmarks.results import write_atomic

SPECIALS = ("<pad>", "<s>", "</s>")  # ids 0, 1, 2: padding, begin and end of sentence


@dataclass(frozen=True)
class BPESettings:
    vocab_size: int = 8000
    min_frequency: int = 2


def _key(corpus_sha256: str, settings: BPESettings) -> str:
    blob = json.dumps({"corpus": corpus_sha256, "settings": asdict(settings), "specials": SPECIALS}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def corpus_checksum(lines: list[str]) -> str:
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def train_bpe(lines: list[str], settings: BPESettings):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=settings.vocab_size,
        min_frequency=settings.min_frequency,
        special_tokens=list(SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer, length=len(lines))
    return tokenizer


def cached_bpe(name: str, lines: list[str], settings: BPESettings = BPESettings(), cache=None):
    """(tokenizer, sha256 of its JSON): loaded from the cache when this text and these settings were seen before."""
    from tokenizers import Tokenizer

    path = paths.cache_dir(cache) / "tokenizers" / f"{name}-{_key(corpus_checksum(lines), settings)}.json"
    if not path.exists():
        write_atomic(train_bpe(lines, settings).to_str(), path, overwrite=True)
    text = path.read_text()
    return Tokenizer.from_str(text), hashlib.sha256(text.encode()).hexdigest()
