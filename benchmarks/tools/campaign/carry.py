"""The one ignored folder that travels with the checkout to the lent GPU machine: the data the jobs read and the
wheels that machine lacks. Built here from the data folder, every file's sha256 checked against the data folder's
SHA256SUMS; checked again before a campaign (here in the dry run, there before the first job).

A device call takes the checkout plus carried paths, 64 MiB in all, and the jobs read ~200 MiB (imagenette2-224 alone
is 135 MiB), so the carry is cut into as few parts as fit, each within one call beside the checkout: the wheels and
every data folder the jobs read (one the data folder lacks is left out, and its jobs with it). The calls that take the
parts over, back to back, and then run the campaign are written to .gpu-data/CALLS.md (device.py). Nothing is
re-encoded or subset: a task's identity is its exact files.

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
from benchmarks.core.environment import code_identity
from benchmarks.core.results import write_atomic
from benchmarks.tools.campaign import device
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
MARGIN = 1 * MiB  # slack in each call for a small change to the checkout after the carry is built
MANIFEST_BYTES = 64 * 2**10  # the last part's CARRY.json
LISTED = 200  # a file's line in its part's PART.json, at most


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


def split(items: list[tuple[str, int]], budget: int, manifest: int) -> list[list[str]]:
    """Pack ``items`` (name, bytes) into as few parts of at most ``budget`` bytes as first-fit-decreasing finds (every
    part must arrive before anything runs, so their order carries no value); the part with the most room comes last
    and holds the ``manifest`` bytes too. One item larger than a part is an error."""
    parts: list[list[str]] = []
    used: list[int] = []
    for name, size in sorted(items, key=lambda item: -item[1]):
        if size > budget:
            raise SystemExit(f"carry: error: {name} ({size / MiB:.1f} MiB) does not fit one device call beside the "
                             f"checkout ({budget / MiB:.1f} MiB free)")  # fmt: skip
        k = next((k for k, u in enumerate(used) if u + size <= budget), len(parts))
        if k == len(parts):
            parts.append([])
            used.append(0)
        parts[k].append(name)
        used[k] += size
    order = sorted(range(len(parts)), key=lambda k: -used[k])
    if not parts or used[order[-1]] + manifest > budget:
        return [parts[k] for k in order] + [[]]
    return [parts[k] for k in order]


def build(data_dir: Path, carry: Path = CARRY) -> dict:
    """The carry in parts (device.py: each part travels in its own device call), then assembled here as it will be
    there, so that the dry run checks what the GPU machine will get."""
    sums = read_sums(data_dir)
    shutil.rmtree(carry, ignore_errors=True)
    staging = carry / "staging"
    specs = download_wheels(staging / "wheels")
    sources = {f"wheels/{f.name}": f for f in sorted((staging / "wheels").iterdir())}
    record = {"limit_bytes": LIMIT, "checkout_bytes": checkout_bytes(), "wheels": specs, "folders": {},
              "left_out": {}, "data_dir": str(data_dir)}  # fmt: skip
    kept: dict[str, str] = {}
    for folder in folder_order():
        files = {name: digest for name, digest in sums.items() if name.startswith(folder + "/")}
        if not files:
            record["left_out"][folder] = "not in the data folder"
            print(f"carry: {folder}: left out (not in the data folder)", flush=True)
            continue
        sources |= {f"data/{name}": data_dir / name for name in files}
        kept |= files
        record["folders"][folder] = sum((data_dir / name).stat().st_size for name in files)
    sums_text = "".join(f"{digest}  ./{name}\n" for name, digest in sorted(kept.items()))
    budget = LIMIT - record["checkout_bytes"] - MARGIN
    names = split([(name, path.stat().st_size + LISTED) for name, path in sources.items()], budget,
                  manifest=len(sums_text.encode()) + MANIFEST_BYTES)  # fmt: skip
    record["parts"] = []
    for k, part_names in enumerate(names, 1):
        part = carry / f"part-{k}"
        files = {}
        for name in part_names:
            target = part / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sources[name], target)
            files[name] = sha256_file(target)
            if name.startswith("data/") and files[name] != kept[name.removeprefix("data/")]:
                raise SystemExit(f"carry: error: {sources[name]} does not match its sha256 in SHA256SUMS: fix it")
        record["parts"].append({"part": k, "bytes": sum((part / n).stat().st_size for n in files), "files": files})
    last = carry / f"part-{len(names)}"  # also holds the manifest: SHA256SUMS and CARRY.json
    (last / "data").mkdir(parents=True, exist_ok=True)
    write_atomic(sums_text, last / "data" / "SHA256SUMS", overwrite=True)
    record["total_bytes"] = sum(part["bytes"] for part in record["parts"]) + len(sums_text.encode())
    record |= code_identity()  # the copy there has no .git: the last call names the commit (MILESTONES_GIT_COMMIT)
    record["calls"] = calls(len(names), record["git_commit"])
    summary = {key: value for key, value in record.items() if key != "parts"}
    summary["parts"] = [{"part": p["part"], "bytes": p["bytes"], "files": len(p["files"])} for p in record["parts"]]
    write_atomic(json.dumps(summary, indent=1), last / "CARRY.json", overwrite=True)
    for part in record["parts"]:  # each part's own list: what it holds, checked on arrival (device.assemble)
        files = dict(part["files"])
        if part["part"] == len(names):
            files |= {name: sha256_file(last / name) for name in ("data/SHA256SUMS", "CARRY.json")}
        listing = {"part": part["part"], "of": len(names), "files": files}
        write_atomic(json.dumps(listing, indent=1), carry / f"part-{part['part']}" / device.PART_FILE, overwrite=True)
    write_atomic(calls_text(record), carry / "CALLS.md", overwrite=True)
    shutil.rmtree(staging)
    problems = device.assemble(carry)
    if problems:
        raise SystemExit(f"carry: error: {problems[0]}")
    for folder, size in record["folders"].items():
        print(f"carry: {folder}: {size / MiB:.1f} MiB, checked", flush=True)
    print(f"carry: {carry}: {record['total_bytes'] / MiB:.1f} MiB in {len(names)} part(s), each with the checkout's "
          f"{record['checkout_bytes'] / MiB:.1f} MiB under {LIMIT / MiB:.0f} MiB: the device calls are in "
          f"{carry / 'CALLS.md'}", flush=True)  # fmt: skip
    return record


def calls(parts: int, commit: str | None) -> list[dict]:
    """The device calls that take the carry over and run the campaign, in order, back to back."""
    stage = "python3 -m benchmarks.tools.campaign.device stage"
    campaign = (f"python3 -m benchmarks.tools.campaign.device assemble && {device.WHEEL_INSTALL} && "
                f"MILESTONES_GIT_COMMIT={commit or 'unknown'} PYTHONUNBUFFERED=1 python3 -m benchmarks.tools.campaign "
                "--pack $OUT/campaign.tgz")  # fmt: skip
    made = [{"carry": [f".gpu-data/part-{k}"], "command": stage, "timeout_s": 60} for k in range(1, parts)]
    return made + [{"carry": [f".gpu-data/part-{parts}"], "command": campaign, "timeout_s": 600}]


def calls_text(record: dict) -> str:
    lines = [
        "# The device calls for the GPU campaign (made by make gpu-carry; not committed)",
        "",
        f"The carry is {len(record['parts'])} part(s): each call takes one beside the checkout "
        f"({record['checkout_bytes'] / MiB:.1f} MiB; make gpu-carry again after the checkout changes). The machine "
        "keeps what earlier calls left only while warm, 30 s after a call: make the calls back to back. Where it "
        "was given back in between, the last call's assemble step names the parts missing: start again at call 1.",
        "",
        f"The results will name commit {record['git_commit']}, the checkout's when the carry was built.",
    ]
    if record["git_dirty"] is not False:
        lines[-1] += (" **The tracked files differed from that commit**: commit, then make gpu-carry again, or the "
                      "results name a commit whose code is not what ran.")  # fmt: skip
    lines += [""]
    for i, call in enumerate(record["calls"], 1):
        lines += [f"{i}. carry {json.dumps(call['carry'])}, timeout_s {call['timeout_s']}:", f"   {call['command']}"]
    lines += ["", "Then here: python -m benchmarks.tools.campaign.bundle unpack <files_at>/campaign.tgz", ""]
    return "\n".join(lines)


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
                found[job.name] = f"{folder} is not in the carry ({record['left_out'].get(folder, 'not built')})"
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
