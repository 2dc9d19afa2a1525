"""Image-set manifests: the exact list of files a task uses (split, path, class, sha256), so a row names its images.

A manifest is a gzip'd CSV ``split,path,label,sha256`` sorted by split and path. Its own sha256 is the data identity a
result file records. ``scan_folder`` builds one from ``<root>/<split>/<class>/<image>`` folders (ImageFolder layout);
``verify`` checks every file against it before a cache is built and names the first file or class that is wrong.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from benchmarks.core.checksums import sha256_file
from benchmarks.tasks.files import DataError

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp"}


@dataclass(frozen=True)
class ImageRecord:
    split: str  # "train", "val", ...
    path: str  # relative to the data set's root, with "/" separators
    label: str  # the class name (an ImageNet WNID for ImageNet subsets)
    sha256: str


def scan_folder(root: Path, splits: tuple[str, ...], classes: list[str] | None = None) -> list[ImageRecord]:
    """Every image under ``root/<split>/<class>/``; with ``classes``, exactly those, each present and non-empty."""
    records = []
    for split in splits:
        split_dir = root / split
        if not split_dir.is_dir():
            raise DataError(f"{split_dir}: no such folder (expected {root}/<split>/<class>/<image> folders)")
        present = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
        wanted = classes if classes is not None else present
        missing = [c for c in wanted if c not in present]
        if missing:
            raise DataError(f"{split_dir}: class folder(s) {', '.join(missing[:5])} named by the class list are absent")
        for label in wanted:
            files = sorted(p for p in (split_dir / label).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DataError(f"{split_dir / label}: class folder holds no images")
            records += [ImageRecord(split, f.relative_to(root).as_posix(), label, sha256_file(f)) for f in files]
    return records


def write_manifest(records: list[ImageRecord], path: Path) -> str:
    """Write the gzip'd CSV byte-for-byte reproducibly (sorted, mtime 0); returns its sha256."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["split", "path", "label", "sha256"])
    for r in sorted(records, key=lambda r: (r.split, r.path)):
        writer.writerow([r.split, r.path, r.label, r.sha256])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(text.getvalue().encode())
    return sha256_file(path)


def read_manifest(path: Path) -> list[ImageRecord]:
    with gzip.open(path, "rt", newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != ["split", "path", "label", "sha256"]:
        raise DataError(f"{path}: not a manifest (expected the header split,path,label,sha256)")
    return [ImageRecord(*row) for row in rows[1:]]


def verify(records: list[ImageRecord], root: Path) -> None:
    """Every listed file exists with its checksum; the error names the first bad file and how many are bad."""
    missing = [r.path for r in records if not (root / r.path).is_file()]
    if missing:
        raise DataError(f"{root / missing[0]}: missing ({len(missing)} of {len(records)} listed images are missing)")
    for r in records:
        actual = sha256_file(root / r.path)
        if actual != r.sha256:
            raise DataError(f"{root / r.path}: sha256 {actual[:16]}…, the manifest says {r.sha256[:16]}… (corrupt)")


def class_counts(records: list[ImageRecord]) -> Counter:
    return Counter((r.split, r.label) for r in records)
