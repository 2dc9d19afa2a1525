"""Imagenette (fast.ai's 10-class ImageNet subset): the official archives, and the 224-px re-encoded copy.

Protocol for every Imagenette task: the 9,469 training images minus 500 held out (fixed seed 0) train; the 500 choose
the checkpoint and drive the plateau schedule, on their centre 224 crop; the best-validation checkpoint is tested once
on the 3,925 official validation images as AlexNet §4.1 tests: the softmax averaged over ten 224 crops of each image
(the four corners and the centre, and their mirror images). Images are stored at 256×256 (shorter side resized, centre
crop) and trained on random 224 crops. The ranked metric is that ten-crop top-1 error %; its top-5 error, and the
top-1 / top-5 error of the centre crop alone (``error_center``, ``top5_error_center``), are recorded beside it. The
task fixes this evaluation for every entry: it calls the model's forward on the crops (``TenCropTask``).

- ``imagenette-160``, ``imagenette-320``, ``imagenette``: the official 160-px, 320-px and full-size archives, checked
  against torchvision's md5s, downloaded into the data folder when online and extracted into the cache folder.
- ``imagenette-224re``: the same file list re-encoded at 224×224 (JPEG quality ≈ 75), as some offline mirrors hold it
  (``imagenette2-224/``). Its pixels differ from the official ones, so it is its own task. Its files are fixed by the
  committed manifest ``manifests/imagenette2-224.csv.gz`` (13,394 files with sha256): that manifest's checksum is the
  data identity of every result on it.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from torchvision.datasets import Imagenette

from benchmarks.tasks.base import Metric, Task
from benchmarks.tasks.files import DataError, RemoteFile, fetch
from benchmarks.tasks.imageset import ImageSetData, derived_manifest
from benchmarks.tasks.interfaces import CLASS_SCORES
from benchmarks.tasks.manifest import scan_folder

MANIFESTS = Path(__file__).parent / "manifests"
OFFICIAL = "https://github.com/fastai/imagenette"
CLASSES = {
    "n01440764": "tench", "n02102040": "English springer", "n02979186": "cassette player", "n03000684": "chain saw",
    "n03028079": "church", "n03394916": "French horn", "n03417042": "garbage truck", "n03425413": "gas pump",
    "n03445777": "golf ball", "n03888257": "parachute",
}  # fmt: skip


class Imagenette224Data(ImageSetData):
    """``<data>/imagenette2-224/{train,val}/<wnid>/*.JPEG``, exactly the files of the committed manifest."""

    cache_name = "imagenette2-224"
    manifest_path = MANIFESTS / "imagenette2-224.csv.gz"

    def root(self) -> Path:
        return self.data_dir / "imagenette2-224"

    def fetch(self) -> None:
        if not (self.root() / "train").is_dir():
            raise DataError(
                f"{self.root()} not found. imagenette-224re is Imagenette2 with every image re-encoded at 224×224; it "
                f"cannot be downloaded. Put that folder (train/ and val/ with one folder per WNID) at {self.root()}, "
                f"or point --data-dir / MILESTONES_DATA at the folder that holds it. Online, train on the official "
                f"archives instead: --task imagenette-320 (downloads imagenette2-320.tgz, 326 MB, from {OFFICIAL})."
            )

    def manifest_file(self) -> Path:
        return self.manifest_path

    @classmethod
    def declared_identity(cls):
        """The committed manifest (code, in this repository) names every file with its sha256: its own checksum."""
        from benchmarks.tasks.base import DataIdentity
        from benchmarks.tasks.manifest import sha256_file

        return DataIdentity(required={"imagenette2-224/manifest": "sha256:" + sha256_file(cls.manifest_path)})

    def identity(self) -> dict[str, str]:
        return {"imagenette2-224/manifest": "sha256:" + self.manifest_sha256()}


class ImagenetteData(ImageSetData):
    """An official Imagenette archive: found (or downloaded) in the data folder, md5-checked, extracted to the cache."""

    size = "320px"  # torchvision's name of the archive: "full", "320px" or "160px"

    @property
    def archive(self) -> RemoteFile:
        url, md5 = Imagenette._ARCHIVES[self.size]
        return RemoteFile(url.rsplit("/", 1)[1], md5, (url,))

    @property
    def cache_name(self) -> str:
        return self.archive.relpath.removesuffix(".tgz")

    def extracted(self) -> Path:
        return self.cache_dir / "extracted" / f"{self.cache_name}-{self.archive.md5[:8]}"

    def root(self) -> Path:
        return self.extracted() / self.cache_name

    def fetch(self) -> None:
        if (self.extracted() / "complete").exists():
            return
        archive = fetch(self.archive, self.data_dir, self.download)
        print(f"extracting {archive} -> {self.extracted()}", flush=True)
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # no links or paths out of the folder
        with tarfile.open(archive) as tar:
            tar.extractall(self.extracted(), **safe)
        (self.extracted() / "complete").touch()

    def manifest_file(self) -> Path:
        # the archive's md5 was checked: its listing is the manifest, built once and checked on every use
        return derived_manifest(self.extracted() / "manifest.csv.gz",
                                lambda: scan_folder(self.root(), ("train", "val"), sorted(CLASSES)))  # fmt: skip

    @classmethod
    def declared_identity(cls):
        """The official archive, by torchvision's md5."""
        from benchmarks.tasks.base import DataIdentity

        url, md5 = Imagenette._ARCHIVES[cls.size]
        return DataIdentity(required={url.rsplit("/", 1)[1]: f"md5:{md5}"})

    def identity(self) -> dict[str, str]:
        return {self.archive.relpath: f"md5:{self.archive.md5}"}


class Imagenette160Data(ImagenetteData):
    size = "160px"


class ImagenetteFullData(ImagenetteData):
    size = "full"


TOP1_ERROR = Metric("error", "min", 0.0, 100.0, unit="%")
TEN_CROP_METRICS = ("top5_error", "error_center", "top5_error_center")  # recorded beside the ranked ten-crop error
EVALUATION = (
    "best-val checkpoint (val: the centre crop) tested once with ten crops (4 corners + centre and their mirror "
    "images, softmax averaged, AlexNet §4.1): top-1 error % ranked; top-5 and the centre crop alone recorded"
)
PROTOCOL = (
    "9,469 train − 500 held out (seed 0) for selection / 3,925 official val as test; 256-px storage, 224 crops; "
    + EVALUATION
)


@dataclass(frozen=True)
class TenCropTask(Task):
    """An image-set task whose test is AlexNet §4.1's, for every entry alike: each test image's ten crops go through
    the model's forward (``trainer.predict``: the best checkpoint, the run's device and precision, eval mode), and
    the softmax averaged over the ten ranks; the centre crop (view 4) alone is recorded beside it."""

    def evaluate(self, trainer: L.Trainer, model: L.LightningModule, datamodule, ckpt_path, artifacts: Path):
        views = datamodule.ten_crop_dataloader()
        logits = trainer.predict(model, dataloaders=views, ckpt_path=ckpt_path)  # [(10 · b, C)] per batch, on the CPU
        mean, centre = ten_crop_probabilities(torch.cat([chunk.float() for chunk in logits_by_image(logits)]))
        labels = views.labels[: len(mean)]  # a smoke run (--fast-dev-run) predicts only its first batch
        counts = torch.stack([*hits(mean, labels), *hits(centre, labels), torch.tensor(len(labels))]).double()
        counts = trainer.strategy.reduce(counts.to(trainer.strategy.root_device), reduce_op="sum").cpu()
        top1, top5, centre_top1, centre_top5, total = counts.tolist()
        metrics = {
            "error": 100.0 * (1 - top1 / total),
            "accuracy": 100.0 * top1 / total,
            "top5_error": 100.0 * (1 - top5 / total),
            "error_center": 100.0 * (1 - centre_top1 / total),
            "top5_error_center": 100.0 * (1 - centre_top5 / total),
        }
        for logger in trainer.loggers:  # as trainer.test would have logged them
            logger.log_metrics({f"test/{key}": value for key, value in metrics.items()}, step=trainer.global_step)
            logger.save()
        return metrics


def logits_by_image(batches: list[torch.Tensor], views: int = 10) -> list[torch.Tensor]:
    """Each (views · b, C) batch, view-major, as (b, views, C): one row per image."""
    return [batch.view(views, -1, batch.shape[-1]).transpose(0, 1) for batch in batches]


def ten_crop_probabilities(logits: torch.Tensor, centre_view: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, 10, C) of the ten views → (the softmax averaged over the views (N, C), the centre view's (N, C))."""
    probabilities = logits.softmax(-1)
    return probabilities.mean(1), probabilities[:, centre_view]


def hits(probabilities: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """How many images have their label as the top class, and among the top five (top-k for fewer classes)."""
    top = probabilities.topk(min(5, probabilities.shape[-1]), dim=-1).indices  # (N, k)
    found = top == labels[:, None]
    return found[:, 0].sum(), found.any(-1).sum()


def imagenette_task(name: str, description: str, datamodule, target: float = 40.0) -> Task:
    return TenCropTask(
        name=name,
        description=description,
        metric=TOP1_ERROR,
        target=target,  # validation (centre-crop) top-1 error, for time-to-target
        min_seeds=3,
        make_datamodule=datamodule,
        interface=CLASS_SCORES,
        model_inputs={"num_classes": 10, "input_shape": (3, 224, 224)},
        protocol=PROTOCOL,
        extra_metrics=TEN_CROP_METRICS,
    )


TASKS = [
    imagenette_task("imagenette-224re", "Imagenette2 re-encoded at 224×224 (offline copy), 10 ImageNet classes",
                    Imagenette224Data),
    imagenette_task("imagenette-320", "Imagenette2, official 320-px archive, 10 ImageNet classes", ImagenetteData),
    imagenette_task("imagenette-160", "Imagenette2, official 160-px archive, 10 ImageNet classes", Imagenette160Data),
    imagenette_task("imagenette", "Imagenette2, official full-size archive, 10 ImageNet classes", ImagenetteFullData),
]  # fmt: skip
