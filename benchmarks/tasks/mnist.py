"""MNIST and Fashion-MNIST: 60,000 training and 10,000 test images of 28×28 in torchvision's folder layout.

Protocol: 5,000 training images (fixed seed) are held out for validation and model selection; the model with the best
validation error is evaluated once on the 10,000 test images, and that test error is the reported number.
"""

from __future__ import annotations

import torch

from benchmarks.tasks.base import DataIdentity, Metric, Task
from benchmarks.tasks.files import RemoteFile, fetch, fetch_all, read_idx_gz
from benchmarks.tasks.inmemory import InMemoryImageData
from benchmarks.tasks.interfaces import CLASS_SCORES

MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/")
FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)

# md5s are torchvision's (MNIST.resources / FashionMNIST.resources): the original distributions, byte for byte.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
FASHION_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}


class IdxImageData(InMemoryImageData):
    """Any MNIST-format data set: four IDX .gz files under ``<data_dir>/<folder>/raw/``."""

    folder = "MNIST"
    md5 = MNIST_MD5
    mirrors = MNIST_MIRRORS

    def remote_files(self) -> dict[str, RemoteFile]:
        return {
            name: RemoteFile(f"{self.folder}/raw/{name}", md5, tuple(m + name for m in self.mirrors))
            for name, md5 in self.md5.items()
        }

    def prepare_data(self) -> None:
        fetch_all(list(self.remote_files().values()), self.data_dir, self.download)

    def load_splits(self):
        paths = {name: fetch(remote, self.data_dir, download=False) for name, remote in self.remote_files().items()}

        def pair(prefix: str):
            images = torch.from_numpy(read_idx_gz(paths[f"{prefix}-images-idx3-ubyte.gz"]).copy()).unsqueeze(1)
            labels = torch.from_numpy(read_idx_gz(paths[f"{prefix}-labels-idx1-ubyte.gz"]).copy())
            return images, labels  # (N, 1, 28, 28) uint8, (N,) uint8

        return {"train": pair("train"), "test": pair("t10k")}

    @classmethod
    def declared_identity(cls) -> DataIdentity:
        """The four IDX files, by torchvision's md5s (the only files ``fetch`` accepts)."""
        return DataIdentity(required={f"{cls.folder}/raw/{name}": f"md5:{md5}" for name, md5 in cls.md5.items()})

    def identity(self) -> dict[str, str]:
        return {remote.relpath: f"md5:{remote.md5}" for remote in self.remote_files().values()}


class MNISTData(IdxImageData):
    pass


class FashionMNISTData(IdxImageData):
    folder = "FashionMNIST"
    md5 = FASHION_MD5
    mirrors = FASHION_MIRRORS


TEST_ERROR = Metric("error", "min", 0.0, 100.0, unit="%")
PROTOCOL = "55k train / 5k val (fixed seed 0) / 10k test; best-val checkpoint tested once; test error %"

TASKS = [
    Task(
        name="mnist",
        description="MNIST handwritten digits (LeCun et al. 1998), 10 classes, 28×28 grey",
        metric=TEST_ERROR,
        target=2.0,  # validation error, for time-to-target
        min_seeds=3,
        interface=CLASS_SCORES,
        make_datamodule=MNISTData,
        model_inputs={"num_classes": 10, "input_shape": (1, 28, 28)},
        protocol=PROTOCOL,
    ),
    Task(
        name="fashion-mnist",
        description="Fashion-MNIST (Xiao et al. 2017), 10 clothing classes, 28×28 grey",
        metric=TEST_ERROR,
        target=10.0,
        min_seeds=3,
        interface=CLASS_SCORES,
        make_datamodule=FashionMNISTData,
        model_inputs={"num_classes": 10, "input_shape": (1, 28, 28)},
        protocol=PROTOCOL,
    ),
]
