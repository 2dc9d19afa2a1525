"""Decode every JPEG once into a memory-mapped uint8 array; augment whole batches as tensors (on the GPU when there).

JPEG decoding dominates the cost of feeding a small network. Here each image of a manifest is decoded once, resized
so its shorter side is ``storage_size`` and centre-cropped to a square (AlexNet §2: "rescaled … shorter side of 256,
then cropped out the central 256×256 patch"), and written to ``<cache>/<split>.u8``, an (N, 3, S, S) uint8 array.
The cache folder's name is a hash of the manifest and the resize settings, so a changed file list or setting builds a
new cache; a ``meta.json`` written last marks a finished build. Building runs in parallel with a progress bar.

Training batches then come from the array: a seeded permutation per epoch, a random ``crop_size`` crop and horizontal
flip done as one gather over the whole batch, and PCA lighting noise (AlexNet §4.1) as one (B, 3) matrix product.
Every random number is drawn from a generator seeded by (seed, epoch, batch), so a resumed run sees the same batches.

Every batch is normalised the same way (``Normalisation``): (pixel − mean) / std on the 0–255 scale, where the mean is
an image (3, S, S) subtracted at the stored pixel positions *before* any crop or flip (AlexNet §2 subtracts the mean
image of the training set from each pixel of the 256×256 images; a per-channel mean is the same image, constant).
Evaluation batches are the centre crop (``EvalBatches``) or the ten crops of AlexNet §4.1 (``TenCropBatches``).
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.tasks.files import DataError
from benchmarks.tasks.manifest import ImageRecord

CACHE_FORMAT = 1  # bump when the cache layout or the decoding changes


@dataclass(frozen=True)
class CacheSpec:
    storage_size: int  # the square side stored (the shorter side is resized to it, then centre-cropped)
    resample: str = "bilinear"  # PIL filter used for the resize

    def key(self, manifest_sha256: str) -> str:
        text = json.dumps({"manifest": manifest_sha256, "size": self.storage_size, "resample": self.resample,
                           "format": CACHE_FORMAT}, sort_keys=True)  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def decode(path: Path, size: int, resample: str = "bilinear") -> np.ndarray:
    """One image → (3, size, size) uint8. Grayscale, CMYK, palette and alpha images are converted to RGB."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            scale = size / min(image.size)
            width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
            image = image.resize((width, height), getattr(Image.Resampling, resample.upper()))
            left, top = (width - size) // 2, (height - size) // 2
            image = image.crop((left, top, left + size, top + size))
            return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
    except (OSError, ValueError) as error:  # PIL's UnidentifiedImageError is an OSError
        raise DataError(f"{path}: cannot be decoded as an image ({error})") from error


def _decode_chunk(args) -> None:
    array_path, shape, start, paths, size, resample = args
    array = np.lib.format.open_memmap(array_path, mode="r+")
    for offset, path in enumerate(paths):
        array[start + offset] = decode(Path(path), size, resample)
    array.flush()


def build_split(paths: list[Path], spec: CacheSpec, out: Path, workers: int, label: str) -> None:
    """Decode ``paths`` into the .npy memmap ``out`` in parallel chunks, with a progress bar."""
    from rich.progress import Progress

    shape = (len(paths), 3, spec.storage_size, spec.storage_size)
    partial = out.with_name(out.name + ".part")
    np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape).flush()
    chunk = 64
    jobs = [(str(partial), shape, i, [str(p) for p in paths[i : i + chunk]], spec.storage_size, spec.resample)
            for i in range(0, len(paths), chunk)]  # fmt: skip
    with Progress(transient=False) as progress, ProcessPoolExecutor(max_workers=workers) as pool:
        bar = progress.add_task(f"decoding {label} ({len(paths)} images → {spec.storage_size} px)", total=len(paths))
        for job, _ in zip(jobs, pool.map(_decode_chunk, jobs)):
            progress.advance(bar, len(job[3]))
    os.replace(partial, out)


def cache_path(cache_root: Path, name: str, spec: CacheSpec, manifest_sha256: str) -> Path:
    return cache_root / "images" / f"{name}-{spec.storage_size}px-{spec.key(manifest_sha256)}"


def ensure_cache(records: list[ImageRecord], root: Path, manifest_sha256: str, spec: CacheSpec, cache_root: Path,
                 name: str, workers: int | None = None) -> Path:  # fmt: skip
    """The cache folder for these records, building it when absent or unfinished; returns the folder."""
    folder = cache_path(cache_root, name, spec, manifest_sha256)
    if (folder / "meta.json").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    splits = sorted({r.split for r in records})
    for split in splits:
        paths = [root / r.path for r in records if r.split == split]
        build_split(paths, spec, folder / f"{split}.npy", workers, f"{name}/{split}")
    meta = {"manifest_sha256": manifest_sha256, "storage_size": spec.storage_size, "resample": spec.resample,
            "format": CACHE_FORMAT, "splits": {s: sum(r.split == s for r in records) for s in splits}}  # fmt: skip
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def open_split(folder: Path, split: str, expected: int) -> np.ndarray:
    array = np.load(folder / f"{split}.npy", mmap_mode="r")
    if array.shape[0] != expected:
        raise DataError(f"{folder / split}.npy holds {array.shape[0]} images, the manifest {expected}: delete {folder}")
    return array


def pca_lighting_basis(images: np.ndarray, indices: np.ndarray, stride: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvectors (3, 3) and √eigenvalues (3,) of the RGB covariance of the training pixels, [0, 1] scale (§4.1).

    Every ``stride``-th row and column of the images ``indices`` (the training split) is used, 512 images at a time.
    Following the common implementations of §4.1 (fb.resnet.torch, Caffe's), the noise is scaled by √λ, the standard
    deviation along each principal axis.
    """
    total, outer, count = np.zeros(3), np.zeros((3, 3)), 0
    indices = np.sort(indices)
    for start in range(0, len(indices), 512):
        chunk = images[indices[start : start + 512]][:, :, ::stride, ::stride]
        pixels = chunk.transpose(1, 0, 2, 3).reshape(3, -1) / 255.0
        total += pixels.sum(1)
        outer += pixels @ pixels.T
        count += pixels.shape[1]
    mean = total / count
    covariance = outer / count - np.outer(mean, mean)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    return torch.tensor(eigenvectors, dtype=torch.float32), torch.tensor(
        np.sqrt(eigenvalues.clip(0)), dtype=torch.float32
    )


def mean_image(images: np.ndarray, indices: np.ndarray, chunk: int = 256) -> np.ndarray:
    """The mean (3, S, S) of the images ``indices`` of a (N, 3, S, S) uint8 store, 0–255 scale, as float32.

    Summed exactly as integers (at most 255 · N per pixel fits in 64 bits), in sorted order, ``chunk`` images at a time.
    """
    indices = np.sort(np.asarray(indices))
    if len(indices) == 0:
        raise DataError("the mean image needs at least one training image")
    total = np.zeros(images.shape[1:], dtype=np.int64)
    for start in range(0, len(indices), chunk):
        total += images[indices[start : start + chunk]].sum(axis=0, dtype=np.int64)
    return (total / len(indices)).astype(np.float32)


def cached_mean_image(folder: Path, split: str, images: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``mean_image`` of the training images, computed once and kept in the cache folder with its own sha256.

    The file is derived data: its checksum (in the ``.json`` beside it) is checked on every load, and a file that is
    missing, truncated, edited or of the wrong shape is computed again from the decoded images and rewritten. Its name
    holds a hash of the image indices, so another training split (another held-out part) has its own file.
    """
    indices = np.sort(np.asarray(indices, dtype=np.int64))
    key = hashlib.sha256(split.encode() + b"\0" + indices.tobytes()).hexdigest()[:16]
    array_path, record_path = folder / f"{split}-mean-{key}.npy", folder / f"{split}-mean-{key}.json"
    expected_shape = tuple(images.shape[1:])
    if array_path.exists() or record_path.exists():
        problem = _mean_image_problem(array_path, record_path, expected_shape, len(indices))
        if problem is None:
            return np.load(array_path)
        print(f"{array_path}: {problem}; computing the mean image again", flush=True)
    mean = mean_image(images, indices)
    _write_atomically(array_path, lambda f: np.save(f, mean))
    record = {"sha256": sha256_bytes(array_path.read_bytes()), "images": len(indices), "split": split,
              "shape": list(mean.shape), "what": "mean of the training images of this cache, 0-255"}  # fmt: skip
    _write_atomically(record_path, lambda f: f.write((json.dumps(record, indent=2) + "\n").encode()))
    return mean


def _mean_image_problem(array_path: Path, record_path: Path, shape: tuple[int, ...], count: int) -> str | None:
    """Why a cached mean image cannot be used, or None when its checksum, shape and image count agree."""
    try:
        record = json.loads(record_path.read_text())
        data = array_path.read_bytes()
    except (OSError, ValueError) as error:
        return f"unreadable ({error})"
    if sha256_bytes(data) != record.get("sha256"):
        return "sha256 differs from the one recorded when it was written (corrupt)"
    if record.get("images") != count or tuple(record.get("shape", ())) != shape:
        return "recorded for another set of images"
    return None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomically(path: Path, write) -> None:
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")  # a reader never sees half a file
    with open(partial, "wb") as f:
        write(f)
    os.replace(partial, path)


@dataclass(frozen=True)
class Normalisation:
    """What the model is fed: (pixel − mean) / std, pixels on the 0–255 scale.

    ``mean`` is (3, S, S), subtracted at the stored pixel positions before a crop or flip; ``std`` is (3,).
    Both are float32 tensors, moved with the data to the device the batches are made on.
    """

    mean: torch.Tensor  # (3, S, S), 0-255 scale
    std: torch.Tensor  # (3,), 0-255 scale

    def to(self, device: torch.device) -> Normalisation:
        return Normalisation(self.mean.to(device), self.std.to(device))

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """Whole stored images, uint8 (B, 3, S, S) → normalised float (B, 3, S, S)."""
        mean, std = self.mean.to(images.device), self.std.to(images.device)
        return (images.float() - mean).div_(std[:, None, None])


class AugmentedBatches:
    """Training batches of random crops, flips and PCA lighting from a (N, 3, S, S) uint8 store (tensor or memmap)."""

    def __init__(self, store, labels: torch.Tensor, indices: torch.Tensor, batch_size: int, crop_size: int, *,
                 seed: int, epoch, lighting: tuple[torch.Tensor, torch.Tensor] | None, lighting_std: float = 0.1,
                 normalisation: Normalisation | None = None, device: torch.device | None = None, rank: int = 0,
                 world_size: int = 1) -> None:  # fmt: skip
        self.store, self.labels, self.indices = store, labels, indices
        self.batch_size, self.crop_size, self.seed, self.epoch = batch_size, crop_size, seed, epoch
        self.lighting, self.lighting_std, self.device = lighting, lighting_std, device or torch.device("cpu")
        self.normalisation = normalisation or unit_scale(store.shape[-1])
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        per_rank = (len(self.indices) - len(self.indices) % self.world_size) // self.world_size
        return -(-per_rank // self.batch_size)

    def __iter__(self):
        epoch = self.epoch()
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = self.indices[torch.randperm(len(self.indices), generator=generator)]
        order = order[: len(order) - len(order) % self.world_size][self.rank :: self.world_size]
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.augment(gather(self.store, idx, self.device), generator), self.labels[idx].to(self.device)

    def augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 (B, 3, S, S) → normalised float (B, 3, c, c): the mean image is subtracted at the stored positions,
        then the random crop + flip (one gather for the images and the mean alike), then lighting, then ÷ std."""
        batch, _, size, _ = images.shape
        crop = self.crop_size
        top = torch.randint(0, size - crop + 1, (batch,), generator=generator)
        left = torch.randint(0, size - crop + 1, (batch,), generator=generator)
        flip = torch.rand(batch, generator=generator) < 0.5
        steps = torch.arange(crop)
        rows = top[:, None] + steps  # (B, c)
        cols = left[:, None] + torch.where(flip[:, None], crop - 1 - steps, steps)  # mirrored columns when flipped
        flat = (rows[:, :, None] * size + cols[:, None, :]).view(batch, 1, crop * crop).to(images.device)
        flat = flat.expand(batch, 3, crop * crop)  # (B, 3, c²): the stored pixel of every output pixel, per channel
        out = images.reshape(batch, 3, size * size).gather(2, flat).float()  # one gather for the crops and flips
        mean = self.normalisation.mean.to(images.device).reshape(1, 3, size * size).expand(batch, -1, -1)
        out = out.sub_(mean.gather(2, flat)).view(batch, 3, crop, crop)  # pixel − mean at the same stored pixel
        if self.lighting is not None:
            eigenvectors, scales = (t.to(images.device) for t in self.lighting)
            alpha = (torch.randn(batch, 3, generator=generator) * self.lighting_std).to(images.device)
            shift = (alpha * scales) @ eigenvectors.T * 255.0  # (B, 3): Σ_i α_i √λ_i p_i per image, 0-255 scale
            out += shift[:, :, None, None]
        return out.div_(self.normalisation.std.to(images.device)[:, None, None]).contiguous()


def unit_scale(size: int) -> Normalisation:
    """Pixels ÷ 255, in [0, 1]: no centring (tools and tests that need no model-ready input)."""
    return Normalisation(torch.zeros(3, size, size), torch.full((3,), 255.0))


class EvalBatches:
    """(centre crops (B, 3, c, c), labels) of the stored images, in order: validation, and ``trainer.test``."""

    def __init__(self, store, labels, indices, batch_size: int, device: torch.device, rank: int = 0,
                 world_size: int = 1, crop_size: int | None = None,
                 normalisation: Normalisation | None = None) -> None:  # fmt: skip
        self.store, self.labels, self.batch_size, self.device = store, labels, batch_size, device
        self.indices = indices[rank::world_size]
        self.crop_size = crop_size or store.shape[-1]
        self.normalisation = normalisation or unit_scale(store.shape[-1])

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self):
        for start in range(0, len(self.indices), self.batch_size):
            idx = self.indices[start : start + self.batch_size]
            images = self.normalisation.apply(gather(self.store, idx, self.device))  # (B, 3, S, S)
            yield centre_crop(images, self.crop_size), self.labels[idx].to(self.device)


class TenCropBatches:
    """AlexNet §4.1's test views: per ``images_per_batch`` stored images, one tensor (10 · b, 3, c, c) holding the four
    corner crops, the centre crop and the mirror images of those five, view-major (all images' view 0, then view 1,
    ...; the order of ``ten_crop``). Batches are bare tensors, so ``trainer.predict`` hands them to the model's
    forward; ``labels`` are the images' labels in the same order."""

    views = 10

    def __init__(self, store, labels, indices, images_per_batch: int, device: torch.device, crop_size: int,
                 normalisation: Normalisation, rank: int = 0, world_size: int = 1) -> None:  # fmt: skip
        self.store, self.images_per_batch, self.device = store, images_per_batch, device
        self.indices = indices[rank::world_size]
        self.labels = labels[self.indices.to(labels.device)].cpu()
        self.crop_size, self.normalisation = crop_size, normalisation

    def __len__(self) -> int:
        return -(-len(self.indices) // self.images_per_batch)

    def __iter__(self):
        for start in range(0, len(self.indices), self.images_per_batch):
            idx = self.indices[start : start + self.images_per_batch]
            images = self.normalisation.apply(gather(self.store, idx, self.device))  # (b, 3, S, S), then cropped
            yield torch.cat(ten_crop(images, self.crop_size)).contiguous()  # (10 · b, 3, c, c)


def centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return x[..., top : top + size, left : left + size]


def ten_crop(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    """The four corner crops and the centre crop of a batch (B, C, H, W), then their horizontal mirrors (§4.1):
    top-left, top-right, bottom-left, bottom-right, centre, and the same five mirrored."""
    height, width = x.shape[-2:]
    top, left = (height - size) // 2, (width - size) // 2
    corners = [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size), (top, left)]
    crops = [x[..., i : i + size, j : j + size] for i, j in corners]
    return crops + [crop.flip(-1) for crop in crops]


def gather(store, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rows ``idx`` of a tensor store (already on ``device``) or of a memmap (read in sorted order, then reordered)."""
    if isinstance(store, torch.Tensor):
        return store[idx.to(store.device)]
    order = np.argsort(idx.numpy(), kind="stable")
    rows = np.empty((len(idx), *store.shape[1:]), dtype=np.uint8)
    rows[order] = store[idx.numpy()[order]]
    return torch.from_numpy(rows).to(device)
