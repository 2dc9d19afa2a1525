"""The one ignored folder that travels with the checkout to the lent GPU machine: the data the jobs read and the
wheels that machine lacks. Built here from the data folder, every file's sha256 checked against the data folder's
SHA256SUMS; checked again before a campaign (here in the dry run, there before the first job).

The device machine takes the checkout plus carried paths, 64 MiB in all, so folders go in by the value of the jobs
that read them while they fit; one that does not fit is recorded with its size and its jobs are reported as not
fitting. Nothing is re-encoded or subset: a task's identity is its exact files.

    python -m benchmarks.tools.campaign.carry [--data-dir D]     (make gpu-carry)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.core import paths
from benchmarks.core.checksums import sha256_file
from benchmarks.core.results import write_atomic
from benchmarks.tools.campaign.jobs import JOBS, Job

CARRY = paths.REPO_ROOT / ".gpu-data"  # git-ignored (.gitignore)
LIMIT = 64 * 2**20  # what the device machine takes: checkout + carried paths
# The project's dependencies that the device image (python 3.12; its package list in the device notes, 2026-11-17)
# lacks, less wandb (the campaign runs --wandb off) and the environments' packages (no campaign job plays a game),
# plus two small ones it has in versions unknown here that datasets and pydantic bound (fsspec <= 2026.9.0,
# typing-extensions >= 4.16). Versions are constraints.txt's; pip resolves them against the image's packages there
# (datasets also wants pyarrow >= 24 and huggingface-hub >= 1.31: the image's, unchecked; pyarrow is 40 MB).
WHEELS = ("pydantic", "pydantic_core", "annotated-types", "typing-inspection", "typing_extensions", "jsonargparse",
          "docstring_parser", "typeshed_client", "platformdirs", "datasets", "dill", "multiprocess",
          "fsspec")  # fmt: skip
PLATFORM = ("--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux2014_x86_64",
            "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux_2_28_x86_64")  # fmt: skip
MiB = 2**20


def checkout_bytes() -> int:
    """What travels besides the carry: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=paths.REPO_ROOT, capture_output=True, check=True).stdout  # fmt: skip
    files = (paths.REPO_ROOT / name for name in listed.decode().split("\0") if name)
    return sum(f.stat().st_size for f in files if f.is_file())


def read_sums(folder: Path) -> dict[str, str]:
    """relative path → sha256, from ``folder``/SHA256SUMS."""
    sums = folder / "SHA256SUMS"
    if not sums.exists():
        raise SystemExit(f"carry: error: {sums} is missing: the carry copies only files whose sha256 it can check")
    pairs = (line.split(None, 1) for line in sums.read_text().splitlines() if line.strip())
    return {name.strip().removeprefix("./"): digest for digest, name in pairs}


def pinned(name: str) -> str:
    key = name.lower().replace("_", "-")
    for line in (paths.REPO_ROOT / "constraints.txt").read_text().splitlines():
        if line.split("==")[0].lower().replace("_", "-") == key:
            return line.strip()
    raise SystemExit(f"carry: error: {name} is not in constraints.txt: add it there (make lock) first")


def download_wheels(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    specs = [pinned(name) for name in WHEELS]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", *PLATFORM,
               "--dest", str(folder), *specs]  # fmt: skip
    if subprocess.run(command).returncode != 0:
        raise SystemExit("carry: error: pip could not download the wheels (offline?): run make gpu-carry where PyPI "
                         "is reachable")  # fmt: skip
    (folder / "requirements.txt").write_text("\n".join(specs) + "\n")
    return specs


def folder_order(jobs: tuple[Job, ...] = JOBS) -> list[str]:
    """Every data folder the jobs read, in the order of the most valuable job reading it."""
    return list(dict.fromkeys(folder for job in jobs for folder in job.data))


def build(data_dir: Path, carry: Path = CARRY) -> dict:
    sums = read_sums(data_dir)
    shutil.rmtree(carry, ignore_errors=True)
    specs = download_wheels(carry / "wheels")
    used = checkout_bytes() + sum(f.stat().st_size for f in (carry / "wheels").iterdir())
    record = {"limit_bytes": LIMIT, "checkout_bytes": checkout_bytes(), "wheels": specs, "folders": {},
              "left_out": {}, "data_dir": str(data_dir)}  # fmt: skip
    kept: dict[str, str] = {}
    for folder in folder_order():
        files = {name: digest for name, digest in sums.items() if name.startswith(folder + "/")}
        size = sum((data_dir / name).stat().st_size for name in files)
        if not files or used + size > LIMIT:
            why = "not in the data folder" if not files else f"{size / MiB:.1f} MiB, {(LIMIT - used) / MiB:.1f} left"
            record["left_out"][folder] = why
            print(f"carry: {folder}: left out ({why})", flush=True)
            continue
        for name, digest in files.items():
            target = carry / "data" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(data_dir / name, target)
            if sha256_file(target) != digest:
                raise SystemExit(f"carry: error: {data_dir / name} does not match its sha256 in SHA256SUMS: fix it")
        used += size
        kept |= files
        record["folders"][folder] = size
        print(f"carry: {folder}: {len(files)} files, {size / MiB:.1f} MiB, checked", flush=True)
    lines = "".join(f"{digest}  ./{name}\n" for name, digest in sorted(kept.items()))
    write_atomic(lines, carry / "data" / "SHA256SUMS", overwrite=True)
    record["total_bytes"] = used
    write_atomic(json.dumps(record, indent=1), carry / "CARRY.json", overwrite=True)
    print(f"carry: {carry}: {used / MiB:.1f} MiB with the checkout, of {LIMIT / MiB:.0f} MiB", flush=True)
    return record


def problems(jobs: list[Job], carry: Path = CARRY, verify: bool = True) -> dict[str, str]:
    """job name → why it cannot run from the carry on the GPU machine (jobs that can are absent). ``verify``
    re-hashes every carried file."""
    if not (carry / "CARRY.json").exists():
        return {job.name: f"no carry folder {carry}: run make gpu-carry" for job in jobs}
    record = json.loads((carry / "CARRY.json").read_text())
    if verify:
        for name, digest in read_sums(carry / "data").items():
            path = carry / "data" / name
            if not path.exists() or sha256_file(path) != digest:
                return {job.name: f"{path} is missing or altered: run make gpu-carry again" for job in jobs}
    have = {path.name.split("-")[0].lower().replace("_", "-") for path in (carry / "wheels").glob("*.whl")}
    found = {}
    for job in jobs:
        for folder in job.data:
            if folder not in record["folders"]:
                found[job.name] = f"{folder} does not fit the carry ({record['left_out'].get(folder, 'not built')})"
        if job.needs_datasets and "datasets" not in have:
            found.setdefault(job.name, "no datasets wheel in the carry: run make gpu-carry again")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tools.campaign.carry", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data-dir", help="the data folder (default: $MILESTONES_DATA or the cache)")
    args = parser.parse_args(argv)
    build(paths.data_dir(args.data_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
