"""The carry's trip to the lent GPU machine, in parts, and its assembly there. Standard library only: this runs there
before the carried wheels are installed.

A device call takes the checkout plus carried paths, 64 MiB in all, so ``make gpu-carry`` cuts the carry into parts
(``.gpu-data/part-1`` … ``part-N``), each fitting one call beside the checkout. The machine keeps ignored folders
between calls while it stays warm (30 s after a call), so calls 1 … N-1 each carry one part and only check it
(``stage``); call N carries the last part, joins every part into ``.gpu-data/data`` and ``.gpu-data/wheels``
(``assemble``: hard links, each file's sha256 checked against its part's list), installs the wheels and runs the
campaign. The calls, with their exact carry lists and commands, are in ``.gpu-data/CALLS.md``.

    python3 -m benchmarks.tools.campaign.device stage | assemble
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from benchmarks.core.checksums import sha256_file

ROOT = Path(__file__).resolve().parents[3] / ".gpu-data"
PART_FILE = "PART.json"  # in each part: {"part": k, "of": n, "files": {path in the part: sha256}}
WHEEL_INSTALL = (
    "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "
    "/tmp/milestones-site .gpu-data/wheels/*.whl && export PYTHONPATH=/tmp/milestones-site"
)


def parts_present(root: Path = ROOT) -> dict[int, dict]:
    """part number → its PART.json, for the parts on this machine."""
    found = {}
    for folder in sorted(root.glob("part-*")):
        record = folder / PART_FILE
        if record.is_file():
            listing = json.loads(record.read_text())
            found[listing["part"]] = listing
    return found


def missing_parts(root: Path = ROOT) -> list[int]:
    present = parts_present(root)
    if not present:
        return [1]
    total = max(record["of"] for record in present.values())
    return [k for k in range(1, total + 1) if k not in present]


def assemble(root: Path = ROOT) -> list[str]:
    """Join every part into ``root`` (data/, wheels/, CARRY.json) by hard links; the problems found (none: ready)."""
    gaps = missing_parts(root)
    if gaps:
        names = ", ".join(f".gpu-data/part-{k}" for k in gaps)
        return [f"not on this machine: {names} (the machine was given back between calls, or a call was skipped): "
                "make the calls in .gpu-data/CALLS.md again, from call 1, back to back"]  # fmt: skip
    problems = []
    for k, record in sorted(parts_present(root).items()):
        for name, digest in record["files"].items():
            source, target = root / f"part-{k}" / name, root / name
            if not source.is_file() or sha256_file(source) != digest:
                problems.append(f"{source} is missing or altered in the trip: carry part-{k} again")
                continue
            if target.exists() and target.stat().st_ino == source.stat().st_ino:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            try:
                os.link(source, target)
            except OSError:  # another file system: a copy does as well
                shutil.copyfile(source, target)
    return problems


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv not in (["stage"], ["assemble"]):
        print("usage: python3 -m benchmarks.tools.campaign.device stage | assemble", file=sys.stderr)
        return 2
    present = parts_present()
    print(f"carry parts on this machine: {sorted(present) or 'none'}; still to come: {missing_parts() or 'none'}")
    if argv == ["stage"]:
        return 0
    problems = assemble()
    for problem in problems:
        print(f"assemble: error: {problem}", file=sys.stderr)
    if not problems:
        print(f"assemble: {ROOT} ready: {sum(len(r['files']) for r in present.values())} files checked")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
