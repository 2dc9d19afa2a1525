"""Performance measurements of the harness itself (benchmarks, not tests): ``make perf``."""

import json
from pathlib import Path


def write_report(report: dict, path: Path | None) -> None:
    """Write a measurement report as indented JSON when a path was given (the scripts' ``--json``), and say where."""
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {path}")
