"""Decode every JPEG once into a memory-mapped uint8 array; augment whole batches as tensors (on the GPU when there).

JPEG decoding dominates the cost of feeding a small network. Here each image of a manifest is decoded once, resized
so its shorter side is ``storage_size`` and centre-cropped to a square (AlexNet §2: "rescaled … shorter side of 256,
then cropped out the central 256×256 patch"), and written to ``<cache>/<split>.u8``, an (N, 3, S, S) uint8 array.
The cache folder's name is a hash of the manifest and the resize settings, so a changed file list or setting builds a
new cache; a ``meta.json`` written last marks a finished build. Building runs in parallel with a progress bar.

Training batches then come from the array: a seeded permutation per epoch, a random ``crop_size`` crop and horizontal
flip done as one gather over the whole batch, and PCA lighting noise (AlexNet §4.1) as one (B, 3) matrix product.
Every random number is drawn from a generator seeded by (seed, epoch, batch), so a resumed run sees the same batches.
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


class AugmentedBatches:
    """Training batches of random crops, flips and PCA lighting from a (N, 3, S, S) uint8 store (tensor or memmap)."""

    def __init__(self, store, labels: torch.Tensor, indices: torch.Tensor, batch_size: int, crop_size: int, *,
                 seed: int, epoch, lighting: tuple[torch.Tensor, torch.Tensor] | None, lighting_std: float = 0.1,
                 device: torch.device | None = None, rank: int = 0, world_size: int = 1) -> None:  # fmt: skip
        self.store, self.labels, self.indices = store, labels, indices
        self.batch_size, self.crop_size, self.seed, self.epoch = batch_size, crop_size, seed, epoch
        self.lighting, self.lighting_std, self.device = lighting, lighting_std, device or torch.device("cpu")
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
        """uint8 (B, 3, S, S) → float (B, 3, c, c) in about [0, 1]: random crop + flip as one gather, then lighting."""
        batch, _, size, _ = images.shape
        crop = self.crop_size
        top = torch.randint(0, size - crop + 1, (batch,), generator=generator)
        left = torch.randint(0, size - crop + 1, (batch,), generator=generator)
        flip = torch.rand(batch, generator=generator) < 0.5
        steps = torch.arange(crop)
        rows = top[:, None] + steps  # (B, c)
        cols = left[:, None] + torch.where(flip[:, None], crop - 1 - steps, steps)  # mirrored columns when flipped
        rows, cols = rows.to(images.device), cols.to(images.device)
        b = torch.arange(batch, device=images.device)[:, None, None]
        out = images.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]]  # (B, c, c, 3)
        out = out.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, c, c)
        if self.lighting is not None:
            eigenvectors, scales = (t.to(images.device) for t in self.lighting)
            alpha = (torch.randn(batch, 3, generator=generator) * self.lighting_std).to(images.device)
            shift = (alpha * scales) @ eigenvectors.T  # (B, 3): Σ_i α_i √λ_i p_i per image
            out += shift[:, :, None, None]
        return out.contiguous()


class EvalBatches:
    """Whole stored images (B, 3, S, S) as float in [0, 1], in order; the model crops them (centre or ten crops)."""

    def __init__(
        self, store, labels, indices, batch_size: int, device: torch.device, rank: int = 0, world_size: int = 1
    ):
        self.store, self.labels, self.batch_size, self.device = store, labels, batch_size, device
        self.indices = indices[rank::world_size]

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self):
        for start in range(0, len(self.indices), self.batch_size):
            idx = self.indices[start : start + self.batch_size]
            yield gather(self.store, idx, self.device).float().div_(255.0), self.labels[idx].to(self.device)


def gather(store, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rows ``idx`` of a tensor store (already on ``device``) or of a memmap (read in sorted order, then reordered)."""
    if isinstance(store, torch.Tensor):
        return store[idx.to(store.device)]
    order = np.argsort(idx.numpy(), kind="stable")
    rows = np.empty((len(idx), *store.shape[1:]), dtype=np.uint8)
    rows[order] = store[idx.numpy()[order]]
    return torch.from_numpy(rows).to(device)
