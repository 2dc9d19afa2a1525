"""scikit-learn's bundled handwritten digits: 1,797 real 8×8 images (UCI optdigits test set), no download needed.

This is what ``make demo`` trains on, so a fresh machine with no network can run the suite end to end in about a
minute. Protocol: a fixed permutation (seed 0) gives 1,200 training, 200 validation and 397 test images.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import sklearn
import torch
from sklearn.datasets import load_digits

from benchmarks.tasks.base import DataIdentity, Metric, Task
from benchmarks.tasks.inmemory import InMemoryImageData
from benchmarks.tasks.interfaces import CLASS_SCORES

N_TEST = 397
# sha256 of scikit-learn's package file sklearn/datasets/data/digits.csv.gz (unchanged for years; 1.9.1 here). The data
# ships with a package, i.e. with code: a run hashes the file it read (identity()), validation compares with this.
DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
DIGITS_KEY = "sklearn/datasets/data/digits.csv.gz"


class DigitsData(InMemoryImageData):
    image_shape = (1, 8, 8)
    scale = 16.0  # pixel values are counts 0..16
    val_size = 200

    def load_splits(self):
        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.uint8).unsqueeze(1)  # (1797, 1, 8, 8)
        labels = torch.tensor(digits.target, dtype=torch.uint8)
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.split_seed))
        test, train = order[:N_TEST], order[N_TEST:]
        return {"train": (images[train], labels[train]), "test": (images[test], labels[test])}

    @classmethod
    def declared_identity(cls) -> DataIdentity:
        return DataIdentity(required={DIGITS_KEY: f"sha256:{DIGITS_SHA256}"})

    def identity(self) -> dict[str, str]:
        """The sha256 of the package file this run read (a scikit-learn with other digits would show here)."""
        path = Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"
        return {DIGITS_KEY: "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()}


TASKS = [
    Task(
        name="digits",
        description="scikit-learn digits (UCI optdigits), 10 classes, 8×8 grey, bundled offline",
        metric=Metric("error", "min", 0.0, 100.0, unit="%"),
        target=5.0,
        min_seeds=3,
        interface=CLASS_SCORES,
        make_datamodule=DigitsData,
        model_inputs={"num_classes": 10, "input_shape": (1, 8, 8)},
        bundled=True,
        protocol="1,200 train / 200 val / 397 test (fixed seed 0); best-val checkpoint tested once; test error %",
    )
]
