"""What the milestones of one kind share: a classifier's validation and test accuracy/error through torchmetrics;
an image generator's interface; a GAN's discriminator signal. Nothing here is needed by a milestone of another kind.

A classifier's ``forward(x)`` returns one score per class (the predicted class is the arg-max); its ``training_step``
returns the loss (also under manual optimisation) so the harness can stop a run whose loss is not finite.
"""

from __future__ import annotations

from abc import abstractmethod

import lightning as L
import torch
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy


class Classifier(L.LightningModule):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.val_accuracy = self.make_accuracy(num_classes)
        self.test_accuracy = self.make_accuracy(num_classes)

    def make_accuracy(self, num_classes: int) -> Metric:
        return MulticlassAccuracy(num_classes=num_classes, average="micro")

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.val_accuracy.update(self(x), y)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.test_accuracy.update(self(x), y)

    def on_validation_epoch_end(self):
        self._log_accuracy("val", self.val_accuracy)

    def on_test_epoch_end(self):
        self._log_accuracy("test", self.test_accuracy)

    def _log_accuracy(self, stage: str, metric: Metric) -> None:
        accuracy = metric.compute().float() * 100  # compute() reduces across DDP ranks
        metric.reset()
        self.log(f"{stage}/accuracy", accuracy)
        self.log(f"{stage}/error", 100 - accuracy)


def one_hot(labels: torch.Tensor, num_classes: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Targets for squared-error and error-correction rules: ``high`` for the true class, ``low`` elsewhere."""
    targets = torch.full((len(labels), num_classes), low, device=labels.device)
    return targets.scatter_(1, labels.long().unsqueeze(1), high)


class ImageGenerator(L.LightningModule):
    """What every generative milestone of images shares: noise in, images out, in [0, 1] and shaped like the data
    (the ``ImageSampler`` interface of the generative tasks).

    Sample-based metrics (Fréchet distance, Parzen likelihood) belong to the task, not the model: the task draws
    ``noise`` with its own generator, calls ``generate`` and scores the images.
    """

    @abstractmethod
    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor: ...

    @abstractmethod
    def generate(self, z: torch.Tensor) -> torch.Tensor: ...

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generate(z)


class AdversarialGenerator(ImageGenerator):
    """A GAN: a generator trained against a discriminator. ``discriminate`` (the probability that an image is real)
    is logged on held-out real images as ``val/d_real``, a health signal of the adversarial game."""

    @abstractmethod
    def discriminate(self, images: torch.Tensor) -> torch.Tensor: ...

    def validation_step(self, batch, batch_idx):
        images, _ = batch
        self.log("val/d_real", self.discriminate(images).mean())  # D's mean belief that held-out real images are real


class Agent(L.LightningModule):
    """What every milestone that acts shares (environments, games): its training batches are experience it gathered
    itself (``benchmarks/tasks/interaction.py``), and its validation and test are played by the task, which logs them.
    So the model's evaluation steps do nothing; they exist so that Lightning runs the validation the task plays in."""

    def validation_step(self, batch, batch_idx):
        pass

    def test_step(self, batch, batch_idx):
        pass
