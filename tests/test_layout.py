"""The layout shows the architecture: benchmarks/ is folders by concern in layers, and every import runs downward.

    cli.py                      the `milestones` command
    perf/   tools/              measurements of the harness; commands built on it
    judging/                    validate, verify, compare, leaderboard, probe: what is done with result files
    running/                    registry, references, harness: entries and runs
    tasks/                      what is measured: data, metric, interface, evaluation
    scoring/                    measures from samples and decoded text
    core/                       paths, the result schema, identities, statistics, checksums, fault points

A module may import its own folder and the folders below it, never one above; no modules import each other in a
circle; and the models (lightning_modules/) import nothing of benchmarks/.
"""

from __future__ import annotations

import ast
from pathlib import Path

from benchmarks.core.paths import REPO_ROOT

LAYERS = ("core", "scoring", "tasks", "running", "judging", "tools", "perf", "cli")
PACKAGE = REPO_ROOT / "benchmarks"


def modules() -> dict[str, Path]:
    """Dotted name → file, for every module of benchmarks/."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The benchmarks modules ``path`` imports anywhere in it (top level or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return -1  # the package's face
    return LAYERS.index(parts[1] if parts[1] in LAYERS else "cli")


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, set(known)) - {name} for name, path in known.items()}


def test_every_module_lives_in_a_folder_of_the_layers():
    folders = LAYERS[:-1]  # the command line is the one module at the top
    top = sorted(name for name in modules() if name.count(".") == 1 and name.split(".")[1] not in folders)
    assert top == ["benchmarks.cli"], "a new module goes into the folder of its concern (see this file's docstring)"


def test_imports_run_downward_only():
    upward = [
        f"{name} (in {name.split('.')[1]}/) imports {other}"
        for name, used in graph().items()
        for other in sorted(used)
        if layer(other) > layer(name) and other != "benchmarks"
    ]
    assert upward == []


def test_no_modules_import_each_other_in_a_circle():
    edges = graph()
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    circles = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for other in sorted(edges.get(name, ())):
            if state.get(other) == 1:
                circles.append(" → ".join(path[path.index(other) :] + [name, other]) if other in path else other)
            elif other not in state:
                visit(other, path + [name])
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [])
    assert circles == []


def test_the_models_import_nothing_of_the_harness():
    used = {
        f"{path.name}: {name}"
        for path in sorted((REPO_ROOT / "lightning_modules").glob("*.py"))
        for name in imports(path, set(modules()) | {"benchmarks"})
    }
    assert used == set()
