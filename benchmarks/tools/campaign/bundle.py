"""The campaign's output in one file for the trip back. A device call returns at most 8 files of at most 16 MiB, so
the campaign packs what a reader needs (every result file with its artifacts, campaign.log, the plan, the
calibration and every job's log; no checkpoints) into one .tgz under $OUT, again after each job ends, so that a call
cut short still brings back every finished result. Here, ``unpack`` files the results where the leaderboard reads
them and keeps the rest for reading.

    python -m benchmarks.tools.campaign.bundle unpack <campaign.tgz> [--into leaderboards/results]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from benchmarks.core import paths
from benchmarks.core.results import find_results

LIMIT = 16 * 2**20  # the largest file a device call returns
PACKED = ("results", "campaign.log", "plan.json", "calibration.json", "logs", "calibration/logs")
KEPT = paths.REPO_ROOT / "runs" / "gpu-campaign-returned"  # campaign.log, the plan and the logs, after unpack


def pack(output: Path, target: Path) -> Path:
    """``output``'s reader-facing files into ``target`` (.tgz), written whole or not at all; the logs are dropped
    when the whole would exceed what a device call returns."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for members in (PACKED, PACKED[:4]):
        partial = target.with_name(f".{target.name}.tmp")
        with tarfile.open(partial, "w:gz") as tar:
            for name in members:
                if (output / name).exists():
                    tar.add(output / name, arcname=name)
        if partial.stat().st_size <= LIMIT:
            partial.replace(target)
            return target
    partial.unlink()
    raise RuntimeError(f"the campaign's results alone exceed {LIMIT / 2**20:.0f} MiB: a device call cannot return them")


def unpack(bundle: Path, into: Path = paths.RESULTS_DIR, kept: Path = KEPT) -> list[Path]:
    """File every result in ``bundle`` (with its artifact folder) under ``into``; never replaces a result there.
    The rest goes to ``kept``/<bundle's name>. Returns the result files filed."""
    filed = []
    with tempfile.TemporaryDirectory() as scratch, tarfile.open(bundle) as tar:
        tar.extractall(scratch, filter="data")  # refuses absolute paths, .. and links out of the folder
        root = Path(scratch)
        for result in find_results(root / "results"):
            relative = result.relative_to(root / "results")
            target, artifacts = into / relative, result.with_suffix("")
            if target.exists():
                print(f"unpack: {target} is there already: left as it is", file=sys.stderr)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if artifacts.is_dir():
                shutil.copytree(artifacts, target.with_suffix(""))
            shutil.copyfile(result, target)
            filed.append(target)
        shutil.rmtree(root / "results", ignore_errors=True)
        destination = kept / bundle.name.removesuffix(".tgz")
        shutil.copytree(root, destination, dirs_exist_ok=True)
    print(f"unpack: {len(filed)} result file(s) filed under {into}; campaign.log, the plan and the logs in "
          f"{destination}")  # fmt: skip
    return filed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tools.campaign.bundle", description=__doc__.split(".")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    unpacking = commands.add_parser("unpack", help="file a returned campaign.tgz's results for the leaderboard")
    unpacking.add_argument("bundle", type=Path)
    unpacking.add_argument("--into", type=Path, default=paths.RESULTS_DIR)
    args = parser.parse_args(argv)
    if not args.bundle.is_file():
        print(f"unpack: error: {args.bundle} is not a file", file=sys.stderr)
        return 2
    for path in unpack(args.bundle, args.into):
        print(f"  {path}")
    print("next: milestones leaderboard; then milestones verify <result> on the same GPU to check one row")
    return 0


if __name__ == "__main__":
    sys.exit(main())
