"""The text tasks read and tokenise through Hugging Face ``datasets`` (``load_dataset("text")``, ``map`` with its
fingerprint cache): the ids, tensors and batches must be exactly those of the plain reading and encoding they
replaced (re-implemented here as they were), so committed results still verify; the mapped Arrow files are reused by
a second run, and a damaged one is named in one line and mapped again, never blamed on the text file."""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import string
from pathlib import Path

import pytest
import torch

from benchmarks.core.checksums import sha256_file
from benchmarks.tasks.charlm import CharData
from benchmarks.tasks.files import DataError, RemoteFile, md5sum
from benchmarks.tasks.translation import BOS, EOS, SentenceBatches, TranslationData

ALPHABET = "\n !$&',-.3:;?" + string.ascii_letters  # tiny-shakespeare's 65 characters
SESSION_DATA = os.environ.get("MILESTONES_DATA")


# --- the old code, as it was (git 9ad29a6) ----------------------------------------------------------------------------
def old_translation_ids(data: TranslationData, split: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """TranslationData.setup's encoding before ``datasets.map``: a tensor per line from the tokenizer's encode_batch."""
    source, target = data.text[split]
    limit = data.max_train_tokens if split == "train" else None

    def encode(lines):
        return [e.ids for e in data.tokenizer.encode_batch(lines, add_special_tokens=False)]

    return (
        [torch.tensor([*ids[:limit], EOS]) for ids in encode(source)],
        [torch.tensor([BOS, *ids[:limit], EOS]) for ids in encode(target)],
    )


def old_char_splits(path: Path) -> tuple[list[str], dict[str, torch.Tensor]]:
    """CharData.setup before ``datasets``: the file read as text, a dict lookup per character."""
    text = path.read_text(encoding="utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text], dtype=torch.long)
    n = int(0.9 * len(data))
    return chars, {"train": data[:n], "val": data[n:]}


def same_tensors(new: list[torch.Tensor], old: list[torch.Tensor]) -> bool:
    return len(new) == len(old) and all(a.dtype == b.dtype and torch.equal(a, b) for a, b in zip(new, old))


def mapped_files(cache: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (cache / "hf-datasets").rglob("cache-*.arrow")}


# --- fixtures ---------------------------------------------------------------------------------------------------------
WORDS = {
    "de": "Ein Mann eine Frau zwei Hunde spielen im Schnee auf der Straße mit einem Ball über Brücke Mädchen".split(),
    "en": "A man a woman two dogs play in the snow on the street with a ball over bridge girl".split(),
}


def write_gz(path: Path, lines: list[str], ending: str = "\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write("".join(line + ending for line in lines).encode())


@pytest.fixture
def corpus(tmp_path, monkeypatch) -> Path:
    """Multi30k's layout, 200 / 12 / 12 pairs of word-for-word 'translations': umlauts, ß, two spaces, a trailing
    space, CRLF line endings in one file, and one training sentence of ~400 tokens (over max_train_tokens)."""
    folder = tmp_path / "data"
    rng = random.Random(1)
    for split, n in (("train", 200), ("val", 12), ("test_2016_flickr", 12)):
        rows = [[rng.randrange(len(WORDS["de"])) for _ in range(rng.randint(1, 12))] for _ in range(n)]
        if split == "train":
            rows[7] = [rng.randrange(len(WORDS["de"])) for _ in range(400)]
        for lang in ("de", "en"):
            lines = [" ".join(WORDS[lang][i] for i in row) for row in rows]
            lines[3] = lines[3] + " "
            lines[4] = lines[4].replace(" ", "  ", 1)
            ending = "\r\n" if (split, lang) == ("val", "en") else "\n"
            write_gz(folder / "multi30k" / f"{split}.{lang}.gz", lines, ending)
    monkeypatch.setattr(TranslationData, "md5", {p.name: md5sum(p) for p in (folder / "multi30k").iterdir()})
    monkeypatch.setattr(TranslationData, "optional", ())
    monkeypatch.setattr(TranslationData, "bpe_sha256", None)  # not the task's text: another BPE, no warning
    monkeypatch.setenv("MILESTONES_CACHE", str(tmp_path / "cache"))
    return folder


@pytest.fixture
def shakespeare(tmp_path, monkeypatch) -> Path:
    """20,000 characters over the task's 65, with CRLF and lone CR line endings (text mode reads both as \\n)."""
    rng = random.Random(0)
    text = ALPHABET + "".join(rng.choice("etaoin shrdlu\n") for _ in range(20_000)) + "To be\r\nor not\rto be\n"
    path = tmp_path / "data" / "tinyshakespeare" / "input.txt"
    path.parent.mkdir(parents=True)
    path.write_bytes(text.encode())
    monkeypatch.setattr(CharData, "remote", RemoteFile(CharData.remote.relpath, md5sum(path), ()))
    monkeypatch.setenv("MILESTONES_CACHE", str(tmp_path / "cache"))
    return tmp_path / "data"


def translation(folder: Path, **kwargs) -> TranslationData:
    data = TranslationData(folder, batch_size=16, download=False, **kwargs)
    data.prepare_data()
    data.setup()
    return data


# --- the same data as before ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_train_tokens", [256, 5])
def test_the_datasets_path_gives_the_old_token_ids_tensors_and_batches(corpus, tmp_path, monkeypatch, max_train_tokens):
    monkeypatch.setattr(TranslationData, "max_train_tokens", max_train_tokens)  # 5: most training lines are cut
    data = translation(corpus)
    assert list(data.ids) == ["train", "val", "test_2016_flickr"]
    for split in data.ids:
        old_source, old_target = old_translation_ids(data, split)
        assert same_tensors(data.ids[split][0], old_source) and same_tensors(data.ids[split][1], old_target), split
    assert len(data.ids["train"][0][7]) == max_train_tokens + 1 < len(data.encode([data.text["train"][0][7]])[0]) + 1
    old = SentenceBatches(*old_translation_ids(data, "train"), 16, shuffle=True, seed=0)
    for (source, target), (old_source, old_target) in zip(data.train_dataloader(), old, strict=True):
        assert torch.equal(source, old_source) and torch.equal(target, old_target)
    old = SentenceBatches(*old_translation_ids(data, "val"), 200, shuffle=False)
    for (source, target), (old_source, old_target) in zip(data.val_dataloader(), old, strict=True):
        assert torch.equal(source, old_source) and torch.equal(target, old_target)

    files = mapped_files(tmp_path / "cache")
    assert len(files) == 6, "one mapped Arrow file per text file"
    again = translation(corpus)  # a second run: every mapped file is found by its fingerprint and reused
    assert mapped_files(tmp_path / "cache") == files
    for split in data.ids:
        assert all(same_tensors(a, b) for a, b in zip(again.ids[split], data.ids[split]))


def test_the_datasets_path_gives_the_old_character_ids(shakespeare, tmp_path):
    path = shakespeare / "tinyshakespeare" / "input.txt"
    chars, splits = old_char_splits(path)
    data = CharData(shakespeare, batch_size=4, download=False)
    data.setup()
    assert data.chars == chars and list(data.splits) == ["train", "val"]
    assert all(data.splits[s].dtype == torch.long and torch.equal(data.splits[s], splits[s]) for s in splits)
    assert data.decode(data.splits["val"][-19:].tolist()) == "To be\nor not\nto be\n"  # CR LF and CR read as LF
    assert data.splits["train"][:5].tolist() == [0, 1, 2, 3, 4]  # "\n !$&": the alphabet's first, in sorted order
    files = mapped_files(tmp_path / "cache")
    again = CharData(shakespeare, batch_size=4, download=False)
    again.setup()
    assert mapped_files(tmp_path / "cache") == files and len(files) == 1
    assert all(torch.equal(again.splits[s], splits[s]) for s in splits)


def digest_of_ids(tensors) -> str:
    digest = hashlib.sha256()
    for ids in tensors:
        digest.update(str(ids.dtype).encode() + ids.numpy().tobytes() + b";")
    return digest.hexdigest()


def test_the_real_data_gives_the_ids_the_committed_results_were_made_with(tmp_path, monkeypatch):
    """sha256 of every id tensor of the real Multi30k (with the pinned BPE) and tiny-shakespeare, as the plain
    reading and encoding made them (computed with git 9ad29a6's code; ~10 s from an empty cache)."""
    data_dir = Path(SESSION_DATA or "/nonexistent")
    if not (data_dir / "multi30k" / "train.de.gz").exists() or not (data_dir / "tinyshakespeare").exists():
        pytest.skip("real-data test: set MILESTONES_DATA to a folder holding multi30k/ and tinyshakespeare/")
    monkeypatch.setenv("MILESTONES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(TranslationData, "optional", ())
    data = translation(data_dir)
    assert data.tokenizer_sha256 == TranslationData.bpe_sha256
    assert {split: [digest_of_ids(side) for side in data.ids[split]] for split in data.ids} == {
        "train": ["2a63cb25285b217de0a77e3e5a2a1d4fcce350767b34f9b8ccc66f001738c1f2",
                  "1e39f2d9dbb63ba3197943e80e0e375cca99e9a36dc188389f57a3bc183992b3"],
        "val": ["84fd65d986920973015dbf9aed9e8c6a6d9d3e9bc4c942d3e90f863cbae808e5",
                "41377e1dc0df63d4412327aac7c55f7dd06157f7f1a03ef844248d88538a617c"],
        "test_2016_flickr": ["5f07c3b9833dea3fa9b8b6523cc3bdf11f30cfc12694ead816d16a449a257215",
                             "580d5d0f532095ef19626568d989ba88da96b55ab166313a2a725cb751bfb1d1"],
    }  # fmt: skip
    chars = CharData(data_dir, batch_size=4, download=False)
    chars.setup()
    assert [digest_of_ids([chars.splits[s]]) for s in ("train", "val")] == [
        "ed8683ce664a71f46577e3abc862f677f98bada6a2a98e19fd432d9900daadb5",
        "487e74fd0b5fe671e7fd061e9f7c7a055a6760f296bcd1e3504b7b24698db59d",
    ]


# --- a damaged mapped cache is rebuilt --------------------------------------------------------------------------------
def change_one_id(file: Path) -> str:
    """One character id swapped in place: the same length, still a valid Arrow file (found by the ids around it)."""
    blob = file.read_bytes()
    ids = torch.tensor([sorted(ALPHABET).index(c) for c in ALPHABET[:8]], dtype=torch.int32).numpy().tobytes()
    assert blob.count(ids) == 1
    file.write_bytes(blob.replace(ids, ids[:4] + (64).to_bytes(4, "little") + ids[8:]))
    return f"{file}: sha256 differs from the one recorded when it was written (the file was altered)"


def truncate(file: Path) -> str:
    file.write_bytes(file.read_bytes()[:100])
    return f"{file}: sha256 differs from the one recorded when it was written (the file was altered)"


def delete_mapped(file: Path) -> str:
    file.unlink()
    return f"{file}: missing (its checksum record is there)"


def delete_record(file: Path) -> str:
    record = file.with_name(file.name + ".sha256")
    record.unlink()
    return f"{record}: missing (the record of the mapped datasets cache's checksum)"


@pytest.mark.parametrize("damage", [change_one_id, truncate, delete_mapped, delete_record])
def test_a_damaged_mapped_cache_is_noticed_in_one_line_and_mapped_again(damage, shakespeare, tmp_path, capsys):
    expected = CharData(shakespeare, batch_size=4, download=False)
    expected.setup()
    (file,) = mapped_files(tmp_path / "cache")
    capsys.readouterr()
    reason = damage(file)
    data = CharData(shakespeare, batch_size=4, download=False)
    data.setup()
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and out.splitlines() == [f"{reason}; mapping the text to ids again"]
    assert all(torch.equal(data.splits[s], expected.splits[s]) for s in ("train", "val"))
    CharData(shakespeare, batch_size=4, download=False).setup()
    assert capsys.readouterr().out == "", "the rebuilt cache is reused"


def test_a_damaged_text_cache_of_the_character_text_is_rebuilt_not_blamed_on_the_file(shakespeare, tmp_path, capsys):
    path = shakespeare / "tinyshakespeare" / "input.txt"
    CharData(shakespeare, batch_size=4, download=False).setup()
    (arrow,) = (p for p in (tmp_path / "cache" / "hf-datasets").rglob("*.arrow") if b"To be" in p.read_bytes())
    arrow.write_bytes(arrow.read_bytes().replace(b"To be", b"To Be"))  # the same length: a valid Arrow file
    capsys.readouterr()
    data = CharData(shakespeare, batch_size=4, download=False)
    data.setup()
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert out.splitlines() == [
        f"{path}: the datasets cache of this file holds another text than the file's; rebuilding it from the file"
    ]
    assert torch.equal(data.splits["val"], old_char_splits(path)[1]["val"])


def test_a_character_file_that_is_not_utf8_names_the_line(shakespeare, monkeypatch):
    path = shakespeare / "tinyshakespeare" / "input.txt"
    path.write_bytes(path.read_bytes() + b"caf\xe9\n")
    monkeypatch.setattr(CharData, "remote", RemoteFile(CharData.remote.relpath, md5sum(path), ()))
    with pytest.raises(DataError, match=r"input\.txt:\d+: not UTF-8 \(byte 0xe9 at column 4\)"):
        CharData(shakespeare, batch_size=4, download=False).setup()


# --- processes that read the same text at once ------------------------------------------------------------------------
def _setup_at_once(folder: Path, start, results) -> None:
    """One DDP rank's (or one parallel job's) first read of the character text: all start together, on a cold cache."""
    import contextlib
    import io

    start.wait()
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            data = CharData(folder, batch_size=4, download=False)
            data.setup()
        results.put((hashlib.sha256(data.splits["train"].numpy().tobytes()).hexdigest(), printed.getvalue()))
    except Exception as error:  # noqa: BLE001 - reported to the parent, which fails the test with it
        results.put((f"{error.__class__.__name__}: {error}", printed.getvalue()))


def test_processes_that_read_the_same_text_at_once_build_its_cache_once_and_all_succeed(shakespeare, monkeypatch):
    """In CI a DDP rank read a mapped cache file that its peer, seeing the file without its checksum record yet, had
    deleted to map again (FileNotFoundError). The checked caches are now built under a lock: every process gets the
    same ids, and none finds a half-written cache to complain about. A slow disk (checksums that take 0.2 s) widens
    the window between a mapped file and its record, as a loaded CI machine did."""
    import multiprocessing
    import time

    from benchmarks.tasks import textfiles

    def slow_sha256(path):
        time.sleep(0.2)
        return sha256_file(path)

    monkeypatch.setattr(textfiles, "sha256_file", slow_sha256)

    context = multiprocessing.get_context("fork")  # the monkeypatched task (the fixture's text) reaches the children
    n = 4
    start, results = context.Barrier(n), context.Queue()
    processes = [context.Process(target=_setup_at_once, args=(shakespeare, start, results)) for _ in range(n)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    digests = {digest for digest, _ in outcomes}
    assert len(digests) == 1 and len(next(iter(digests))) == 64, outcomes
    assert not any(printed for _, printed in outcomes), outcomes  # no "...; mapping the text to ids again"
