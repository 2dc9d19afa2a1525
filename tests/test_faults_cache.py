"""Issue 15, "no cache is trusted blindly": a damaged derived-data cache is noticed in one line and rebuilt.

The decoded image cache (``imagecache.ensure_cache``) and the BPE tokenizer cache (``tokenizer.cached_bpe``) are
damaged the ways a tester did: bytes flipped, images zeroed, the array replaced by another of the same shape,
meta.json / the .npy deleted, the .npy truncated; a token id swapped, the tokenizer truncated, its record deleted.
Each time the next use prints exactly one line naming the file and the reason, no traceback, and loads exactly what an
undamaged build holds. A build SIGKILLed one chunk in (``MILESTONES_KILL_AT=cache-build``) leaves no decode worker
alive, and the next build starts cleanly and makes the same array. Fixtures are tiny images and a tiny corpus made here.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.tasks import imagecache
from benchmarks.tasks.imagecache import CacheSpec, ensure_cache
from benchmarks.tasks.imageset import ImageSetData, derived_manifest
from benchmarks.tasks.manifest import read_manifest, scan_folder, write_manifest
from benchmarks.tasks.tokenizer import BPESettings, cached_bpe
from benchmarks.tasks.translation import load_lines

SIZE = 16  # stored px: an image is 3 · 16 · 16 = 768 bytes
CHUNK = 4  # images per checksum chunk in these tests (the real size is ~8 MB)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Chunks of 4 images, so a test set has several; and a fresh 'already checked' memo, as a new run has."""
    monkeypatch.setattr(imagecache, "CHUNK_BYTES", CHUNK * 3 * SIZE * SIZE)
    monkeypatch.setattr(imagecache, "_checked", {})


def make_images(root: Path, per_split: dict[str, int]) -> Path:
    """<root>/<split>/<class>/<i>.jpg: random 20×24 JPEGs in two classes."""
    rng = np.random.default_rng(0)
    for split, count in per_split.items():
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
                    root / split / label / f"{i}.jpg"
                )
    return root


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    return make_images(tmp_path_factory.mktemp("images"), {"train": 12, "val": 12})  # 24 images a split: 6 chunks


def build(root: Path, cache: Path) -> Path:
    return ensure_cache(scan_folder(root, ("train", "val")), root, "m", CacheSpec(SIZE), cache, "set", workers=1)


def arrays(folder: Path) -> dict[str, np.ndarray]:
    return {split: np.load(folder / f"{split}.npy") for split in ("train", "val")}


def notices(capsys) -> list[str]:
    """The lines a check printed (the progress bars of the rebuild aside); fails on any traceback."""
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return [line for line in out.splitlines() if line.endswith("; rebuilding the cache")]


def data_offset(path: Path) -> int:
    return np.load(path, mmap_mode="r").offset


def flip_bytes(folder: Path) -> str:
    with open(folder / "val.npy", "r+b") as f:  # image 5 (chunk 1), a few bytes into it
        f.seek(data_offset(folder / "val.npy") + 5 * 768 + 10)
        flipped = bytes(255 - b for b in f.read(3))
        f.seek(-3, os.SEEK_CUR)
        f.write(flipped)
    return r"val\.npy: chunk 1 \(images 4–7\) differs from its checksum recorded at build time"


def zero_images(folder: Path) -> str:
    with open(folder / "val.npy", "r+b") as f:  # images 10–19, as the tester zeroed 200 test images
        f.seek(data_offset(folder / "val.npy") + 10 * 768)
        f.write(bytes(10 * 768))
    return r"val\.npy: chunk 2 \(images 8–11\) differs from its checksum recorded at build time"


def replace_array(folder: Path) -> str:
    other = np.random.default_rng(1).integers(0, 256, (24, 3, SIZE, SIZE), dtype=np.uint8)
    np.save(folder / "val.npy", other)  # the same shape, dtype and header: only the checksums tell
    return r"val\.npy: chunk 0 \(images 0–3\) differs from its checksum recorded at build time"


def delete_meta(folder: Path) -> str:
    (folder / "meta.json").unlink()
    return r"meta\.json: missing \(the build was interrupted, or the file deleted\)"


def delete_array(folder: Path) -> str:
    (folder / "train.npy").unlink()
    return r"train\.npy: missing"


def truncate_array(folder: Path) -> str:
    path = folder / "val.npy"
    path.write_bytes(path.read_bytes()[:5000])
    return r"val\.npy: 5,000 bytes, 18,560 when it was built \(truncated or replaced\)"


def old_meta(folder: Path) -> str:
    meta = json.loads((folder / "meta.json").read_text())
    del meta["meta_format"]  # as the suite wrote it before chunk checksums
    (folder / "meta.json").write_text(json.dumps(meta))
    return r"meta\.json: not of this format \(meta_format 2, with chunk checksums\)"


@pytest.mark.parametrize(
    "damage", [flip_bytes, zero_images, replace_array, delete_meta, delete_array, truncate_array, old_meta]
)
def test_a_damaged_image_cache_is_noticed_in_one_line_and_rebuilt(damage, image_root, tmp_path, capsys):
    expected = arrays(build(image_root, tmp_path / "reference"))
    folder = build(image_root, tmp_path / "cache")
    assert build(image_root, tmp_path / "cache") == folder and notices(capsys) == [], "an intact cache is reused"
    pattern = damage(folder)
    imagecache._checked.clear()  # the next run
    assert build(image_root, tmp_path / "cache") == folder
    (line,) = notices(capsys)
    assert line.startswith(str(folder)) and re.search(pattern + "; rebuilding the cache$", line), line
    for split, array in arrays(folder).items():
        assert np.array_equal(array, expected[split]), split
    assert build(image_root, tmp_path / "cache") == folder and notices(capsys) == [], "the rebuilt cache passes"


class FolderSet(ImageSetData):
    """A tiny image folder as an image set, to check the data module end to end."""

    storage_size, crop_size, val_size = SIZE, 12, 4

    def __init__(self, root: Path, manifest: Path, cache_dir: Path) -> None:
        super().__init__(None, 4, cache_dir=cache_dir)
        self._root, self._manifest, self.cache_name = root, manifest, "folder"

    def root(self) -> Path:
        return self._root

    def fetch(self) -> None:
        pass

    def manifest_file(self) -> Path:
        return self._manifest


def test_the_data_module_sees_the_rebuilt_pixels_and_mean_image(image_root, tmp_path, capsys):
    """A corrupted test split is found before a batch (or a metric) is made from it; the mean image follows."""
    manifest = tmp_path / "manifest.csv.gz"
    write_manifest(scan_folder(image_root, ("train", "val")), manifest)
    clean = FolderSet(image_root, manifest, tmp_path / "cache")
    clean.setup()
    expected_x, _ = next(iter(clean.test_dataloader()))
    expected_mean = clean.normalisation.mean
    zero_images(clean.cache_folder())
    with open(clean.cache_folder() / "train.npy", "r+b") as f:  # the mean image is derived from these pixels
        f.seek(data_offset(clean.cache_folder() / "train.npy"))
        f.write(bytes(768))
    imagecache._checked.clear()
    capsys.readouterr()
    data = FolderSet(image_root, manifest, tmp_path / "cache")
    data.setup()
    (line,) = notices(capsys)
    assert "train.npy: chunk 0 (images 0–3) differs" in line
    x, _ = next(iter(data.test_dataloader()))
    assert torch.equal(x, expected_x) and torch.equal(data.normalisation.mean, expected_mean)


def children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # killed, waiting to be reaped: gone


BUILD = f"""
import sys
from pathlib import Path
from benchmarks.tasks import imagecache
from benchmarks.tasks.manifest import scan_folder
imagecache.CHUNK_BYTES = {CHUNK * 3 * SIZE * SIZE}
root, cache = Path(sys.argv[1]), Path(sys.argv[2])
imagecache.ensure_cache(scan_folder(root, ("train",)), root, "m", imagecache.CacheSpec({SIZE}), cache, "set", workers=2)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads the process table from /proc")
def test_a_build_killed_one_chunk_in_leaves_no_worker_and_the_next_build_starts_cleanly(tmp_path, capsys):
    """SIGKILL at the cache-build kill point, with the workers busy decoding: every worker is gone within seconds;
    the killed build's .part file is not taken for a cache; the next build makes the uninterrupted build's array."""
    root = tmp_path / "slow"
    (root / "train" / "a").mkdir(parents=True)
    noise = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "train" / "a" / "0.jpg", quality=95)  # ~10 ms to decode and resize
    for i in range(1, 160):
        shutil.copyfile(root / "train" / "a" / "0.jpg", root / "train" / "a" / f"{i}.jpg")
    env = {**os.environ, "MILESTONES_KILL_AT": "cache-build", "PYTHONPATH": str(REPO)}
    build = subprocess.Popen([sys.executable, "-c", BUILD, str(root), str(tmp_path / "cache")], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    workers: set[int] = set()
    while build.poll() is None:
        workers |= children(build.pid)
        time.sleep(0.01)
    assert build.returncode == -9, build.stderr.read().decode()
    assert workers, "the decode workers were running when the build was killed"
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [pid for pid in workers if alive(pid)]
    for pid in survivors:  # leave no orphan behind when this fails
        os.kill(pid, signal.SIGKILL)
    assert not survivors, "decode workers outlived the killed build"
    (folder,) = (tmp_path / "cache" / "images").iterdir()
    assert [p.name for p in folder.iterdir()] == ["train.npy.part"], "killed before any split was complete"

    records = scan_folder(root, ("train",))
    resumed = ensure_cache(records, root, "m", CacheSpec(SIZE), tmp_path / "cache", "set", workers=2)
    (line,) = notices(capsys)
    assert line == f"{folder}/meta.json: missing (the build was interrupted, or the file deleted); rebuilding the cache"
    reference = ensure_cache(records, root, "m", CacheSpec(SIZE), tmp_path / "reference", "set", workers=2)
    assert np.array_equal(np.load(resumed / "train.npy"), np.load(reference / "train.npy"))
    meta, clean = (json.loads((f / "meta.json").read_text()) for f in (resumed, reference))
    assert meta == clean and not list(resumed.glob("*.part"))


CORPUS = [
    "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.",
    "Several men in hard hats are operating a giant pulley system.",
    "Ein kleines Mädchen klettert in ein Spielhaus aus Holz.",
    "A man in a blue shirt is standing on a ladder cleaning windows.",
] * 10
SMALL = BPESettings(vocab_size=300, min_frequency=2)
ENGLISH = [CORPUS[1], CORPUS[3]] * 2


def swap_token_ids(path: Path) -> str:
    data = json.loads(path.read_text())
    vocab = data["model"]["vocab"]
    vocab["in"], vocab["an"] = vocab["an"], vocab["in"]  # still a valid tokenizer: only the checksum tells
    path.write_text(json.dumps(data, ensure_ascii=False))
    return "sha256 differs from the one recorded when it was trained (the file was altered)"


def truncate_tokenizer(path: Path) -> str:
    path.write_text(path.read_text()[:1000])
    return "sha256 differs from the one recorded when it was trained (the file was altered)"


def delete_record(path: Path) -> str:
    path.with_name(path.stem + ".record.json").unlink()
    return "missing (the record of the tokenizer's checksum)"


def delete_tokenizer(path: Path) -> str:
    path.unlink()
    return "missing (its checksum record is there)"


@pytest.mark.parametrize("damage", [swap_token_ids, truncate_tokenizer, delete_record, delete_tokenizer])
def test_a_damaged_tokenizer_cache_is_noticed_in_one_line_and_trained_again(damage, tmp_path, capsys):
    tokenizer, sha256 = cached_bpe("corpus", CORPUS, SMALL, cache=tmp_path)
    (path,) = (p for p in (tmp_path / "tokenizers").glob("*.json") if not p.name.endswith(".record.json"))
    assert cached_bpe("corpus", CORPUS, SMALL, cache=tmp_path)[1] == sha256 and capsys.readouterr().out == ""
    reason = damage(path)
    again, again_sha256 = cached_bpe("corpus", CORPUS, SMALL, cache=tmp_path)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    file = path if damage is not delete_record else path.with_name(path.stem + ".record.json")
    assert out.splitlines() == [f"{file}: {reason}; training the tokenizer again"]
    assert again_sha256 == sha256 and again.to_str() == tokenizer.to_str(), "retraining is deterministic"
    assert again.encode(CORPUS[0]).ids == tokenizer.encode(CORPUS[0]).ids
    assert cached_bpe("corpus", CORPUS, SMALL, cache=tmp_path)[1] == sha256 and capsys.readouterr().out == ""


def truncate_manifest(path: Path) -> str:
    path.write_bytes(path.read_bytes()[:40])
    return f"{path}: sha256 differs from the one recorded when it was built"


def delete_manifest_record(path: Path) -> str:
    path.with_name(path.name + ".sha256").unlink()
    return f"{path}.sha256: missing (the record of the manifest's checksum)"


def delete_manifest(path: Path) -> str:
    path.unlink()
    return f"{path}: unreadable ([Errno 2] No such file or directory: '{path}')"


@pytest.mark.parametrize("damage", [truncate_manifest, delete_manifest_record, delete_manifest])
def test_a_damaged_derived_manifest_is_noticed_in_one_line_and_built_again(damage, image_root, tmp_path, capsys):
    """The manifests the suite hashes itself (an extracted archive's, the user's ILSVRC-2012 subset's) are derived
    data too: their sha256 is a result's data identity, or keys the image cache."""
    path = tmp_path / "manifests" / "set.csv.gz"
    path.parent.mkdir()
    built = derived_manifest(path, lambda: scan_folder(image_root, ("train", "val")))
    expected = path.read_bytes()
    assert derived_manifest(path, lambda: pytest.fail("an intact manifest is reused")) == built
    reason = damage(path)
    capsys.readouterr()
    assert derived_manifest(path, lambda: scan_folder(image_root, ("train", "val"))) == path
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and out.splitlines() == [f"{reason}; building the manifest again"]
    assert path.read_bytes() == expected and read_manifest(path) == scan_folder(image_root, ("train", "val"))


def test_a_damaged_datasets_cache_of_the_translation_text_is_rebuilt_not_blamed_on_the_file(
    tmp_path, monkeypatch, capsys
):
    """Multi30k is read through ``datasets``, whose Arrow cache is derived data: one swapped word in it was reported as
    a fault of the (md5-checked) text file; now the cache is named in one line and rebuilt from the file."""
    monkeypatch.setenv("MILESTONES_CACHE", str(tmp_path / "cache"))
    source, target = tmp_path / "train.de.gz", tmp_path / "train.en.gz"  # only the source has "Spielhaus"
    for path, lines in ((source, CORPUS[:4]), (target, ENGLISH)):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    expected = load_lines(source, target)
    assert expected == (CORPUS[:4], ENGLISH)
    arrows = [p for p in (tmp_path / "cache" / "hf-datasets").rglob("*.arrow") if b"Spielhaus" in p.read_bytes()]
    for arrow in arrows:  # one word changed in place: the same length, a valid Arrow file
        arrow.write_bytes(arrow.read_bytes().replace(b"Spielhaus", b"Spielhof!"))
    capsys.readouterr()
    assert arrows and load_lines(source, target) == expected
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert out.splitlines() == [
        f"{source}: the datasets cache of this file holds 4 rows that differ from the file's 4 lines; "
        "rebuilding it from the file"
    ]
    assert load_lines(source, target) == expected and capsys.readouterr().out == "", "the rebuilt cache is reused"
