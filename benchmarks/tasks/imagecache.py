"""Decode every JPEG once into a memory-mapped uint8 array; augment whole batches as tensors (on the GPU when there).

JPEG decoding dominates the cost of feeding a small network. Here each image of a manifest is decoded once, resized
so its shorter side is ``storage_size`` and centre-cropped to a square (AlexNet §2: "rescaled … shorter side of 256,
then cropped out the central 256×256 patch"), and written to ``<cache>/<split>.u8``, an (N, 3, S, S) uint8 array.
The cache folder's name is a hash of the manifest and the resize settings, so a changed file list or setting builds a
new cache. Building runs in worker processes with a progress bar; a worker dies with the build (a SIGKILLed build
leaves no orphans), and a split is written as ``<split>.npy.part`` and renamed when complete.

The cache is derived data and never trusted blindly. Each worker returns the sha256 of the chunk of images it wrote
(``images_per_chunk``: about 8 MB, 42 images at 256 px); ``meta.json``, written last and atomically, records every
array's shape, dtype, header, size and chunk checksums. Before use, ``ensure_cache`` checks that meta.json is readable,
of this format and describes this build, that every .npy exists with the recorded size and header, and every chunk's
checksum (a full pass: about 3 s for Imagenette's 13,394 images at 256 px, 2.6 GB, on 2 CPU cores). A cache that fails
prints one line naming the file and the reason ("…/val.npy: chunk 12 (images 504–545) differs from its checksum
recorded at build time; rebuilding the cache") and is rebuilt; so are the mean images derived from it.

Training batches then come from the array: a seeded permutation per epoch, a random ``crop_size`` crop and horizontal
flip done as one gather over the whole batch, and PCA lighting noise (AlexNet §4.1) as one (B, 3) matrix product.
Every random number is drawn from a generator seeded by (seed, epoch, batch), so a resumed run sees the same batches.

Every batch is normalised the same way (``Normalisation``): (pixel − mean) / std on the 0–255 scale, where the mean is
an image (3, S, S) subtracted at the stored pixel positions *before* any crop or flip (AlexNet §2 subtracts the mean
image of the training set from each pixel of the 256×256 images; a per-channel mean is the same image, constant).
Evaluation batches are the centre crop (``EvalBatches``) or the ten crops of AlexNet §4.1 (``TenCropBatches``).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.core import faults
from benchmarks.tasks.files import DataError
from benchmarks.tasks.manifest import ImageRecord

CACHE_FORMAT = 1  # bump when the cache layout or the decoding changes (it is part of the folder's name)
META_FORMAT = 2  # meta.json's own layout: 2 records every array's header, size and chunk checksums
CHUNK_BYTES = 8 << 20  # one decode job and one checksum cover about this many bytes of whole images
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


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


def _decode_chunk(args) -> str:
    """Decode one chunk of images into rows ``start …`` of the .npy file; returns the sha256 of those rows' bytes."""
    array_path, start, paths, size, resample = args
    array = np.lib.format.open_memmap(array_path, mode="r+")
    for offset, path in enumerate(paths):
        array[start + offset] = decode(Path(path), size, resample)
    array.flush()
    image_bytes = array[0].nbytes
    return chunk_sha256(Path(array_path), array.offset + start * image_bytes, len(paths) * image_bytes)


def chunk_sha256(path: Path, offset: int, length: int) -> str:
    """sha256 of ``length`` bytes of ``path`` from ``offset`` (fewer when the file ends early: then it differs)."""
    with open(path, "rb", buffering=0) as f:
        f.seek(offset)
        return hashlib.sha256(f.read(length)).hexdigest()


def _die_with_parent(build_pid: int) -> None:
    """Decode-worker initializer: a worker never outlives the build that started it.

    A SIGKILLed build runs no clean-up, and its orphaned workers would keep decoding into (or wait forever on the queue
    of) a build that no longer exists. On Linux the kernel kills the worker when its parent dies (PR_SET_PDEATHSIG);
    everywhere, a daemon thread also exits the worker once its parent changes (portable, within half a second).
    """
    parent = os.getppid()  # the build (fork, spawn) or multiprocessing's fork server, which exits with the build
    if sys.platform == "linux":
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # no libc to call: the thread below still watches
            pass
    if not _alive(build_pid) or os.getppid() != parent:  # the build died before the watch began
        os._exit(1)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's (the pid was reused)
        return True
    return True


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def images_per_chunk(image_bytes: int) -> int:
    """How many whole images one decode job and one checksum cover: about ``CHUNK_BYTES``, at least one."""
    return max(1, CHUNK_BYTES // image_bytes)


def build_split(paths: list[Path], spec: CacheSpec, out: Path, workers: int, label: str) -> dict:
    """Decode ``paths`` into the .npy file ``out`` in parallel chunks, with a progress bar; returns the split's record
    for meta.json (shape, header, size, and the sha256 of every chunk of ``images_per_chunk`` images)."""
    from rich.progress import Progress

    shape = (len(paths), 3, spec.storage_size, spec.storage_size)
    partial = out.with_name(out.name + ".part")
    partial.unlink(missing_ok=True)  # a killed build's file: start afresh (a new inode, whatever still holds the old)
    np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape).flush()
    chunk = images_per_chunk(int(np.prod(shape[1:])))
    jobs = [(str(partial), i, [str(p) for p in paths[i : i + chunk]], spec.storage_size, spec.resample)
            for i in range(0, len(paths), chunk)]  # fmt: skip
    digests = []
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent, initargs=(os.getpid(),))
    with Progress(transient=False) as progress, pool:
        bar = progress.add_task(f"decoding {label} ({len(paths)} images → {spec.storage_size} px)", total=len(paths))
        for job, digest in zip(jobs, pool.map(_decode_chunk, jobs)):
            digests.append(digest)
            progress.advance(bar, len(job[2]))
            if len(digests) == 1:
                faults.reached("cache-build")  # the fault tests kill the build here, one chunk in
    record = _array_record(partial, chunk, digests)
    os.replace(partial, out)
    return record


def _read_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, offset of the data) from a .npy file's header; ValueError when it is not one."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = reader(f)
        if fortran_order:
            raise ValueError("Fortran-ordered")
        return shape, dtype, f.tell()


def _array_record(path: Path, chunk: int, digests: list[str]) -> dict:
    shape, dtype, offset = _read_header(path)
    with open(path, "rb") as f:
        header = f.read(offset)
    return {"images": shape[0], "shape": list(shape), "dtype": dtype.str, "data_offset": offset,
            "header_sha256": sha256_bytes(header), "bytes": path.stat().st_size, "chunk_images": chunk,
            "chunk_sha256": digests}  # fmt: skip


def array_problem(path: Path, record: dict) -> str | None:
    """Why the .npy file ``path`` is not the array ``record`` (meta.json) describes, or None when it is.

    Checks its size and header (cheap), then the sha256 of every chunk in one pass; names the first bad chunk.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return f"{path}: missing"
    if size != record["bytes"]:
        return f"{path}: {size:,} bytes, {record['bytes']:,} when it was built (truncated or replaced)"
    with open(path, "rb") as f:
        header = f.read(record["data_offset"])
    if sha256_bytes(header) != record["header_sha256"]:
        return f"{path}: its .npy header differs from the one recorded at build time"
    count, chunk = record["images"], record["chunk_images"]
    image_bytes = int(np.prod(record["shape"][1:])) * np.dtype(record["dtype"]).itemsize
    starts = range(0, count, chunk)
    if len(starts) != len(record["chunk_sha256"]):
        return f"{path}: meta.json records {len(record['chunk_sha256'])} chunk checksums for {len(starts)} chunks"
    with open(path, "rb", buffering=0) as f:  # one pass in order: threads gained nothing on 2 cores
        f.seek(record["data_offset"])
        for i, (start, recorded) in enumerate(zip(starts, record["chunk_sha256"])):
            if hashlib.sha256(f.read(min(chunk, count - start) * image_bytes)).hexdigest() != recorded:
                last = min(start + chunk, count) - 1
                return f"{path}: chunk {i} (images {start}–{last}) differs from its checksum recorded at build time"
    return None


def cache_path(cache_root: Path, name: str, spec: CacheSpec, manifest_sha256: str) -> Path:
    return cache_root / "images" / f"{name}-{spec.storage_size}px-{spec.key(manifest_sha256)}"


def cache_problem(folder: Path, expected: dict) -> str | None:
    """Why the cache ``folder`` cannot be used, or None when it passes every check (see ``ensure_cache``).

    ``expected`` is what meta.json must say besides the arrays' records: the manifest, size, resampling, format and
    the image count of each split.
    """
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        return f"{meta_path}: missing (the build was interrupted, or the file deleted)"
    except (OSError, ValueError) as error:
        return f"{meta_path}: unreadable ({error})"
    if not isinstance(meta, dict) or meta.get("meta_format") != META_FORMAT:
        return f"{meta_path}: not of this format (meta_format {META_FORMAT}, with chunk checksums)"
    splits = meta.get("splits", {})
    described = {key: meta.get(key) for key in expected if key != "splits"}
    described["splits"] = {s: r.get("images") if isinstance(r, dict) else r for s, r in splits.items()}
    if described != expected:
        return f"{meta_path}: describes another build ({described}, expected {expected})"
    for split in sorted(splits):
        try:
            problem = array_problem(folder / f"{split}.npy", splits[split])
        except (KeyError, TypeError, ValueError) as error:
            problem = f"{meta_path}: the record of {split} is malformed ({error!r})"
        if problem is not None:
            return problem
    return None


def _signature(folder: Path, splits: list[str]) -> tuple | None:
    """Identity of the cache's files as they are now (inode, size, mtime): a check holds while it is unchanged."""
    try:
        stats = [(folder / name).stat() for name in ["meta.json", *(f"{s}.npy" for s in splits)]]
    except OSError:
        return None
    return tuple((st.st_ino, st.st_size, st.st_mtime_ns) for st in stats)


_checked: dict[Path, tuple] = {}  # folder → _signature when it last passed (or was built) in this process


def ensure_cache(records: list[ImageRecord], root: Path, manifest_sha256: str, spec: CacheSpec, cache_root: Path,
                 name: str, workers: int | None = None, before_build=None) -> Path:  # fmt: skip
    """The cache folder for these records, checked, and built when absent or failing a check; returns the folder.

    The check: meta.json is readable, of this format and describes this build; each split's .npy exists with the
    recorded size and header; every chunk's sha256 is the one recorded when it was built. A cache that fails prints
    one line naming the file and the reason, and is rebuilt (``before_build`` runs first, e.g. the manifest check of
    the source files). A check that passed is not repeated in this process while the files' inode, size and mtime
    are unchanged (prepare_data and setup both ask).
    """
    folder = cache_path(cache_root, name, spec, manifest_sha256)
    splits = sorted({r.split for r in records})
    expected = {"manifest_sha256": manifest_sha256, "storage_size": spec.storage_size, "resample": spec.resample,
                "format": CACHE_FORMAT, "splits": {s: sum(r.split == s for r in records) for s in splits}}  # fmt: skip
    if _checked.get(folder, False) == _signature(folder, splits):
        return folder
    if folder.is_dir() and any(folder.iterdir()):
        problem = cache_problem(folder, expected)
        if problem is None:
            _checked[folder] = _signature(folder, splits)
            return folder
        print(f"{problem}; rebuilding the cache", flush=True)
        _clear(folder)
    if before_build is not None:
        before_build()
    folder.mkdir(parents=True, exist_ok=True)
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    arrays = {}
    for split in splits:
        paths = [root / r.path for r in records if r.split == split]
        arrays[split] = build_split(paths, spec, folder / f"{split}.npy", workers, f"{name}/{split}")
    meta = {**expected, "meta_format": META_FORMAT, "checksum": "sha256", "splits": arrays}
    _write_atomically(folder / "meta.json", lambda f: f.write((json.dumps(meta, indent=2) + "\n").encode()))
    _checked[folder] = _signature(folder, splits)
    return folder


def _clear(folder: Path) -> None:
    """Remove a failed cache's files: meta.json first (so a rebuild killed now is never taken for a finished one),
    then the arrays, unfinished builds and the mean images derived from the old arrays."""
    (folder / "meta.json").unlink(missing_ok=True)
    for path in folder.iterdir():
        if path.is_file() and (path.suffix in (".npy", ".part") or "-mean-" in path.name):
            path.unlink()


def open_split(folder: Path, split: str, expected: int) -> np.ndarray:
    """The decoded images of ``split`` as a read-only memmap (N, 3, S, S); ``ensure_cache`` has checked the file."""
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
