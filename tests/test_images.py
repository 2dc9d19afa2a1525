"""The image pipeline: manifests, the decoded cache, batched augmentation, the training set's mean image (AlexNet §2),
the ten-crop test (§4.1), bad inputs, and AlexNet through the harness.

Fixtures are tiny JPEG/PNG folders made here (odd sizes, grayscale, CMYK, alpha); the real Imagenette copy is only
checked against the committed manifest, and only where MILESTONES_DATA holds it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.running.harness import run_benchmark
from benchmarks.tasks import get_task
from benchmarks.tasks.files import DataError
from benchmarks.tasks.imagecache import (
    AugmentedBatches,
    CacheSpec,
    EvalBatches,
    Normalisation,
    TenCropBatches,
    cached_mean_image,
    decode,
    ensure_cache,
    ten_crop,
)
from benchmarks.tasks.imagenette import Imagenette224Data, ImagenetteData, logits_by_image, ten_crop_probabilities
from benchmarks.tasks.manifest import read_manifest, scan_folder, verify, write_manifest

CLASSES = ["n01", "n02", "n03"]


def make_folder(root: Path, per_class: dict[str, int]) -> Path:
    """<root>/<split>/<class>/*.jpg of random pixels: odd sizes, and one grayscale, one CMYK and one RGBA PNG image."""
    rng = np.random.default_rng(0)
    for split, count in per_class.items():
        for c, label in enumerate(CLASSES):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (40 + 7 * i, 56, 3), dtype=np.uint8)
                pixels[..., c] = 255  # each class has its own dominant colour
                image = Image.fromarray(pixels)
                if i == 1:
                    image.convert("L").save(folder / f"{i}.jpg")
                elif i == 2:
                    image.convert("CMYK").save(folder / f"{i}.jpg")
                elif i == 3:
                    image.convert("RGBA").save(folder / f"{i}.png")
                else:
                    image.save(folder / f"{i}.JPEG")
    return root


@pytest.fixture
def folder(tmp_path) -> Path:
    return make_folder(tmp_path / "set", {"train": 6, "val": 2})


def test_manifest_is_reproducible_and_round_trips(folder, tmp_path):
    records = scan_folder(folder, ("train", "val"))
    assert len(records) == 3 * 8 and {r.label for r in records} == set(CLASSES)
    first = write_manifest(records, tmp_path / "a.csv.gz")
    second = write_manifest(list(reversed(records)), tmp_path / "b.csv.gz")
    assert first == second, "the same files give a byte-identical manifest"
    assert read_manifest(tmp_path / "a.csv.gz") == sorted(records, key=lambda r: (r.split, r.path))
    verify(records, folder)


def test_a_corrupt_or_missing_file_is_named(folder):
    records = scan_folder(folder, ("train",))
    victim = folder / records[4].path
    victim.write_bytes(victim.read_bytes()[:-10] + b"x" * 10)
    with pytest.raises(DataError, match=f"{victim.name}: sha256 .* \\(corrupt\\)"):
        verify(records, folder)
    victim.unlink()
    with pytest.raises(DataError, match=f"{victim.name}: missing \\(1 of 18"):
        verify(records, folder)


def test_class_list_naming_an_absent_class_and_an_empty_class_are_named(folder):
    with pytest.raises(DataError, match="n99"):
        scan_folder(folder, ("train",), classes=["n01", "n99"])
    for f in (folder / "train" / "n02").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="n02: class folder holds no images"):
        scan_folder(folder, ("train",))


def test_decode_converts_grayscale_cmyk_and_alpha_and_names_a_broken_file(folder, tmp_path):
    for name in ("1.jpg", "2.jpg", "3.png", "0.JPEG"):
        array = decode(folder / "train" / "n01" / name, 32)
        assert array.shape == (3, 32, 32) and array.dtype == np.uint8
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match="broken.jpg: cannot be decoded"):
        decode(broken, 32)


def test_cache_is_built_once_and_rebuilt_when_the_settings_change(folder, tmp_path):
    records = scan_folder(folder, ("train", "val"))
    cache = tmp_path / "cache"
    built = ensure_cache(records, folder, "m1", CacheSpec(32), cache, "set", workers=2)
    train = np.load(built / "train.npy")
    assert train.shape == (18, 3, 32, 32)
    assert np.array_equal(train[0], decode(folder / records[0].path, 32))  # row i is manifest row i
    stamp = (built / "train.npy").stat().st_mtime_ns
    assert ensure_cache(records, folder, "m1", CacheSpec(32), cache, "set") == built
    assert (built / "train.npy").stat().st_mtime_ns == stamp, "a finished cache is reused"
    assert ensure_cache(records, folder, "m1", CacheSpec(40), cache, "set") != built, "a new size is a new cache"
    assert ensure_cache(records, folder, "m2", CacheSpec(32), cache, "set") != built, "a new manifest is a new cache"


def augmented(store, seed=0, epoch=0, lighting=None, crop=24):
    labels = torch.arange(len(store))
    batches = AugmentedBatches(store, labels, torch.arange(len(store)), 4, crop, seed=seed, epoch=lambda: epoch,
                               lighting=lighting)  # fmt: skip
    return list(batches)


def test_batched_crop_and_flip_equal_the_per_image_crop_and_flip():
    store = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(5)
    batches = AugmentedBatches(store, torch.zeros(10), torch.arange(10), 10, 24, seed=0, epoch=lambda: 0, lighting=None)
    out = batches.augment(store, generator)
    generator = torch.Generator().manual_seed(5)  # the same draws, replayed one image at a time
    top, left = torch.randint(0, 9, (10,), generator=generator), torch.randint(0, 9, (10,), generator=generator)
    flip = torch.rand(10, generator=generator) < 0.5
    assert flip.any() and (~flip).any()
    for i in range(10):
        expected = store[i, :, top[i] : top[i] + 24, left[i] : left[i] + 24].float() / 255
        assert torch.equal(out[i], expected.flip(-1) if flip[i] else expected)


def test_the_mean_image_is_subtracted_at_the_same_stored_pixel_before_the_crop_and_flip():
    """A training crop is crop(image − mean image), mirrored with it: the mean is aligned pixel by pixel (§2)."""
    store = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    mean = torch.rand(3, 32, 32) * 255  # a mean image with structure, so a misaligned subtraction shows
    std = torch.tensor([2.0, 3.0, 4.0])
    normalisation = Normalisation(mean, std)
    batches = AugmentedBatches(store, torch.zeros(6), torch.arange(6), 6, 24, seed=0, epoch=lambda: 0, lighting=None,
                               normalisation=normalisation)  # fmt: skip
    out = batches.augment(store, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    top, left = torch.randint(0, 9, (6,), generator=generator), torch.randint(0, 9, (6,), generator=generator)
    flip = torch.rand(6, generator=generator) < 0.5
    centred = (store.float() - mean) / std[:, None, None]  # the whole stored image first, then its crop
    for i in range(6):
        expected = centred[i, :, top[i] : top[i] + 24, left[i] : left[i] + 24]
        assert torch.allclose(out[i], expected.flip(-1) if flip[i] else expected, atol=1e-4)


def test_augmentation_is_a_function_of_seed_and_epoch():
    store = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8)
    basis = (torch.eye(3), torch.tensor([0.2, 0.05, 0.01]))
    a, b = augmented(store, lighting=basis), augmented(store, lighting=basis)
    assert all(torch.equal(x, y) and torch.equal(i, j) for (x, i), (y, j) in zip(a, b))
    c = augmented(store, epoch=1, lighting=basis)
    assert not all(torch.equal(x, y) for (x, _), (y, _) in zip(a, c))
    memmap_like = store.numpy()  # a numpy store (the CPU memmap path) gives the same batches as a tensor store
    d = augmented(memmap_like, lighting=basis)
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(a, d))


def test_pca_lighting_shifts_each_image_by_one_colour():
    store = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    plain = augmented(store, lighting=None)
    lit = augmented(store, lighting=(torch.eye(3), torch.tensor([0.2, 0.05, 0.01])))
    for (x, _), (y, _) in zip(plain[:1], lit[:1]):
        shift = y - x  # the first batch's crops are the same draws: its lighting draws come after them
        per_image = shift.flatten(2)
        assert torch.allclose(per_image, per_image[..., :1].expand_as(per_image), atol=1e-6)
        assert shift.abs().max() > 0


def test_eval_batches_are_whole_images_in_order():
    store = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    batches = list(EvalBatches(store, torch.arange(5), torch.arange(5), 2, torch.device("cpu")))
    assert [len(y) for _, y in batches] == [2, 2, 1]
    assert torch.equal(torch.cat([x for x, _ in batches]), store.float() / 255)


def test_validation_batches_are_the_normalised_centre_crop():
    store = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    mean = torch.rand(3, 8, 8) * 255
    (x, y), = EvalBatches(store, torch.arange(3), torch.arange(3), 3, torch.device("cpu"), crop_size=6,
                          normalisation=Normalisation(mean, torch.ones(3)))  # fmt: skip
    assert torch.allclose(x, (store.float() - mean)[..., 1:7, 1:7]) and torch.equal(y, torch.arange(3))


def position_image(size: int) -> torch.Tensor:
    """(1, 3, size, size) whose pixel (i, j) holds 100·i + j in every channel: a crop names where it came from."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (100 * rows + cols).float().expand(1, 3, size, size)


def test_the_ten_crops_are_the_four_corners_the_centre_and_their_mirror_images():
    """AlexNet §4.1: five 224 patches (four corners, centre) and their horizontal reflections, at their pixels."""
    views = ten_crop(position_image(256), 224)
    assert len(views) == 10 and all(v.shape == (1, 3, 224, 224) for v in views)
    top_left = [(int(v[0, 0, 0, 0]) // 100, int(v[0, 0, 0, 0]) % 100) for v in views[:5]]
    assert top_left == [(0, 0), (0, 32), (32, 0), (32, 32), (16, 16)]  # TL, TR, BL, BR, centre (256 − 224 = 32)
    bottom_right = [int(v[0, 0, -1, -1]) for v in views[:5]]
    assert bottom_right == [223 * 100 + 223, 223 * 100 + 255, 255 * 100 + 223, 255 * 100 + 255, 239 * 100 + 239]
    for plain, mirrored in zip(views[:5], views[5:]):
        assert torch.equal(mirrored, plain.flip(-1))  # the same patch, columns reversed
        assert int(mirrored[0, 0, 0, 0]) == int(plain[0, 0, 0, -1]) and not torch.equal(mirrored, plain)


def test_ten_crop_batches_are_view_major_normalised_crops_of_the_test_images():
    rows, cols = torch.meshgrid(torch.arange(12), torch.arange(12), indexing="ij")
    store = torch.stack([(10 * rows + cols + k).to(torch.uint8).expand(3, 12, 12) for k in range(5)])  # (5, 3, 12, 12)
    mean = torch.rand(3, 12, 12) * 50
    normalisation = Normalisation(mean, torch.tensor([1.0, 2.0, 4.0]))
    batches = TenCropBatches(store, torch.arange(5) * 7, torch.arange(5), 2, torch.device("cpu"), 8, normalisation)
    chunks = list(batches)
    assert len(batches) == len(chunks) == 3 and [len(c) for c in chunks] == [20, 20, 10]
    assert torch.equal(batches.labels, torch.arange(5) * 7)
    centred = (store.float() - mean) / normalisation.std[:, None, None]  # normalised at the stored pixel, then cropped
    for view, expected in enumerate(ten_crop(centred[:2], 8)):
        assert torch.allclose(chunks[0][2 * view : 2 * view + 2], expected)  # view-major: view k of images 0 and 1


def test_the_ten_crop_prediction_is_the_mean_of_the_ten_softmaxes():
    torch.manual_seed(0)
    batches = [torch.randn(10 * 3, 4), torch.randn(10 * 2, 4)]  # two predict batches of 3 and 2 images, view-major
    logits = torch.cat(logits_by_image(batches))  # (5, 10, 4)
    mean, centre = ten_crop_probabilities(logits)
    for batch, first in ((batches[0], 0), (batches[1], 3)):
        for image in range(len(batch) // 10):
            views = batch.view(10, -1, 4)[:, image]  # the image's ten rows of logits
            expected = torch.stack([row.softmax(-1) for row in views]).mean(0)
            assert torch.allclose(mean[first + image], expected, atol=1e-6)
            assert torch.allclose(centre[first + image], views[4].softmax(-1))
    assert not torch.allclose(mean, logits.mean(1).softmax(-1)), "softmaxes averaged, not logits"


def tiny_imagenette(folder: Path, tmp_path: Path, monkeypatch, val_size: int = 6) -> Path:
    """``folder`` served as imagenette-224re (its own manifest, a tmp cache); returns the data folder."""
    manifest = tmp_path / "manifest.csv.gz"
    write_manifest(scan_folder(folder, ("train", "val")), manifest)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "imagenette2-224").symlink_to(folder)
    monkeypatch.setattr(Imagenette224Data, "manifest_path", manifest)
    monkeypatch.setattr(Imagenette224Data, "val_size", val_size)
    monkeypatch.setenv("MILESTONES_CACHE", str(tmp_path / "cache"))
    return data_dir


def test_the_mean_image_is_the_mean_of_the_training_images_only(folder, tmp_path, monkeypatch):
    """§2's mean is over the images the model trains on: not the held-out ones, not the (here white) test images."""
    for image in (folder / "val").rglob("*.*"):
        Image.new("RGB", (56, 40), (255, 255, 255)).save(image.with_suffix(".png"))
        image.unlink()
    data = Imagenette224Data(tiny_imagenette(folder, tmp_path, monkeypatch), 4, cache_dir=tmp_path / "cache")
    data.setup()
    train = np.load(data.cache_folder() / "train.npy").astype(np.float64)
    expected = train[data.train_indices.numpy()].mean(0)
    assert np.allclose(data.normalisation.mean.numpy(), expected, atol=1e-4)
    assert data.normalisation.mean.shape == (3, 256, 256) and torch.equal(data.normalisation.std, torch.ones(3))
    assert not np.allclose(expected, train.mean(0), atol=0.1), "the 6 held-out images are left out"
    test = np.load(data.cache_folder() / "val.npy").astype(np.float64)
    assert (test == 255).all() and not np.allclose(expected, np.concatenate([train, test]).mean(0), atol=0.1)
    x, _ = next(iter(data.val_dataloader()))  # the held-out images' centre crops, minus the same mean's centre
    held_out = torch.from_numpy(train[data.val_indices.numpy()[:1]]).float()
    assert torch.allclose(x[:1], (held_out - data.normalisation.mean)[..., 16:240, 16:240], atol=1e-3)


def test_a_corrupt_cached_mean_image_is_rebuilt(tmp_path, capsys):
    store = np.random.default_rng(0).integers(0, 256, (7, 3, 16, 16), dtype=np.uint8)
    indices = np.array([5, 0, 2, 3])
    expected = store[indices].astype(np.float64).mean(0)
    first = cached_mean_image(tmp_path, "train", store, indices)
    assert np.allclose(first, expected) and first.dtype == np.float32
    (saved,) = tmp_path.glob("train-mean-*.npy")
    assert np.array_equal(cached_mean_image(tmp_path, "train", store, indices), first), "reused when intact"
    data = bytearray(saved.read_bytes())
    data[-5] ^= 0xFF  # one flipped pixel value: still a loadable array, with the wrong numbers
    saved.write_bytes(bytes(data))
    assert np.array_equal(cached_mean_image(tmp_path, "train", store, indices), first)
    assert "sha256 differs" in capsys.readouterr().out
    assert np.array_equal(np.load(saved), first), "the file was written again"
    saved.write_bytes(b"truncated")
    assert np.array_equal(cached_mean_image(tmp_path, "train", store, indices), first)
    other = cached_mean_image(tmp_path, "train", store, np.array([1, 6]))  # another training split: its own file
    assert np.allclose(other, store[[1, 6]].astype(np.float64).mean(0)) and len(list(tmp_path.glob("*.npy"))) == 2


def test_imagenet_channel_normalisation_is_torchvisions(folder, tmp_path, monkeypatch):
    from torchvision.transforms import Normalize

    data_dir = tiny_imagenette(folder, tmp_path, monkeypatch)
    data = Imagenette224Data(data_dir, 4, cache_dir=tmp_path / "cache", normalisation="imagenet-channel")
    data.setup()
    x, _ = next(iter(data.test_dataloader()))
    raw = torch.from_numpy(np.load(data.cache_folder() / "val.npy")[: len(x)]).float() / 255
    expected = Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(raw[..., 16:240, 16:240])
    assert torch.allclose(x, expected, atol=1e-5)
    with pytest.raises(ValueError, match="mean-image, imagenet-channel"):
        Imagenette224Data(data_dir, 4, normalisation="per-pixel")


def test_the_task_tests_every_entry_on_ten_crops_through_its_forward(folder, tmp_path, monkeypatch):
    """TenCropTask.evaluate: the best weights' forward on each test image's ten crops, softmax averaged; the centre
    crop alone beside it. Checked against the same sums done by hand with a small model."""
    import lightning as L

    from lightning_modules.base import Classifier

    class Tiny(Classifier):
        def __init__(self):
            super().__init__(3)
            self.head = torch.nn.Linear(3 * 4 * 4, 3)

        def forward(self, x):
            return self.head(torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1))

    data = Imagenette224Data(tiny_imagenette(folder, tmp_path, monkeypatch), 4, cache_dir=tmp_path / "cache")
    data.setup()
    torch.manual_seed(0)
    model = Tiny().eval()
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    metrics = get_task("imagenette-224re").evaluate(trainer, model, data, ckpt_path=None, artifacts=tmp_path)
    store, labels = data.stores["val"]
    images = data.normalisation.apply(torch.from_numpy(np.array(store)))
    with torch.no_grad():
        probabilities = torch.stack([model(view).softmax(-1) for view in ten_crop(images, 224)])  # (10, N, C)
    ten = (probabilities.mean(0).argmax(-1) == labels).double().mean().item() * 100
    centre = (probabilities[4].argmax(-1) == labels).double().mean().item() * 100
    assert metrics["error"] == pytest.approx(100 - ten) and metrics["error_center"] == pytest.approx(100 - centre)
    assert metrics["top5_error"] == metrics["top5_error_center"] == 0.0  # 3 classes: the label is always in the top 5
    assert set(metrics) == {"error", "accuracy", "top5_error", "error_center", "top5_error_center"}


def test_imagenette_224re_without_data_says_what_to_do(tmp_path):
    data = Imagenette224Data(tmp_path, 128, download=False, cache_dir=tmp_path / "cache")
    with pytest.raises(DataError) as error:
        data.prepare_data()
    message = str(error.value)
    assert "imagenette2-224" in message and "--data-dir" in message and "--task imagenette-320" in message


def test_official_imagenette_offline_without_the_archive_names_it(tmp_path):
    data = ImagenetteData(tmp_path, 128, download=False, cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="imagenette2-320.tgz is missing and downloading is off"):
        data.prepare_data()
    assert data.identity() == {"imagenette2-320.tgz": "md5:3df6f0d01a2c9592104656642f5e78a3"}


def test_alexnet_trains_through_the_harness_on_a_tiny_image_set(folder, tmp_path, monkeypatch, quick):
    """The whole path: manifest → verified files → cache → augmented batches → AlexNet → result with top-5."""
    records = scan_folder(folder, ("train", "val"))
    manifest = tmp_path / "manifest.csv.gz"
    write_manifest(records, manifest)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "imagenette2-224").symlink_to(folder)
    monkeypatch.setattr(Imagenette224Data, "manifest_path", manifest)
    monkeypatch.setattr(Imagenette224Data, "val_size", 6)
    monkeypatch.setenv("MILESTONES_CACHE", str(tmp_path / "cache"))
    result, path = run_benchmark("alexnet", quick(task="imagenette-224re", data_dir=str(data_dir)))
    assert result.status == "ok" and path.exists()
    metrics = result.seeds[0].metrics
    assert set(metrics) >= {"error", "top5_error", "error_center", "top5_error_center"}
    assert 0 <= metrics["top5_error"] <= metrics["error"] <= 100
    assert 0 <= metrics["top5_error_center"] <= metrics["error_center"] <= 100
    assert result.dataset == {"imagenette2-224/manifest": "sha256:" + __import__("hashlib").sha256(
        manifest.read_bytes()).hexdigest()}  # fmt: skip


def test_the_real_imagenette_224_copy_matches_the_committed_manifest():
    root = Path(os.environ.get("MILESTONES_DATA", "/nonexistent")) / "imagenette2-224"
    if not root.is_dir():
        held = "holds no" if os.environ.get("MILESTONES_DATA") else "is unset: set it to a folder holding"
        pytest.skip(f"real-data test: MILESTONES_DATA {held} imagenette2-224 (CI uses ../shared/data)")
    records = read_manifest(Imagenette224Data.manifest_path)
    assert len(records) == 13_394 and sum(r.split == "val" for r in records) == 3_925
    verify(records, root)
    assert get_task("imagenette-224re").min_seeds == 3


def test_imagenet_subset_hashes_its_classes_into_a_manifest_and_names_a_missing_class(tmp_path, monkeypatch):
    from benchmarks.tasks.imagenet import ImageNetSubsetData

    make_folder(tmp_path / "data" / "imagenet", {"train": 4, "val": 2})
    class_list = tmp_path / "three.txt"
    class_list.write_text("n01\nn03\n")
    monkeypatch.setattr(ImageNetSubsetData, "class_list", class_list)
    data = ImageNetSubsetData(tmp_path / "data", 8, download=False, cache_dir=tmp_path / "cache")
    records = data.records()
    assert {r.label for r in records} == {"n01", "n03"} and len(records) == 12
    identity = data.identity()
    assert identity["manifest"] == "sha256:" + data.manifest_sha256() and "classlists/three.txt" in identity
    class_list.write_text("n01\nn07\n")  # a new list is a new manifest, and n07 is not there
    with pytest.raises(DataError, match="n07 named by the class list are absent"):
        ImageNetSubsetData(tmp_path / "data", 8, cache_dir=tmp_path / "cache").records()
    with pytest.raises(DataError, match="image-net.org"):
        ImageNetSubsetData(tmp_path / "nothing", 8, cache_dir=tmp_path / "cache").prepare_data()


def test_tiny_imagenet_layout_is_sorted_by_its_annotations(tmp_path):
    from benchmarks.tasks.imagenet import sort_tiny_imagenet

    source = tmp_path / "tiny-imagenet-200"
    (source / "val" / "images").mkdir(parents=True)
    (source / "wnids.txt").write_text("n01\nn02\n")
    for wnid in ("n01", "n02"):
        (source / "train" / wnid / "images").mkdir(parents=True)
        Image.new("RGB", (64, 64)).save(source / "train" / wnid / "images" / f"{wnid}_0.JPEG")
    for i in range(2):
        Image.new("RGB", (64, 64)).save(source / "val" / "images" / f"val_{i}.JPEG")
    (source / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn02\t0\t0\t63\t63\nval_1.JPEG\tn01\t0\n")
    sort_tiny_imagenet(source, tmp_path / "sorted")
    assert (tmp_path / "sorted" / "val" / "n02" / "val_0.JPEG").exists()
    assert (tmp_path / "sorted" / "train" / "n01" / "n01_0.JPEG").exists()
    (source / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn09\n")
    with pytest.raises(DataError, match="val_annotations.txt:1"):
        sort_tiny_imagenet(source, tmp_path / "sorted2")


def test_perf_scripts_run_on_a_tiny_folder(folder, tmp_path, monkeypatch):
    """`make perf-images` and the step timer, shrunk: both pipelines feed the model; the figures are written."""
    from benchmarks.perf import images, train_step

    monkeypatch.setenv("MILESTONES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(images.FolderData, "val_size", 3)
    report = images.main(
        [
            "--entry",
            "alexnet-owt",
            "--images",
            str(folder),
            "--rounds",
            "1",
            "--batches",
            "1",
            "--warmup",
            "0",
            "--workers",
            "0",
            "--batch-size",
            "4",
            "--json",
            str(tmp_path / "p.json"),
        ]
    )
    assert report["train_ratio_a_over_b"] > 0 and (tmp_path / "p.json").exists()
    speeds = train_step.main(["--entry", "lenet5-modern", "--task", "digits", "--batch-size", "8", "--steps", "1"])
    assert speeds["images_per_s"]["lenet5-modern 32-true"] > 0


def test_official_imagenette_archive_in_the_data_folder_is_checked_extracted_and_cached(tmp_path, monkeypatch):
    import tarfile

    from torchvision.datasets import Imagenette

    from benchmarks.tasks.files import md5sum
    from benchmarks.tasks.imagenette import CLASSES

    source = tmp_path / "src" / "imagenette2-320"
    for split in ("train", "val"):
        for wnid in CLASSES:
            (source / split / wnid).mkdir(parents=True)
            Image.new("RGB", (48, 32), color=(len(wnid), 0, 0)).save(source / split / wnid / "a.JPEG")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with tarfile.open(data_dir / "imagenette2-320.tgz", "w:gz") as tar:
        tar.add(source, arcname="imagenette2-320")
    md5 = md5sum(data_dir / "imagenette2-320.tgz")
    monkeypatch.setitem(Imagenette._ARCHIVES, "320px", ("https://example.invalid/imagenette2-320.tgz", md5))
    monkeypatch.setattr(ImagenetteData, "val_size", 2)
    data = ImagenetteData(data_dir, 4, download=False, cache_dir=tmp_path / "cache")
    data.prepare_data()
    data.setup()
    assert len(data.records()) == 20 and data.identity() == {"imagenette2-320.tgz": f"md5:{md5}"}
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == (4, 3, 224, 224) and y.shape == (4,)
    (data_dir / "imagenette2-320.tgz").write_bytes(b"truncated")
    fresh = ImagenetteData(data_dir, 4, download=False, cache_dir=tmp_path / "cache2")
    with pytest.raises(DataError, match="imagenette2-320.tgz: md5 is .*expected"):
        fresh.prepare_data()
