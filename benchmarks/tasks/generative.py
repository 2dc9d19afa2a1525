"""Generative tasks: learn to sample MNIST / Fashion-MNIST images; scored from 10,000 samples, not from labels.

Protocol (Goodfellow et al. 2014, the authors' ``mnist.yaml`` and ``parzen_ll.py``): train on training images
0–50,000, validate on 50,000–60,000, test on the 10,000 test images. Every epoch the model draws 10,000 samples from a
fixed noise set and their Fréchet distance to the validation images (in a fixed classifier's features) is logged as
``val/fd``; the best-``val/fd`` weights are tested once: 10,000 fresh samples (noise seeded by the run's seed), their
Fréchet distance to the test images (the reported number), the classifier-based Inception Score, and the Parzen-window
log-likelihood of the test images (σ chosen on the validation images over the authors' grid, 0.1 … 1). The same
measures on real images (training vs test) are recorded beside them as the floor / ceiling that gives them a scale.
A 10×10 grid from a fixed noise batch (the same for every epoch, seed and entry) is saved with the result. A model
that provides the optional ``LowerBound`` interface (a VAE) also has its own lower bound on log p(x) averaged over the
test images (``lower_bound``, nats per image, the measure of Kingma & Welling 2013, Fig. 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

from benchmarks.scoring.sample_metrics import (
    FeatureNet,
    frechet_distance,
    inception_score,
    load_feature_net,
    log_spaced,
    parzen_evaluate,
)
from benchmarks.tasks.base import DataIdentity, Metric, Task
from benchmarks.tasks.interfaces import EMBEDDING, IMAGE_SAMPLER, LOWER_BOUND
from benchmarks.tasks.mnist import FashionMNISTData, MNISTData

GRID_NOISE_SEED = 2014  # one noise batch for every grid: comparable across epochs, seeds and entries
VAL_NOISE_SEED = 1406  # one noise set for every validation: val/fd moves only because the model does
N_SAMPLES = 10_000
REAL_REFERENCE_IMAGES = 10_000  # training images standing in for a perfect model


class GenerativeData:
    """The authors' split: the first 50,000 training images train, the last 10,000 validate (no shuffling)."""

    val_size = 10_000
    shuffle_split = False
    feature_net: tuple[str, str] = ("", "")  # (file name, sha256), set per task

    def images(self, split: str, limit: int | None = None) -> torch.Tensor:
        """A split (its first ``limit`` images) as float images in [0, 1], (N, C, H, W), on the split's device."""
        return self.splits[split][0][:limit].float() / self.scale

    @classmethod
    def declared_identity(cls) -> DataIdentity:
        """The image files, plus the committed feature classifier that scores the samples (its sha256 is checked
        when it is loaded)."""
        name, sha256 = cls.feature_net
        images = super().declared_identity()
        return DataIdentity(required={**images.required, f"benchmarks/featurenets/{name}": f"sha256:{sha256}"})

    def identity(self) -> dict[str, str]:
        name, sha256 = self.feature_net
        return super().identity() | {f"benchmarks/featurenets/{name}": f"sha256:{sha256}"}


class MNISTGenerativeData(GenerativeData, MNISTData):
    feature_net = ("mnist-lenet5-modern.pt", "a8c9205aca627b15b2faae99de661225554736e508fe3b22343a430f8799914f")


class FashionMNISTGenerativeData(GenerativeData, FashionMNISTData):
    feature_net = ("fashion-mnist-lenet5-modern.pt", "83037566b4842ea85839c8247f7098b0452c6406de48a5f98e9e6b0fe315726a")


def feature_net_for(datamodule) -> FeatureNet:
    """The committed classifier whose ``embed`` features score the samples (the ``Embedding`` interface)."""
    net = load_feature_net(*datamodule.feature_net)
    missing = EMBEDDING.missing(type(net.classifier))
    if missing:
        raise TypeError(f"{type(net.classifier).__name__} cannot score samples: it lacks {missing[0]}()")
    return net


@torch.no_grad()
def draw(model, n: int, seed: int, batch: int = 1000) -> torch.Tensor:
    """``n`` images from ``model`` with noise from a CPU generator seeded by ``seed``; (n, C, H, W) in [0, 1]."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    images = [model.generate(model.noise(min(batch, n - i), generator).to(model.device)) for i in range(0, n, batch)]
    model.train(was_training)
    return torch.cat(images).float()


def grid_image(images: torch.Tensor):
    """The first 100 images as one 10×10 grid: an (H, W, 3) uint8 array."""
    from torchvision.utils import make_grid

    grid = make_grid(images[:100].clamp(0, 1).cpu(), nrow=10, padding=2, pad_value=1.0)  # (3, H, W)
    return (grid * 255).round().byte().permute(1, 2, 0).numpy()


def save_grid(images: torch.Tensor, path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid_image(images)).save(path)
    return path


class SampleQuality(L.Callback):
    """Every validation: ``val/fd`` from a fixed noise set, a sample grid to the run folder and to W&B."""

    def __init__(self, n_samples: int = N_SAMPLES) -> None:
        self.n_samples = n_samples
        self._net: FeatureNet | None = None

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        datamodule = trainer.datamodule
        if self._net is None:
            self._net = feature_net_for(datamodule)
        net = self._net.to(pl_module.device)
        samples = draw(pl_module, self.n_samples, VAL_NOISE_SEED)
        fd = frechet_distance(net, datamodule.images("val"), samples) if torch.isfinite(samples).all() else math.nan
        pl_module.log("val/fd", fd)
        grid = draw(pl_module, 100, GRID_NOISE_SEED)
        epoch = trainer.current_epoch
        save_grid(grid, Path(trainer.default_root_dir) / "samples" / f"epoch-{epoch:03d}.png")
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):  # W&B
                logger.log_image(key="samples", images=[grid_image(grid)], step=trainer.global_step,
                                 caption=[f"epoch {epoch}"])  # fmt: skip


@torch.no_grad()
def lower_bound(model, images: torch.Tensor, seed: int, batch: int = 1000) -> dict[str, float]:
    """The mean over ``images`` of the model's lower bound on log p(x), in nats, and its standard error; the model's
    noise comes from a generator seeded by the run's seed."""
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=model.device).manual_seed(seed)
    bounds = torch.cat([model.lower_bound(chunk.to(model.device), generator) for chunk in images.split(batch)])
    model.train(was_training)
    bounds = bounds.double()
    return {"lower_bound": float(bounds.mean()), "lower_bound_se": float(bounds.std() / math.sqrt(len(bounds)))}


_REFERENCES: dict[tuple, dict] = {}  # real-data references, computed once per process per (task, data, classifier)


@dataclass(frozen=True)
class GenerativeTask(Task):
    n_samples: int = N_SAMPLES
    parzen_sigmas: tuple[float, ...] = tuple(log_spaced(0.1, 1.0, 10))

    def callbacks(self) -> list[L.Callback]:
        return [SampleQuality(self.n_samples)]

    def evaluate(self, trainer: L.Trainer, model, datamodule, ckpt_path: str | Path | None, artifacts: Path):
        if ckpt_path:
            state = torch.load(ckpt_path, map_location=model.device, weights_only=True)["state_dict"]
            model.load_state_dict(state)
        net = feature_net_for(datamodule).to(model.device)
        samples = draw(model, self.n_samples, datamodule.seed)
        save_grid(draw(model, 100, GRID_NOISE_SEED), artifacts / "samples.png")
        test, val = datamodule.images("test"), datamodule.images("val")
        metrics = dict(self.references(datamodule, net, val, test))
        if not torch.isfinite(samples).all():
            return metrics | {"fd": math.nan}
        is_mean, is_std = inception_score(net, samples)
        parzen = parzen_evaluate(samples, val, test, list(self.parzen_sigmas))
        if LOWER_BOUND.implemented_by(model):  # a likelihood model: its own bound on log p(test images)
            metrics |= lower_bound(model, test, datamodule.seed)
        return metrics | {
            "fd": frechet_distance(net, test, samples),
            "is": is_mean,
            "is_std": is_std,
            "parzen_ll": parzen["ll"],
            "parzen_ll_se": parzen["se"],
            "parzen_sigma": parzen["sigma"],
        }

    def references(self, datamodule, net: FeatureNet, val: torch.Tensor, test: torch.Tensor) -> dict[str, float]:
        """The same measures with real training images in place of samples: what a perfect model would score."""
        key = (self.name, tuple(sorted(datamodule.identity().items())), len(datamodule.splits["train"][1]))
        if key not in _REFERENCES:
            real = datamodule.images("train", limit=REAL_REFERENCE_IMAGES)
            parzen = parzen_evaluate(real, val, test, list(self.parzen_sigmas))
            _REFERENCES[key] = {
                "fd_real": frechet_distance(net, test, real),
                "is_real": inception_score(net, test)[0],
                "parzen_ll_real": parzen["ll"],
            }
        return _REFERENCES[key]


FD = Metric("fd", "min", 0.0, math.inf)
PROTOCOL = (
    "train 0–50k / val 50k–60k (the authors' split) / 10k test; best val/fd checkpoint; 10k samples: Fréchet "
    "distance (fd) to the test images in the features of a committed LeNet-5 classifier (sha256 in each result). "
    "Also measured: the classifier-based Inception Score (is) and the Parzen-window log-likelihood of the test images "
    "in nats (parzen_ll, σ chosen on the validation images), the 2014 papers' measure, known to be a poor judge of "
    "sample quality (Theis et al. 2016): noise-free blurry samples can beat sharp ones. A model that bounds its own "
    "likelihood (a VAE) has the test-set mean of that bound recorded too (lower_bound, nats)"
)
REFERENCES = ("fd_real", "is_real", "parzen_ll_real")


def generative_task(name: str, description: str, datamodule) -> GenerativeTask:
    return GenerativeTask(
        name=name,
        description=description,
        metric=FD,
        target=10.0,  # val/fd, for time-to-target: ~3.6× MNIST's real-vs-real floor
        min_seeds=3,
        make_datamodule=datamodule,
        interface=IMAGE_SAMPLER,
        optional_interfaces=(LOWER_BOUND,),
        shown_artifact="samples.png",
        model_inputs={"input_shape": (1, 28, 28)},
        protocol=PROTOCOL,
        extra_metrics=("parzen_ll", "is", "lower_bound"),
        reference_metrics=REFERENCES,
    )


TASKS = [
    generative_task(
        "mnist-gen", "MNIST generative modelling: 10,000 samples scored against the test digits", MNISTGenerativeData
    ),
    generative_task(
        "fashion-mnist-gen",
        "Fashion-MNIST generative modelling: 10,000 samples scored against the test images",
        FashionMNISTGenerativeData,
    ),
]
