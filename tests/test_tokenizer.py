"""The BPE tokenizer: exact round trip, deterministic training, a cache keyed by the text and the settings."""

from __future__ import annotations

from benchmarks.tasks.tokenizer import BPESettings, cached_bpe, train_bpe

LINES = [
    "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.",
    "Several men in hard hats are operating a giant pulley system.",
    "Ein kleines Mädchen klettert in ein Spielhaus aus Holz.",
    "A man in a blue shirt is standing on a ladder cleaning windows.",
] * 25
SMALL = BPESettings(vocab_size=400, min_frequency=2)


def test_round_trip_is_exact_including_umlauts_and_unseen_characters():
    tokenizer = train_bpe(LINES, SMALL)
    for text in [*LINES[:4], "Ein Übermaß an ß, é, 日本 und 🙂 — never seen in training."]:
        assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_training_twice_gives_the_same_vocabulary():
    assert train_bpe(LINES, SMALL).to_str() == train_bpe(LINES, SMALL).to_str()


def tokenizer_files(cache) -> list:
    """The cached tokenizers, without their checksum records (``<name>-<key>.record.json``)."""
    return [p for p in (cache / "tokenizers").iterdir() if not p.name.endswith(".record.json")]


def test_cache_is_keyed_by_text_and_settings(tmp_path):
    a, sha_a = cached_bpe("multi30k", LINES, SMALL, cache=tmp_path)
    b, sha_b = cached_bpe("multi30k", LINES, SMALL, cache=tmp_path)
    assert sha_a == sha_b and len(tokenizer_files(tmp_path)) == 1
    _, sha_c = cached_bpe("multi30k", LINES[:-1], SMALL, cache=tmp_path)
    _, sha_d = cached_bpe("multi30k", LINES, BPESettings(vocab_size=350), cache=tmp_path)
    assert len({sha_a, sha_c, sha_d}) == 3 and len(tokenizer_files(tmp_path)) == 3
    assert a.get_vocab_size() <= 400 and a.token_to_id("<pad>") == 0
