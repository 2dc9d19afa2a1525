"""A byte-level BPE vocabulary (Hugging Face ``tokenizers``) trained on a task's training text only, deterministically,
and cached under a key made of that text's checksum and the settings, so every run of a task uses the same one.

Byte-level BPE (GPT-2's scheme) has no unknown token and decodes back to exactly the input text. The tokenizer's own
sha256 goes into every result, so two results are comparable only when they share it.

The cached file is derived data and is never trusted blindly: beside ``<name>-<key>.json`` a record
``<name>-<key>.record.json`` (written after it) holds the file's sha256, the settings and the corpus checksum it was
trained with. Each load checks the file against that record and that it parses; a file that is missing, truncated or
edited (one swapped token id), or a record that is missing or another's, prints one line naming the file and the
reason, and the tokenizer is trained again. Training is deterministic, so the retrained file is the same as before.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass

from benchmarks.core import paths
from benchmarks.core.results import write_atomic

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
    """(tokenizer, sha256 of its JSON): loaded from the cache when this text and these settings were seen before and
    the file passes its check (see the module's docstring); trained, and cached with its record, otherwise. Under the
    cache's lock: processes that need the same tokenizer at once train it once."""
    with paths.cache_lock("tokenizers", cache):
        return _checked_bpe(name, lines, settings, cache)


def _checked_bpe(name: str, lines: list[str], settings: BPESettings, cache):
    corpus = corpus_checksum(lines)
    path = paths.cache_dir(cache) / "tokenizers" / f"{name}-{_key(corpus, settings)}.json"
    record_path = path.with_name(path.stem + ".record.json")
    expected = {"settings": asdict(settings), "corpus_sha256": corpus, "specials": list(SPECIALS)}
    if path.exists() or record_path.exists():
        loaded, problem = _load_checked(path, record_path, expected)
        if problem is None:
            return loaded
        print(f"{problem}; training the tokenizer again", flush=True)
    text = train_bpe(lines, settings).to_str()
    digest = hashlib.sha256(text.encode()).hexdigest()
    record_path.unlink(missing_ok=True)  # the record is written last: a kill in between leaves no stale one
    write_atomic(text, path, overwrite=True)
    record = {"sha256": digest, **expected, "what": f"the checksum of {path.name} when it was trained"}
    write_atomic(json.dumps(record, indent=2) + "\n", record_path, overwrite=True)
    return _parse(text), digest


def _load_checked(path, record_path, expected: dict):
    """((tokenizer, sha256), None) when the cached file matches its record and parses, else (None, why not)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None, f"{path}: missing (its checksum record is there)"
    except (OSError, ValueError) as error:  # e.g. bytes that are no longer text
        return None, f"{path}: unreadable ({error.__class__.__name__}: {error})"
    try:
        record = json.loads(record_path.read_text())
    except FileNotFoundError:
        return None, f"{record_path}: missing (the record of the tokenizer's checksum)"
    except (OSError, ValueError) as error:
        return None, f"{record_path}: unreadable ({error})"
    if not isinstance(record, dict) or {key: record.get(key) for key in expected} != expected:
        return None, f"{record_path}: records other settings or another corpus than this run's"
    digest = hashlib.sha256(text.encode()).hexdigest()
    if digest != record.get("sha256"):
        return None, f"{path}: sha256 differs from the one recorded when it was trained (the file was altered)"
    try:
        return (_parse(text), digest), None
    except Exception as error:  # tokenizers raises plain Exceptions on a malformed file
        return None, f"{path}: does not parse as a tokenizer ({error})"


def _parse(text: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(text)
