"""Generative tasks: the sample metrics on known cases, the committed feature classifier, GANs through the harness."""

from __future__ import annotations

import dataclasses
import gzip
import math
import shutil

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from benchmarks.core.results import artifact_path
from benchmarks.judging.leaderboard import render_markdown
from benchmarks.judging.validate import validate
from benchmarks.running.harness import run_benchmark
from benchmarks.scoring.sample_metrics import (
    FEATURE_NET_DIR,
    FeatureNetError,
    feature_net_provenance,
    inception_score,
    load_feature_net,
    parzen_evaluate,
    parzen_log_likelihoods,
)
from benchmarks.tasks import generative
from benchmarks.tasks.generative import FashionMNISTGenerativeData, MNISTGenerativeData


def test_parzen_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    centres, points = rng.random((7, 5)), rng.random((4, 5))
    sigmas = [0.1, 0.3, 1.0]
    ours = parzen_log_likelihoods(torch.tensor(points), torch.tensor(centres), sigmas).numpy()
    for i, s in enumerate(sigmas):
        # log (1/M) Σ_j N(x; μ_j, σ²I), written out term by term
        log_terms = [
            -0.5 * ((points - c) ** 2).sum(1) / s**2 - 5 * math.log(s * math.sqrt(2 * math.pi)) for c in centres
        ]
        direct = logsumexp(np.stack(log_terms), axis=0) - math.log(len(centres))
        np.testing.assert_allclose(ours[i], direct, rtol=0, atol=1e-4)  # float32 distances


def test_parzen_picks_sigma_on_validation_and_reports_a_standard_error():
    torch.manual_seed(0)
    centres = torch.randn(400, 2) * 0.3
    val, test = torch.randn(300, 2) * 0.3, torch.randn(300, 2) * 0.3
    result = parzen_evaluate(centres, val, test, [0.01, 0.1, 1.0, 10.0])
    assert result["sigma"] == 0.1  # too narrow overfits the centres, too wide ignores them
    ll = parzen_log_likelihoods(test, centres, [0.1])[0]
    assert result["ll"] == pytest.approx(float(ll.mean())) and result["se"] == pytest.approx(float(ll.std() / 300**0.5))


@pytest.fixture(scope="module")
def net():
    return load_feature_net(*MNISTGenerativeData.feature_net)


def digit_like(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    """Blobs of ink at random places: enough structure for the classifier's features to vary."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, 28, 28)
    for i in range(n):
        r, c = torch.randint(4, 20, (2,), generator=g)
        images[i, 0, r : r + 8, c : c + 4] = 1.0
    return (images + shift).clamp(0, 1)


def test_frechet_distance_is_zero_for_identical_sets_and_grows_with_a_shift(net):
    from benchmarks.scoring.sample_metrics import frechet_distance

    a = digit_like(300, 0)
    assert abs(frechet_distance(net, a, a.clone())) < 1e-3
    same_kind = frechet_distance(net, a, digit_like(300, 1))
    shifted = frechet_distance(net, a, digit_like(300, 1, shift=0.4))
    assert 0 < same_kind < shifted


class OneHot(torch.nn.Module):
    """A 'classifier' that is certain: image i belongs to class labels[i]."""

    def __init__(self, labels):
        super().__init__()
        self.labels = labels

    def logits(self, images):
        index = images[:, 0, 0, 0].long()
        return torch.nn.functional.one_hot(self.labels[index], 10).float() * 50


def test_inception_score_counts_confident_distinct_classes():
    images = torch.arange(1000).float().view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    diverse = OneHot(torch.arange(1000) % 10)
    collapsed = OneHot(torch.zeros(1000, dtype=torch.long))
    assert inception_score(diverse, images, splits=2)[0] == pytest.approx(10, rel=0.01)
    assert inception_score(collapsed, images, splits=2)[0] == pytest.approx(1, rel=1e-3)


def test_feature_net_missing_or_altered_is_a_clear_error(tmp_path):
    name, sha256 = MNISTGenerativeData.feature_net
    with pytest.raises(FeatureNetError, match="missing.*milestones feature-net mnist"):
        load_feature_net(name, sha256, folder=tmp_path)
    altered = tmp_path / name
    altered.write_bytes((FEATURE_NET_DIR / name).read_bytes() + b"\0")
    with pytest.raises(FeatureNetError, match=f"expected {sha256}"):
        load_feature_net(name, sha256, folder=tmp_path)


@pytest.mark.parametrize("data_class,bound", [(MNISTGenerativeData, 1.5), (FashionMNISTGenerativeData, 12.0)])
def test_committed_feature_net_classifies_real_test_images(data_class, bound, real_data_dir):
    data = data_class(real_data_dir, 100, download=False)
    data.setup()
    net = load_feature_net(*data.feature_net)
    images, labels = data.images("test"), data.splits["test"][1]
    with torch.no_grad():
        error = (net.logits(images).argmax(1) != labels).float().mean().item() * 100
    provenance = feature_net_provenance(data.feature_net[0])
    assert error == pytest.approx(provenance["test_error"], abs=0.01) and error < bound
    assert provenance["sha256"] == data.feature_net[1] and not provenance["code"]["git_dirty"]


# --- GANs through the harness on a small MNIST-format fixture --------------------------------------------------------


def idx_gz(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def small_mnist(tmp_path, monkeypatch):
    """600 training and 200 test 'digits' in MNIST's files (checksums patched); 200 validate, 500 samples scored."""
    folder = tmp_path / "data"
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 600), ("t10k", 200)):
        images = (digit_like(n, seed=n)[:, 0].numpy() * 255).astype(np.uint8)
        idx_gz(folder / "MNIST/raw" / f"{prefix}-images-idx3-ubyte.gz", images)
        idx_gz(folder / "MNIST/raw" / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    from benchmarks.tasks.files import md5sum

    md5 = {p.name: md5sum(p) for p in (folder / "MNIST/raw").iterdir()}
    monkeypatch.setattr(MNISTGenerativeData, "md5", md5)
    monkeypatch.setattr(MNISTGenerativeData, "val_size", 200)
    tasks = [dataclasses.replace(t, n_samples=500) for t in generative.TASKS]
    monkeypatch.setattr(generative, "TASKS", tasks)
    generative._REFERENCES.clear()
    return folder


@pytest.mark.parametrize("entry", ["gan", "dcgan"])
def test_gan_through_the_harness_is_deterministic_and_saves_a_grid(entry, quick, small_mnist, tmp_path):
    opts = dict(task="mnist-gen", data_dir=str(small_mnist), max_epochs=2, limit_train_batches=3)
    a, path = run_benchmark(entry, quick(**opts, output_dir=str(tmp_path / "a")))
    b, _ = run_benchmark(entry, quick(**opts, output_dir=str(tmp_path / "b")))
    assert a.status == "ok" and a.seeds[0].metrics == b.seeds[0].metrics, "the same seed twice: the same metrics"
    metrics = a.seeds[0].metrics
    assert {"fd", "is", "parzen_ll", "parzen_ll_se", "parzen_sigma", "fd_real", "is_real"} <= set(metrics)
    assert metrics["fd"] > metrics["fd_real"] >= 0, "two epochs on three batches do not beat real data"
    assert [h["val/fd"] for h in a.seeds[0].val_history] == [h["val/fd"] for h in b.seeds[0].val_history]
    grid = artifact_path(path, 0, "samples.png")
    assert a.seeds[0].artifacts == ["samples.png"] and grid.exists() and grid.read_bytes()[:4] == b"\x89PNG"
    assert "benchmarks/featurenets/mnist-lenet5-modern.pt" in a.dataset
    assert len(list((tmp_path / "a").rglob("samples/epoch-*.png"))) == 2, "a grid per epoch in the run folder"


def test_gan_logs_its_sample_grids_to_wandb_offline(quick, small_mnist, tmp_path, capfd):
    result, _ = run_benchmark(
        "gan", quick(task="mnist-gen", data_dir=str(small_mnist), limit_train_batches=2, wandb="offline")
    )
    assert "anonymous setting" not in capfd.readouterr().err, "no W&B warning about a setting we never chose"
    run_id = result.seeds[0].wandb_run.split("/")[-1]
    run_dir = next((tmp_path / "runs" / "wandb").rglob(f"*{run_id}"))
    assert list(run_dir.rglob("media/images/samples_*.png")), "the grid is in the offline W&B run"


class PoisonGenerator(__import__("lightning").Callback):
    """NaN generator weights: during training (the loss turns NaN) or only after it (the samples do)."""

    def __init__(self, when: str) -> None:
        self.when = when

    def poison(self, pl_module):
        with torch.no_grad():
            pl_module.generator[0].weight.fill_(float("nan"))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.when == "training" and batch_idx == 1:
            self.poison(pl_module)

    def on_validation_epoch_start(self, trainer, pl_module):
        if self.when == "samples":
            self.poison(pl_module)


@pytest.mark.parametrize("when,reason", [("training", "training loss is nan"), ("samples", "test fd is nan")])
def test_a_gan_that_collapses_to_nan_fails_and_is_not_ranked(when, reason, quick, small_mnist, tmp_path):
    options = quick(
        task="mnist-gen", data_dir=str(small_mnist), limit_train_batches=3, callbacks=[PoisonGenerator(when)]
    )
    result, path = run_benchmark("gan", options)
    assert result.status == "failed" and result.aggregate is None and reason in result.seeds[0].failure
    result.smoke = False  # as if it were a full run: listed under failed runs, never ranked
    fake = tmp_path / "leaderboard" / "mnist-gen" / "gan" / path.name
    fake.parent.mkdir(parents=True)
    fake.write_text(result.model_dump_json())
    text = render_markdown(tmp_path / "leaderboard")
    assert "## Failed runs" in text and "## mnist-gen" not in text


def test_result_with_a_missing_grid_does_not_validate(quick, small_mnist, tmp_path):
    result, path = run_benchmark("gan", quick(task="mnist-gen", data_dir=str(small_mnist), limit_train_batches=2))
    shutil.rmtree(path.with_suffix(""))
    problems, _ = validate([str(path)], results_dir=path.parents[2])
    assert any("samples.png is missing" in p for p in problems)


def test_leaderboard_generative_table_shows_grid_paper_measure_and_real_data(
    quick, small_mnist, tmp_path, leaderboard_of
):
    result, path = run_benchmark("gan", quick(task="mnist-gen", data_dir=str(small_mnist), limit_train_batches=2))
    text = leaderboard_of(result, path, tmp_path / "board")
    row = next(line for line in text.splitlines() if line.startswith("| 1 | gan |"))
    assert "225 (paper, parzen_ll‡)" in row and "<img src=" in row and "seed-0/samples.png" in row
    assert "parzen_ll " in row and "is " in row, "the paper's measure and the IS under 'also measured'"
    assert f"fd_real {result.seeds[0].metrics['fd_real']:.4g}" in text
