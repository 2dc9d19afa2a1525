"""The fsdd-digits classification task and the committed spoken-digit classifier that hears generated digits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from benchmarks.scoring.sample_metrics import (
    FEATURE_NET_DIR,
    FeatureNetError,
    feature_net_provenance,
    load_feature_net,
)
from benchmarks.tasks import get_task
from benchmarks.tasks.fsdd_digits import SpokenDigitClasses
from benchmarks.tasks.heard_digits import CLASSIFIER, heard_as, heard_as_real, spoken_digit_classifier
from benchmarks.tasks.interfaces import CLASS_SCORES, EMBEDDING
from benchmarks.tasks.spoken_digits import FOLDER, WINDOW, mu_law_decode, mu_law_encode, quantise, to_window, windows
from lightning_modules.m5 import M5

LEVELS = mu_law_decode(torch.arange(256))  # the 256 values a μ-law quantised sample can take


def test_a_clip_sits_at_the_start_of_the_window_zero_padded_or_cut():
    short, exact, long = torch.linspace(-1, 1, 300), torch.full((WINDOW,), 0.5), torch.arange(WINDOW + 77) / 1e5
    assert torch.equal(to_window(short)[:300], short) and not to_window(short)[300:].any()
    assert torch.equal(to_window(exact), exact)
    assert torch.equal(to_window(long), long[:WINDOW])
    assert windows([short, long]).shape == (2, 1, WINDOW)


def test_inputs_are_mu_law_quantised_and_quantising_twice_changes_nothing():
    x = torch.linspace(-1, 1, 5001)
    once = quantise(x)
    assert torch.isin(once, LEVELS).all() and torch.equal(quantise(once), once)
    assert torch.equal(mu_law_encode(mu_law_decode(torch.arange(256))), torch.arange(256))  # generated clips unchanged
    assert (once - x).abs().max() < 0.03 and not torch.equal(once, x)  # the widest step, next to ±1, is 0.043


def test_the_tasks_batches_are_quantised_windows_of_the_same_split(tmp_path):
    data = SpokenDigitClasses.example(tmp_path, batch_size=8)
    data.prepare_data()
    data.setup("fit")
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == (8, 1, WINDOW) and x.dtype == torch.float32 and y.dtype == torch.long
    real = x[:, :, :400]  # the example's tones last 400-800 samples; the rest of the window is zeros
    assert torch.isin(real, LEVELS).all() and not x[:, :, 800:].any()
    assert {k: len(v[1]) for k, v in data.splits.items()} == {"train": 40, "val": 20, "test": 20}  # takes 10-11/5/0
    assert data.cut == {"train": 0, "val": 0, "test": 0}
    task = get_task("fsdd-digits")
    model = M5(**task.model_inputs).eval()
    for interface in (CLASS_SCORES, EMBEDDING):  # a classifier, and a feature net
        interface.check(model, task.model_inputs, (x, y))
    assert model.embed(x).shape == (8, 512)
    assert task.model_inputs == {"num_classes": 10, "input_shape": (1, WINDOW)} and task.metric.name == "error"
    judge = {"benchmarks/featurenets/fsdd-digits-m5.pt": f"sha256:{CLASSIFIER[1]}"}  # fsdd records its judge too
    assert {**task.declared_identity().required, **judge} == get_task("fsdd").declared_identity().required


def test_a_damaged_or_missing_classifier_is_a_clear_error(tmp_path):
    name, sha256 = CLASSIFIER
    with pytest.raises(FeatureNetError, match="missing.*milestones feature-net fsdd-digits"):
        spoken_digit_classifier(folder=tmp_path)
    damaged = bytearray((FEATURE_NET_DIR / name).read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (tmp_path / name).write_bytes(bytes(damaged))
    with pytest.raises(FeatureNetError, match=f"expected {sha256}.*milestones feature-net fsdd-digits"):
        load_feature_net(name, sha256, folder=tmp_path)


def test_the_committed_classifier_is_m5_and_says_how_it_was_made():
    net = spoken_digit_classifier()
    assert type(net.classifier).__name__ == "M5" and net.num_features == 512
    provenance = feature_net_provenance(CLASSIFIER[0])
    assert provenance["sha256"] == CLASSIFIER[1] and provenance["entry"] == "m5" and not provenance["code"]["git_dirty"]
    old = load_feature_net("mnist-lenet5-modern.pt", feature_net_provenance("mnist-lenet5-modern.pt")["sha256"])
    assert type(old.classifier).__name__ == "LeNet5Modern"  # a file made before class paths were saved


def test_heard_as_counts_into_a_confusion_matrix():
    clips, digits = torch.zeros(3, 500), torch.tensor([1, 1, 7])
    scores = heard_as(clips, digits)
    confusion = torch.tensor(scores["heard_confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == 3 and confusion[1].sum() == 2 and confusion[7].sum() == 1
    assert scores["heard_n"] == 3 and scores["heard_as_digit"] == pytest.approx(100 * confusion.trace().item() / 3)
    with pytest.raises(ValueError, match="clips"):
        heard_as(clips[0], digits)


@pytest.fixture(scope="module")
def fsdd_test_clips():
    value = os.environ.get("MILESTONES_DATA")
    if not value or not (Path(value) / FOLDER / "recordings").is_dir():
        pytest.skip("real-data test: set MILESTONES_DATA to a folder holding fsdd/recordings (CI uses ../shared/data)")
    data = SpokenDigitClasses(Path(value), batch_size=32, download=False)
    data.setup()
    return data


def test_real_test_recordings_are_heard_as_their_digit(fsdd_test_clips):
    data = fsdd_test_clips
    ceiling = heard_as_real(data)
    error = feature_net_provenance(CLASSIFIER[0])["test_error"]
    assert ceiling["real_heard_n"] == 300 and ceiling["real_heard_as_digit"] == pytest.approx(100 - error, abs=0.01)
    few = [c for c in data.clips["test"]][::30]  # 10 recordings, cut and padded by heard_as itself
    clips = [mu_law_decode(c.ids.long()) for c in few]
    padded = torch.zeros(len(clips), max(len(c) for c in clips))
    for i, clip in enumerate(clips):
        padded[i, : len(clip)] = clip
    scores = heard_as(padded, torch.tensor([c.digit for c in few]))
    assert scores["heard_as_digit"] >= 80
    assert data.cut == {"train": 14, "val": 4, "test": 2}
