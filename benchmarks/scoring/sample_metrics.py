"""Metrics computed from generated samples: Parzen-window log-likelihood, and the Fréchet distance and Inception Score
in the features of a fixed classifier.

- **Parzen window** (Breuleux et al. 2011; the protocol of Goodfellow et al. 2014, ``parzen_ll.py``): an isotropic
  Gaussian of width σ on every generated sample, σ chosen on validation images over a log-spaced grid, then the mean
  log-likelihood of the test images and its standard error. It is known to be a poor judge of sample quality (Theis,
  van den Oord & Bethge 2016, "A note on the evaluation of generative models"): a blurry model can beat a sharp one.
- **Fréchet distance** (Heusel et al. 2017) and **Inception Score** (Salimans et al. 2016), computed by torchmetrics,
  but in the features of a small MNIST classifier instead of Inception-v3 (a download, and trained on photographs).
  The classifier is trained once by the suite (``milestones feature-net``), its weights are committed with their
  sha256, and that checksum goes into every result: a missing or altered file is an error, never a silent retrain.

The same holds for every committed feature net (``FEATURE_NETS``: task → the entry trained on it), among them the
spoken-digit classifier that hears the WaveNet entry's samples (``tasks/heard_digits.py``). A file saves the class
path of its model; the two LeNet-5 files made before that have none and are LeNet5Modern.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from benchmarks.core.checksums import sha256_file

FEATURE_NET_DIR = Path(__file__).resolve().parents[1] / "featurenets"  # benchmarks/featurenets
# task → the registered entry whose seed-0 run on it is exported as <task>-<entry>.pt (milestones feature-net <task>)
FEATURE_NETS = {"mnist": "lenet5-modern", "fashion-mnist": "lenet5-modern", "fsdd-digits": "m5",
                "imagenette-224re": "style-vgg"}  # fmt: skip
LEGACY_CLASS_PATH = "lightning_modules.lenet_modern.LeNet5Modern"  # the model of files that name none


class FeatureNetError(RuntimeError):
    """The committed feature classifier is missing or does not match its checksum."""


class FeatureNet(nn.Module):
    """A trained classifier with the ``Embedding`` interface: its ``embed`` features for the Fréchet distance
    (``forward``) and its class logits for the Inception Score (``logits``). Inputs are what the classifier's task
    feeds it: images in [0, 1], (B, 1, 28, 28), for ``lenet5-modern``; waveforms in [-1, 1], (B, 1, 8000), for
    ``m5``."""

    num_features = 84  # lenet5-modern's; a classifier that says its own (m5: 512) replaces it

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False)
        self.num_features = getattr(classifier, "num_features", FeatureNet.num_features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.embed(images.float())  # (B, num_features)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(images.float())  # (B, 10)


class Logits(nn.Module):
    """The feature net's class logits as a module, the form torchmetrics' InceptionScore takes."""

    def __init__(self, net: FeatureNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.logits(images)


def feature_net_task(filename: str) -> str:
    """The task a committed file was trained on, from its name ``<task>-<entry>.pt``."""
    for task, entry in FEATURE_NETS.items():
        if filename == f"{task}-{entry}.pt":
            return task
    return filename.split("-lenet")[0]


def load_feature_net(filename: str, sha256: str, folder: Path = FEATURE_NET_DIR) -> FeatureNet:
    """The committed classifier ``folder/filename``, after checking its sha256; loaded with ``weights_only=True``,
    as the class its file names (``class_path``, a lightning_modules class; LeNet5Modern where it names none)."""
    path = Path(folder) / filename
    rebuild = f"`milestones feature-net {feature_net_task(filename)}` (then update the checksum in the task)"
    if not path.exists():
        raise FeatureNetError(
            f"feature classifier {path} is missing; it is committed with the code (git checkout -- {path.name}), "
            f"or rebuild it with {rebuild}"
        )
    actual = sha256_file(path)
    if actual != sha256:
        raise FeatureNetError(
            f"feature classifier {path} has sha256 {actual}, expected {sha256}: metrics from it would not be "
            f"comparable; restore the committed file or rebuild it with {rebuild}"
        )
    saved = torch.load(path, map_location="cpu", weights_only=True)
    classifier = model_class(saved.get("class_path", LEGACY_CLASS_PATH), path)(**saved["hparams"])
    classifier.load_state_dict(saved["state_dict"])
    return FeatureNet(classifier)


def model_class(class_path: str, path: Path) -> type[nn.Module]:
    """A suite model class by its dotted path (``lightning_modules.<module>.<Class>`` only)."""
    if not re.fullmatch(r"lightning_modules(\.[A-Za-z_][A-Za-z0-9_]*)+", class_path):
        raise FeatureNetError(f"feature classifier {path} names class {class_path!r}, not a lightning_modules class")
    module, name = class_path.rsplit(".", 1)
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise FeatureNetError(f"feature classifier {path} names {class_path}, which is not here ({error})") from None


def feature_net_provenance(filename: str, folder: Path = FEATURE_NET_DIR) -> dict:
    path = (Path(folder) / filename).with_suffix(".json")
    return json.loads(path.read_text()) if path.exists() else {}


def batched(images: torch.Tensor, size: int = 1000):
    return images.split(size)


@torch.no_grad()
def frechet_distance(net: FeatureNet, real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance between the feature Gaussians of two image sets (torchmetrics, float64 statistics)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=net, normalize=True).to(real.device)
    for batch in batched(real):
        metric.update(batch, real=True)
    for batch in batched(fake):
        metric.update(batch, real=False)
    return float(metric.compute())


@torch.no_grad()
def inception_score(net: FeatureNet, images: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """exp E_x KL(p(y|x) ‖ p(y)) with the classifier's p(y|x): mean and std over ``splits`` groups (≤ 10 for
    10 classes; 1 for a set that collapsed to one class)."""
    from torchmetrics.image.inception import InceptionScore

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*will save all extracted features.*")
        metric = InceptionScore(feature=Logits(net), splits=splits).to(images.device)
    for batch in batched(images):
        metric.update(batch)
    with torch.random.fork_rng(devices=[]):  # compute() shuffles before splitting: the same split every time
        torch.manual_seed(0)
        mean, std = metric.compute()
    return float(mean), float(std)


@torch.no_grad()
def parzen_log_likelihoods(
    points: torch.Tensor, centres: torch.Tensor, sigmas: list[float], chunk: int = 500
) -> torch.Tensor:
    """log p(x) for every point under a mixture of N(centre, σ²I), one row per σ: (len(sigmas), N), float64.

    log p(x) = logsumexp_j(−‖x − μ_j‖² / 2σ²) − log M − d·log(σ√(2π)). The distances are computed once per chunk of
    points and shared by every σ of the grid. They are float32 (4× the speed of float64 here): the rounding of
    ‖x‖² + ‖μ‖² − 2x·μ, ~2e-4 on a squared distance of ~100, moves a log-likelihood by < 0.01 nats at σ = 0.1."""
    points, centres = points.flatten(1).float(), centres.flatten(1).float()
    m, d = centres.shape
    centre_sq = centres.square().sum(1)  # (M,)
    rows = []
    for block in points.split(chunk):
        sq = (block.square().sum(1, keepdim=True) - 2 * block @ centres.T + centre_sq).clamp_min(0)  # (b, M)
        rows.append(torch.stack([torch.logsumexp(sq * (-0.5 / (s * s)), dim=1) for s in sigmas]).double())  # (S, b)
    sig = torch.tensor(sigmas, dtype=torch.float64, device=points.device)
    return torch.cat(rows, 1) - math.log(m) - d * torch.log(sig * math.sqrt(2 * math.pi)).unsqueeze(1)


def parzen_evaluate(centres: torch.Tensor, validation: torch.Tensor, test: torch.Tensor, sigmas: list[float]) -> dict:
    """σ with the best mean validation log-likelihood; the test log-likelihood's mean and standard error with it."""
    val_ll = parzen_log_likelihoods(validation, centres, sigmas).mean(1)  # (S,)
    sigma = sigmas[int(val_ll.argmax())]
    ll = parzen_log_likelihoods(test, centres, [sigma])[0]  # (N,)
    return {"ll": float(ll.mean()), "se": float(ll.std() / math.sqrt(len(ll))), "sigma": sigma}


def log_spaced(low: float, high: float, num: int) -> list[float]:
    """``numpy.logspace(log10(low), log10(high), num)`` as plain floats (the authors' grid is 0.1 … 1, 10 values)."""
    return [float(v) for v in torch.logspace(math.log10(low), math.log10(high), num, dtype=torch.float64)]
