"""ImageNet subsets from a local ILSVRC-2012 copy, and Tiny ImageNet.

``imagenet-100`` / ``imagenet-10``: the user's ILSVRC-2012 ``train/`` and ``val/`` folders in ImageFolder layout
(``<data>/imagenet/{train,val}/<wnid>/*.JPEG``; the usual valprep script sorts val into WNID folders) restricted to a
shipped class list: ``classlists/imagenet100.txt`` is the 100-class list of CMC (Tian, Krishnan & Isola 2019, the
common "ImageNet-100"), ``classlists/imagenet10.txt`` Imagenette's 10 classes. ImageNet cannot be downloaded without
an account, so it is never downloaded. On first use every file of those classes is hashed into a manifest (kept in
the cache folder); its sha256 goes into each result, so a row names exactly which images it used. Protocol: as
Imagenette's (a held-out part of train for selection on its centre crop, the official val images as the test set,
tested with ten crops: ``imagenette.TenCropTask``).

``tiny-imagenet``: Stanford CS231n's Tiny ImageNet (200 classes, 64×64; 100,000 train, 10,000 val with labels), from
the original ``tiny-imagenet-200.zip`` (downloaded when online, md5-checked) or its extracted folder. The 64-px
images are stored at 64 px and trained on random 56-px crops, so an entry that lists this task must take 56-px inputs
(AlexNet's 224-px stem does not, and does not list it). The Hugging Face mirrors of Tiny ImageNet are re-packed
parquet without a fixed checksum; the original archive is used because its md5 pins the data.
"""

from __future__ import annotations

import csv
import shutil
import zipfile
from pathlib import Path

from benchmarks.tasks.base import Task
from benchmarks.tasks.files import DataError, RemoteFile, fetch
from benchmarks.tasks.imagenette import EVALUATION, PROTOCOL, TEN_CROP_METRICS, TOP1_ERROR, TenCropTask
from benchmarks.tasks.imageset import ImageSetData, derived_manifest
from benchmarks.tasks.interfaces import CLASS_SCORES
from benchmarks.tasks.manifest import scan_folder, sha256_file

CLASS_LISTS = Path(__file__).parent / "classlists"


class ImageNetSubsetData(ImageSetData):
    class_list = CLASS_LISTS / "imagenet100.txt"
    val_size = 2_500

    @property
    def cache_name(self) -> str:
        return self.class_list.stem

    def classes(self) -> list[str]:
        return self.class_list.read_text().split()

    def root(self) -> Path:
        return self.data_dir / "imagenet"

    def fetch(self) -> None:
        if not (self.root() / "train").is_dir() or not (self.root() / "val").is_dir():
            raise DataError(
                f"{self.root()}/train and {self.root()}/val not found. ILSVRC-2012 cannot be downloaded automatically "
                f"(it needs an account at https://image-net.org): put its train/ and val/ folders there, one folder "
                f"per WNID (sort val/ with the usual valprep script), or point --data-dir / MILESTONES_DATA at the "
                f"folder that holds imagenet/."
            )

    def manifest_file(self) -> Path:
        path = self.cache_dir / "manifests" / f"{self.cache_name}-{sha256_file(self.class_list)[:12]}.csv.gz"

        def scan():
            print(f"hashing the ILSVRC-2012 images of {len(self.classes())} classes into {path} (once)", flush=True)
            return scan_folder(self.root(), ("train", "val"), self.classes())

        return derived_manifest(path, scan)

    @classmethod
    def declared_identity(cls):
        """The shipped class list, by its sha256; the manifest hashed from the user's own ILSVRC-2012 copy cannot be
        known in advance: a result must record one."""
        from benchmarks.tasks.base import DataIdentity

        return DataIdentity(required={f"classlists/{cls.class_list.name}": "sha256:" + sha256_file(cls.class_list)},
                            user_hashed=("manifest",))  # fmt: skip

    def identity(self) -> dict[str, str | None]:
        """The class list is fixed; the manifest's checksum is known once the images were hashed (None before)."""
        digest = self.manifest_sha256() if self.data_dir and (self.root() / "train").is_dir() else None
        return {f"classlists/{self.class_list.name}": "sha256:" + sha256_file(self.class_list),
                "manifest": f"sha256:{digest}" if digest else None}  # fmt: skip


class ImageNet10Data(ImageNetSubsetData):
    class_list = CLASS_LISTS / "imagenet10.txt"
    val_size = 500


TINY = RemoteFile("tiny-imagenet-200.zip", "90528d7ca1a48142e341f4ef8d21d0de",
                  ("http://cs231n.stanford.edu/tiny-imagenet-200.zip",))  # fmt: skip


class TinyImageNetData(ImageSetData):
    cache_name = "tiny-imagenet-200"
    storage_size = 64
    crop_size = 56
    val_size = 5_000

    def extracted(self) -> Path:
        return self.cache_dir / "extracted" / "tiny-imagenet-200"

    def root(self) -> Path:
        """An ImageFolder view: train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (val sorted by val_annotations.txt)."""
        return self.extracted() / "sorted"

    def fetch(self) -> None:
        if (self.root() / "complete").exists():
            return
        source = self.data_dir / "tiny-imagenet-200"
        if not (source / "wnids.txt").exists():
            archive = fetch(TINY, self.data_dir, self.download)
            print(f"extracting {archive} -> {self.extracted()}", flush=True)
            with zipfile.ZipFile(archive) as z:
                z.extractall(self.extracted().parent)
            source = self.extracted()
        sort_tiny_imagenet(source, self.root())
        (self.root() / "complete").touch()

    def manifest_file(self) -> Path:
        return derived_manifest(
            self.extracted() / "manifest.csv.gz", lambda: scan_folder(self.root(), ("train", "val"))
        )

    @classmethod
    def declared_identity(cls):
        from benchmarks.tasks.base import DataIdentity

        return DataIdentity(required={TINY.relpath: f"md5:{TINY.md5}"})

    def identity(self) -> dict[str, str]:
        return {TINY.relpath: f"md5:{TINY.md5}"}


def sort_tiny_imagenet(source: Path, target: Path) -> None:
    """Tiny ImageNet's train/<wnid>/images/*.JPEG and flat val/images + val_annotations.txt → ImageFolder folders."""
    wnids = (source / "wnids.txt").read_text().split()
    for wnid in wnids:
        files = sorted((source / "train" / wnid / "images").glob("*.JPEG"))
        if not files:
            raise DataError(f"{source / 'train' / wnid / 'images'}: class folder holds no images")
        (target / "train" / wnid).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(f, target / "train" / wnid / f.name)
    annotations = source / "val" / "val_annotations.txt"
    with open(annotations) as f:
        for line_number, row in enumerate(csv.reader(f, delimiter="\t"), 1):
            if len(row) < 2 or row[1] not in wnids:
                raise DataError(f"{annotations}:{line_number}: expected '<file>\\t<wnid>...', got {row!r}")
            (target / "val" / row[1]).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / "val" / "images" / row[0], target / "val" / row[1] / row[0])


def subset_task(name: str, description: str, datamodule, classes: int, protocol: str = PROTOCOL, size=224) -> Task:
    return TenCropTask(
        name=name,
        description=description,
        metric=TOP1_ERROR,
        target=50.0,
        min_seeds=3,
        make_datamodule=datamodule,
        interface=CLASS_SCORES,
        model_inputs={"num_classes": classes, "input_shape": (3, size, size)},
        protocol=protocol,
        extra_metrics=TEN_CROP_METRICS,
    )


TASKS = [
    subset_task("imagenet-100", "ILSVRC-2012, the 100 classes of CMC's ImageNet-100 (local copy)", ImageNetSubsetData,
                100, "ILSVRC-2012 train of 100 classes − 2,500 held out (seed 0) / official val (5,000) as test; "
                "256-px storage, 224 crops; " + EVALUATION),
    subset_task("imagenet-10", "ILSVRC-2012, Imagenette's 10 classes at full resolution (local copy)", ImageNet10Data,
                10, "ILSVRC-2012 train of 10 classes − 500 held out (seed 0) / official val (500) as test; "
                "256-px storage, 224 crops; " + EVALUATION),
    subset_task("tiny-imagenet", "Tiny ImageNet (CS231n), 200 classes, 64×64", TinyImageNetData, 200,
                "100k train − 5,000 held out (seed 0) / 10k val as test; 64-px storage, 56 crops; " + EVALUATION,
                size=56),
]  # fmt: skip
