"""Text tasks and models: the Transformer's masks and decoding, the GPT's causality, BLEU, the data modules' batches
and errors, and both families through the harness on small fixtures."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
import string

import pytest
import torch

from benchmarks.core.results import artifact_path, read_result
from benchmarks.judging.leaderboard import budget
from benchmarks.running.harness import run_benchmark
from benchmarks.scoring.text_metrics import bleu, chrf
from benchmarks.tasks import charlm, translation
from benchmarks.tasks.charlm import CharData, WindowBatches
from benchmarks.tasks.files import DataError, RemoteFile, md5sum
from benchmarks.tasks.translation import BOS, EOS, PAD, SentenceBatches, TranslationData, pad
from lightning_modules.gpt import GPT
from lightning_modules.transformer import Transformer, sinusoidal_positions


def tiny_transformer(**overrides) -> Transformer:
    torch.manual_seed(0)
    args = dict(vocab_size=40, n_layers=2, d_model=32, n_heads=4, d_ff=64, max_extra_length=6) | overrides
    return Transformer(**args).eval()


def sources(lengths=(5, 3, 7, 1)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return pad([torch.cat([torch.randint(3, 40, (n,), generator=generator), torch.tensor([EOS])]) for n in lengths])


# --- the Transformer --------------------------------------------------------------------------------------------------
def test_decoder_is_causal_and_ignores_padded_source_positions():
    model = tiny_transformer()
    source, target = sources(), torch.randint(3, 40, (4, 8))
    logits = model(source, target)
    changed = target.clone()
    changed[:, 5] = (changed[:, 5] + 1 - 3) % 37 + 3
    after = model(source, changed)
    assert torch.equal(logits[:, :5], after[:, :5]), "positions before 5 must not see token 5"
    assert not torch.allclose(logits[:, 5:], after[:, 5:]), "positions from 5 on do see it"
    longer = torch.cat([source, torch.full((4, 3), PAD)], dim=1)  # more padding changes nothing
    torch.testing.assert_close(model(longer, target), logits, rtol=1e-5, atol=1e-5)


def test_beam_of_one_is_greedy_and_outputs_respect_the_length_limit():
    model = tiny_transformer()
    source = sources()
    greedy = model.greedy(source)
    assert greedy == model.beam_search(source, beam_size=1)
    limits = ((source != PAD).sum(1) + model.hparams.max_extra_length).tolist()
    for ids, limit in zip(model.beam_search(source, beam_size=4), limits):
        assert len(ids) < limit and not {PAD, BOS, EOS} & set(ids)


def test_beam_search_finds_a_likelier_translation_than_greedy_when_greedy_is_short_sighted():
    """A decoder whose first step prefers token 3 (which then leads nowhere good) over 4 (which leads to a certain
    end): beam 2 keeps both and must choose 4 → </s>; greedy takes 3."""
    model = tiny_transformer(max_extra_length=3, length_penalty=0.0)
    table = {1: {3: math.log(0.6), 4: math.log(0.4)}, 3: {5: math.log(0.5), 6: math.log(0.5)}, 4: {EOS: 0.0}}

    def next_logits(last, state):  # the next-token distribution depends on the last token only
        out = torch.full((len(last), 40), -1e9)
        for row, token in enumerate(last.tolist()):
            for following, logp in table.get(token, {EOS: 0.0}).items():
                out[row, following] = logp
        return out

    model.next_logits, model.reorder = next_logits, (lambda state, parent: None)
    source = sources((2,))
    assert model.greedy(source) == [[3, 5]]  # 0.6 · 0.5 = 0.3
    assert model.beam_search(source, beam_size=2) == [[4]]  # 0.4 · 1.0 = 0.4


def test_cached_decoding_step_by_step_equals_decoding_the_whole_prefix():
    model = tiny_transformer()
    source, prefix = sources(), torch.randint(3, 40, (4, 9))
    prefix[:, 0] = BOS
    memory, mask = model.encode(source)
    full = model.logits(model.decode(prefix, memory, mask))  # (4, 9, V)
    state = model.start_decoding(memory, mask)
    steps = torch.stack([model.next_logits(prefix[:, t], state) for t in range(9)], dim=1)
    torch.testing.assert_close(steps, full, rtol=1e-5, atol=1e-5)
    order = torch.tensor([2, 2, 0, 1])  # a beam step that keeps row 2 twice: the caches follow their rows
    model.reorder(state, order)
    nxt = torch.randint(3, 40, (4, 1))
    extended = torch.cat([prefix[order], nxt], dim=1)
    expected = model.logits(model.decode(extended, memory[order], mask[order]))[:, -1]
    state["memory_mask"] = mask[order]
    for cache in state["caches"]:
        cache["memory"] = tuple(x[order] for x in cache["memory"])
    torch.testing.assert_close(model.next_logits(nxt[:, 0], state), expected, rtol=1e-5, atol=1e-5)


def test_positions_are_the_papers_sinusoids():
    table = sinusoidal_positions(50, 16)
    assert table[0, 0::2].abs().max() == 0 and torch.equal(table[0, 1::2], torch.ones(8))
    assert math.isclose(float(table[7, 2]), math.sin(7 / 10000 ** (2 / 16)), rel_tol=1e-6)
    assert math.isclose(float(table[7, 3]), math.cos(7 / 10000 ** (2 / 16)), rel_tol=1e-6)


def test_learning_rate_follows_the_warmup_then_inverse_square_root():
    model = tiny_transformer(warmup_steps=10, lr_factor=2.0)
    schedule = model.configure_optimizers()["lr_scheduler"]["scheduler"]
    rates = [schedule.lr_lambdas[0](step) for step in range(40)]
    assert max(range(40), key=rates.__getitem__) == 9, "peak at the end of warm-up (step 10, counting from 1)"
    assert math.isclose(rates[9], 2.0 * 32**-0.5 * 10**-0.5) and math.isclose(rates[39], 2.0 * 32**-0.5 * 40**-0.5)


# --- the GPT ----------------------------------------------------------------------------------------------------------
def test_gpt_is_causal_and_refuses_sequences_longer_than_its_context():
    torch.manual_seed(0)
    model = GPT(vocab_size=65, context=16, n_layers=2, n_heads=2, width=32, dropout=0.0).eval()
    ids = torch.randint(0, 65, (3, 16))
    changed = ids.clone()
    changed[:, 9] = (changed[:, 9] + 1) % 65
    before, after = model(ids), model(changed)
    assert torch.equal(before[:, :9], after[:, :9]) and not torch.allclose(before[:, 9:], after[:, 9:])
    with pytest.raises(ValueError, match="longer than the context"):
        model(torch.zeros(1, 17, dtype=torch.long))
    generator = torch.Generator().manual_seed(0)
    out = model.generate(ids[:1, :4], 30, temperature=0.8, top_k=5, generator=generator)
    assert out.shape == (1, 34) and torch.equal(out[:, :4], ids[:1, :4]), "generation runs past the context"


# --- metrics ----------------------------------------------------------------------------------------------------------
def test_bleu_and_chrf_of_the_references_against_themselves_are_100():
    references = ["A man in an orange hat starring at something.", "Two dogs play in the snow.", "A girl runs."]
    score, signature = bleu(references, references)
    assert score == pytest.approx(100.0) and "tok:13a" in signature and "case:mixed" in signature
    assert chrf(references, references)[0] == pytest.approx(100.0)
    assert bleu(["Two cats sleep."] * 3, references)[0] < 10
    with pytest.raises(ValueError, match="2 hypotheses for 3 references"):
        bleu(references[:2], references)


# --- data -------------------------------------------------------------------------------------------------------------
def test_sentence_batches_cover_each_pair_once_an_epoch_reproducibly():
    generator = torch.Generator().manual_seed(0)
    source = [torch.randint(3, 9, (int(n),), generator=generator) for n in torch.randint(1, 30, (500,))]
    target = [torch.tensor([BOS, i, EOS]) for i in range(500)]  # the target names its pair
    epoch = [0]
    batches = SentenceBatches(source, target, 32, shuffle=True, seed=3, epoch=lambda: epoch[0])
    seen = [int(i) for _, t in batches for i in t[:, 1]]
    assert sorted(seen) == list(range(500)) and len(batches) == 16
    assert seen == [int(i) for _, t in batches for i in t[:, 1]], "an epoch's order is a function of (seed, epoch)"
    epoch[0] = 1
    assert seen != [int(i) for _, t in batches for i in t[:, 1]]
    widths = [s.shape[1] for s, _ in batches]
    assert sum(widths) / len(widths) < 25, "length bucketing keeps padding down (random batches would pad to ~29)"


def pairs_of_random_lengths(n: int = 500) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``n`` pairs of independent random source and target lengths; a target's second id names its pair."""
    generator = torch.Generator().manual_seed(0)
    source_lengths = torch.randint(1, 30, (n,), generator=generator)
    source = [torch.randint(3, 9, (int(k),), generator=generator) for k in source_lengths]
    lengths = torch.randint(0, 30, (n,), generator=generator)
    target = [torch.tensor([BOS, i, *([5] * int(k)), EOS]) for i, k in enumerate(lengths)]
    return source, target


def test_sentence_batches_without_a_token_budget_are_as_before():
    """The default (sentence-count) batches, byte for byte: the committed transformer result was trained on them."""
    source, target = pairs_of_random_lengths()
    digest, epoch = hashlib.sha256(), [0]
    for seed in (0, 3):
        batches = SentenceBatches(source, target, 32, shuffle=True, seed=seed, epoch=lambda: epoch[0])
        for epoch[0] in (0, 1, 7):
            digest.update(str(len(batches)).encode())
            for s, t in batches:
                digest.update(s.numpy().tobytes() + t.numpy().tobytes())
    # the SentenceBatches of b40287e, before max_tokens existed, gives this digest
    assert digest.hexdigest() == "b3d5fdbbde2983dbaad20496ccb794de0af649ff4a1945d8a24cc83bf7323b3c"


def test_token_budget_batches_cover_each_pair_once_within_the_budget_reproducibly():
    source, target = pairs_of_random_lengths()
    source[7] = torch.randint(3, 9, (250,))  # longer than the budget on its own: a batch of one
    epoch = [0]
    batches = SentenceBatches(source, target, 10, shuffle=True, seed=3, epoch=lambda: epoch[0], max_tokens=200)
    by_epoch = {}
    for epoch[0] in (0, 1, 2):
        listed = list(batches)
        assert len(batches) == len(listed), "len is this epoch's number of batches"
        seen = [int(i) for _, t in listed for i in t[:, 1]]
        assert sorted(seen) == list(range(500)), "every pair exactly once an epoch"
        for s, t in listed:
            assert (s.numel() <= 200 and t[:, 1:].numel() <= 200) or len(s) == 1, "padded tokens within the budget"
        assert [s.shape for s, _ in listed if s.shape[1] == 250] == [(1, 250)]
        padded = [max(s.numel(), t[:, 1:].numel()) for s, t in listed if len(s) > 1]
        assert sum(padded) / len(padded) > 0.85 * 200, "filled close to the budget (sorted by length, greedily)"
        by_epoch[epoch[0]] = seen
    counts = []
    for epoch[0] in (0, 1, 2, 9):
        counts.append(len(batches))
    assert len(set(counts)) == 1, "the same number of batches every epoch (Lightning reads it once a fit)"
    epoch[0] = 1
    assert [int(i) for _, t in batches for i in t[:, 1]] == by_epoch[1], "an epoch's batches: (seed, epoch) alone"
    assert by_epoch[0] != by_epoch[1]
    other_seed = SentenceBatches(source, target, 10, shuffle=True, seed=4, epoch=lambda: 1, max_tokens=200)
    assert [int(i) for _, t in other_seed for i in t[:, 1]] != by_epoch[1]
    with pytest.raises(ValueError, match="one pool"):  # 50 × 9 < 500: the count could change between epochs
        SentenceBatches(source, target, 9, shuffle=True, max_tokens=200)
    with pytest.raises(ValueError, match="training"):
        SentenceBatches(source, target, 10, shuffle=False, max_tokens=200)


def test_window_batches_train_randomly_and_evaluate_every_position_once():
    data = torch.arange(1000)
    evaluation = list(WindowBatches(data, batch_size=7, context=10, steps=None))
    targets = torch.cat([y.reshape(-1) for _, y in evaluation])
    assert torch.equal(targets, torch.arange(1, 991)), "non-overlapping windows: each next character once"
    x, y = next(iter(WindowBatches(data, batch_size=4, context=10, steps=3, seed=1)))
    assert x.shape == (4, 10) and torch.equal(y, x + 1)
    assert len(WindowBatches(data, 4, 10, steps=3)) == 3
    with pytest.raises(DataError, match="cannot fill one window"):
        WindowBatches(data[:10], 4, 10, steps=3)


def write_gz(path, lines: list[str] | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode()
    with gzip.open(path, "wb") as f:
        f.write(payload)


WORDS = {
    "de": "ein mann eine frau zwei hunde spielen im schnee auf der straße mit einem ball rot blau".split(),
    "en": "a man a woman two dogs play in the snow on the street with a ball red blue".split(),
}


@pytest.fixture
def small_multi30k(tmp_path, monkeypatch):
    """Word-for-word 'translations' (German word i ↔ English word i): 300 train, 20 val, 20 test 2016 pairs."""
    folder = tmp_path / "data"
    rng = random.Random(0)
    for split, n in (("train", 300), ("val", 20), ("test_2016_flickr", 20)):
        rows = [[rng.randrange(len(WORDS["de"])) for _ in range(rng.randint(2, 7))] for _ in range(n)]
        for lang in ("de", "en"):
            write_gz(folder / "multi30k" / f"{split}.{lang}.gz", [" ".join(WORDS[lang][i] for i in r) for r in rows])
    monkeypatch.setattr(TranslationData, "md5", {p.name: md5sum(p) for p in (folder / "multi30k").iterdir()})
    monkeypatch.setattr(TranslationData, "optional", ())
    monkeypatch.setenv("MILESTONES_CACHE", str(tmp_path / "cache"))
    return folder


def test_translation_data_names_every_missing_file_at_once(tmp_path):
    with pytest.raises(DataError) as info:
        TranslationData(tmp_path, batch_size=8, download=False).prepare_data()
    message = str(info.value)
    assert "6 files are missing" in message and "\n" not in message
    for split in TranslationData.required:
        assert f"multi30k/{split}.de.gz" in message and f"multi30k/{split}.en.gz" in message
    assert not list(tmp_path.iterdir()), "nothing is created in the data folder"


def setup_data(folder) -> TranslationData:
    data = TranslationData(folder, batch_size=8, download=False)
    data.prepare_data()
    data.setup()
    return data


def test_translation_data_round_trips_and_records_its_tokenizer(small_multi30k):
    data = setup_data(small_multi30k)
    source, target = data.ids["val"]
    assert source[0][-1] == EOS and target[0][0] == BOS and target[0][-1] == EOS
    assert data.decode([t[1:-1].tolist() for t in target]) == data.text["val"][1], "detokenised text is the raw text"
    identity = data.identity()
    assert identity["multi30k/train.de.gz"].startswith("md5:")
    assert identity["tokenizer (byte-level BPE, 8000)"] == f"sha256:{data.tokenizer_sha256}"
    fresh = TranslationData(small_multi30k, batch_size=8, download=False)
    assert fresh.identity() == identity, "complete without setup (a --resume that reuses finished seeds needs it)"
    batch = next(iter(data.train_dataloader()))
    assert data.batch_units(batch) == int((batch[1][:, 1:] != PAD).sum()) > 0


def test_translation_data_batches_training_by_tokens_only_when_asked(small_multi30k):
    data = TranslationData(small_multi30k, batch_size=8, download=False, max_tokens=60)
    data.prepare_data()
    data.setup()
    train = data.train_dataloader()
    assert train.max_tokens == 60 and len(train) == len(list(train)) < 300 // 8
    assert all(max(s.numel(), t[:, 1:].numel()) <= 60 for s, t in train)
    assert data.val_dataloader().max_tokens is None and len(data.val_dataloader()) == 1  # 20 pairs, 200 a batch
    assert setup_data(small_multi30k).train_dataloader().max_tokens is None  # 8-pair batches by default


@pytest.mark.parametrize(
    "damage,match",
    [
        (lambda f: write_gz(f / "val.en.gz", ["a man"] * 19), r"val\.de\.gz has 20 lines but .*val\.en\.gz has 19"),
        (lambda f: write_gz(f / "val.en.gz", ["a man"] * 4 + [""] + ["a man"] * 15), r"val\.en\.gz:5: empty line"),
        (lambda f: write_gz(f / "train.de.gz", b"ein mann\nein \xff\n" * 150), r"train\.de\.gz:2: .*UTF-8"),
    ],
    ids=["line-count-mismatch", "empty-line", "non-utf8"],
)
def test_bad_corpus_lines_are_clear_errors_naming_file_and_line(small_multi30k, monkeypatch, damage, match):
    damage(small_multi30k / "multi30k")
    monkeypatch.setattr(TranslationData, "md5", {p.name: md5sum(p) for p in (small_multi30k / "multi30k").iterdir()})
    with pytest.raises(DataError, match=match):
        setup_data(small_multi30k)


def test_a_corpus_file_with_another_checksum_is_refused(small_multi30k):
    write_gz(small_multi30k / "multi30k" / "train.en.gz", ["tampered"] * 300)
    with pytest.raises(DataError, match="train.en.gz"):
        setup_data(small_multi30k)


# --- through the harness ----------------------------------------------------------------------------------------------
def test_transformer_through_the_harness_is_deterministic_and_saves_translations(
    quick, small_multi30k, tmp_path, leaderboard_of
):
    opts = dict(task="multi30k-de-en", data_dir=str(small_multi30k), max_epochs=2, wandb="offline")
    a, path = run_benchmark("transformer", quick(**opts, output_dir=str(tmp_path / "a")))
    b, _ = run_benchmark("transformer", quick(**opts | {"wandb": "off"}, output_dir=str(tmp_path / "b")))
    seed = a.seeds[0]
    assert a.status == "ok" and seed.metrics == b.seeds[0].metrics, "the same seed twice: the same metrics"
    assert {"bleu", "bleu_greedy", "chrf", "loss", "ppl"} <= set(seed.metrics)
    assert 0 <= seed.metrics["bleu"] <= 100 and seed.metrics["ppl"] == pytest.approx(math.exp(seed.metrics["loss"]))
    assert "tok:13a" in seed.notes["bleu_signature"] and "nc:6" in seed.notes["chrf_signature"]
    assert [h["val/bleu"] for h in seed.val_history] == [h["val/bleu"] for h in b.seeds[0].val_history]
    shown = artifact_path(path, 0, "translations.md").read_text()
    assert shown.count("- reference:") == 10 and "de: " in shown
    assert a.dataset["tokenizer (byte-level BPE, 8000)"].startswith("sha256:")
    assert read_result(path).seeds[0].notes == seed.notes, "notes survive the result file"
    assert seed.samples_per_s and a.samples_per_s == seed.samples_per_s, "target tokens per second"
    text = leaderboard_of(a, path, tmp_path / "board")
    row = next(line for line in text.splitlines() if line.startswith("| 1 | transformer |"))
    assert "27.3 (paper, wmt14-en-de†)" in row and "bleu_greedy " in row and "chrf " in row
    assert "/s (target tokens)" in row and "[translations.md](board/multi30k-de-en/transformer/" in row
    assert f"Scored with: bleu_signature `{seed.notes['bleu_signature']}`" in text


@pytest.fixture
def small_shakespeare(tmp_path, monkeypatch):
    """20,000 characters over the task's 65-character alphabet, in the data folder's layout (checksum patched)."""
    alphabet = "\n !$&',-.3:;?" + string.ascii_letters
    rng = random.Random(0)
    text = "".join(alphabet) + "".join(rng.choice("etaoin shrdlu\n") for _ in range(20_000))
    path = tmp_path / "data" / "tinyshakespeare" / "input.txt"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    monkeypatch.setattr(CharData, "remote", RemoteFile(CharData.remote.relpath, md5sum(path), ()))
    return tmp_path / "data"


def test_gpt_char_through_the_harness_saves_a_sample_and_reports_bits_per_character(quick, small_shakespeare):
    result, path = run_benchmark(
        "gpt-char", quick(data_dir=str(small_shakespeare), max_epochs=2, limit_train_batches=20)
    )
    metrics = result.seeds[0].metrics
    assert result.status == "ok" and metrics["bpc"] == pytest.approx(metrics["loss"] / math.log(2))
    assert metrics["loss"] < math.log(65), "20 steps beat a uniform guess over 65 characters"
    sample = artifact_path(path, 0, "sample.txt").read_text()
    assert len(sample) == 500 and set(sample) <= set("\n !$&',-.3:;?" + string.ascii_letters)
    assert result.samples_per_s > 0 and json.loads(path.read_text())["config"]["data"]["init_args"]["context"] == 64
    assert budget(result.config) == "2 epochs (500 steps)"


def test_a_wrong_alphabet_is_a_clear_error(small_shakespeare, monkeypatch):
    path = small_shakespeare / "tinyshakespeare" / "input.txt"
    path.write_text(path.read_text() + "é")
    monkeypatch.setattr(CharData, "remote", RemoteFile(CharData.remote.relpath, md5sum(path), ()))
    data = CharData(small_shakespeare, batch_size=4, download=False)
    with pytest.raises(DataError, match="66 distinct characters, the task expects 65"):
        data.setup()


def test_text_task_modules_register_their_tasks():
    assert [t.name for t in translation.TASKS] == ["multi30k-de-en"]
    assert [t.name for t in charlm.TASKS] == ["shakespeare-char"]
