"""Which code made a result, and whether it is still the code here: git history lookups for verify and validate.

Two tiers, because a refactor of the harness must not orphan every committed result:
- the **model code** of an entry (its class in lightning_modules/, its bases, and the definitions of lightning_modules
  they use; not whole files, so an unrelated addition to a shared module changes nothing) defines the milestone: if it
  changed since the result's commit, the result no longer describes this code, and ``verify`` refuses
  (``--run-anyway`` overrides, and says so);
- the **harness code** (training loop, callbacks, tasks and data, and the scoring: sample and text metrics, the
  committed feature classifiers and their model) can move numbers too: a change is reported as drift, and the re-run
  itself decides.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

from benchmarks.core.environment import git
from benchmarks.core.paths import REPO_ROOT

HARNESS_CODE = (
    "benchmarks/running/harness.py",
    "benchmarks/running/options.py",  # BenchOptions: every run option's default
    "benchmarks/running/callbacks.py",
    "benchmarks/tasks",  # data modules, tokenizer, and each task's evaluate()
    "benchmarks/scoring/sample_metrics.py",  # Fréchet distance, Inception Score, Parzen window (generative tasks)
    "benchmarks/scoring/text_metrics.py",  # sacrebleu BLEU and chrF (translation)
    "benchmarks/tools/featurenet.py",  # how the feature classifiers are trained
    "benchmarks/featurenets",  # the committed feature classifiers (weights) that score samples
    "lightning_modules/lenet_modern.py",  # the feature classifiers' models: images
    "lightning_modules/m5.py",  # spoken digits
    "lightning_modules/gatys.py",  # style transfer: the losses and the StyleVGG the style-fig2 task measures in
)
PACKAGE = "lightning_modules"
_CLASS_PATH = re.compile(rf"{PACKAGE}(?:\.\w+)+")
_SCOPES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_NAMES = (ast.Name, ast.Tuple, ast.List, ast.Starred, ast.expr_context)  # an assignment that binds names only


def model_changes(class_path: str, commit: str, root: Path = REPO_ROOT) -> list[str]:
    """The names whose source differs between ``commit`` and the working tree, among what the model class runs: the
    class, its bases and every top-level function, class or constant of lightning_modules these use, by name and
    through ``from lightning_modules... import``, transitively, and each visited module's import-time statements.

    Both versions are parsed with ``ast``, never imported: nothing a result file names is executed. Comments,
    formatting and docstrings do not count (they cannot move a number); any other edit of a used definition does.
    Unseen by this check: code reached dynamically (getattr, importlib) and packages (environment drift covers them).
    """
    if not _CLASS_PATH.fullmatch(class_path):
        raise ValueError(f"model class_path {class_path!r} is not a {PACKAGE} class: only the suite's models re-run")
    if not re.fullmatch(r"[0-9a-f]{7,40}", commit):
        raise ValueError(f"code.git_commit {commit!r} is not a commit id: record the commit's hexadecimal id")
    old = _fingerprint(class_path, lambda module: git("-C", str(root), "show", f"{commit}:{_path(module)}"))
    new = _fingerprint(class_path, lambda module: _read(root / _path(module)))
    return sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))


def _path(module: str) -> str:
    return f"{PACKAGE}/__init__.py" if module == PACKAGE else module.replace(".", "/") + ".py"


def _read(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def _fingerprint(class_path: str, read) -> dict[str, str]:
    """{dotted name: the ast.dump of its top-level statements} for everything the class uses (see model_changes)."""
    modules, prints, seen = {}, {}, set()
    pending = [tuple(class_path.rsplit(".", 1))]  # (module, name); name "" loads the module, "*" uses all of it
    while pending:
        module, name = pending.pop()
        if (module, name) in seen:
            continue
        seen.add((module, name))
        if module not in modules:
            modules[module] = table, loads, effects = _parse(read(module), module)
            prints[f"{module} (import-time statements)"] = effects
            pending += loads + [(module.rsplit(".", 1)[0], "")] * ("." in module)  # its package's __init__ runs too
        table = modules[module][0]
        if name == "*":
            pending += [(module, n) for n in table]
        elif name in table:
            prints[f"{module}.{name}"] = "\n".join(
                repr(i) if isinstance(i, tuple) else ast.dump(i) for i in table[name]
            )
            for item in table[name]:
                pending += [item] if isinstance(item, tuple) else _references(item, module)
        elif module == PACKAGE and name and read(f"{module}.{name}") is not None:  # from lightning_modules import x
            pending.append((f"{module}.{name}", "*"))
    return prints


def _parse(source: str | None, module: str) -> tuple[dict[str, list], list[tuple[str, str]], str]:
    """A module's top level: ({name: the statements that bind it, or the (module, name) it imports}, what loading it
    uses, the dump of its import-time statements: all but definitions, imports and its docstring)."""
    try:
        tree = ast.parse(source or "")
    except SyntaxError:
        return {}, [], f"syntax error: {source}"
    for node in ast.walk(tree):
        body = node.body if isinstance(node, _SCOPES) else None
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            node.body = body[1:] or [ast.Pass()]  # a docstring (or a stray constant) does nothing
    table, loads, effects = {}, [], []
    for stmt in tree.body:
        targets = getattr(stmt, "targets", None) or [getattr(stmt, "target", None)]
        stores = [n for t in targets if t is not None for n in ast.walk(t)]
        if isinstance(stmt, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            table.setdefault(stmt.name, []).append(stmt)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            refs = _references(stmt, module)
            loads += [(source, name if name == "*" else "") for source, name in refs]  # import * and import x: all
            for alias in stmt.names if isinstance(stmt, ast.ImportFrom) and refs else []:
                table.setdefault(alias.asname or alias.name, []).append((refs[0][0], alias.name))
        elif stores and all(isinstance(n, _NAMES) for n in stores):
            for n in stores:
                if isinstance(n, ast.Name):
                    table.setdefault(n.id, []).append(stmt)
        else:
            effects.append(stmt)
    uses = [ref for stmt in effects for ref in _references(stmt, module)]
    return table, loads + uses, "\n".join(map(ast.dump, effects))


def _references(node: ast.AST, module: str) -> list[tuple[str, str]]:
    """(module, name) for each name ``node`` uses: its own module's names, and what it imports from lightning_modules
    (a plain ``import lightning_modules.x`` uses all of x)."""
    refs = []
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            refs.append((module, n.id))
        elif isinstance(n, ast.ImportFrom):
            source = ".".join(filter(None, [module.rsplit(".", n.level)[0] if n.level else "", n.module]))
            if source == PACKAGE or source.startswith(PACKAGE + "."):
                refs += [(source, a.name) for a in n.names]
        elif isinstance(n, ast.Import):
            refs += [(a.name, "*") for a in n.names if a.name.startswith(PACKAGE + ".")]
    return refs


def history_available() -> bool:
    """True when git runs here and the clone is not shallow (a shallow clone lacks the commits results name), and no
    MILESTONES_GIT_COMMIT says this checkout is a copy whose .git is not the source of truth (environment.py)."""
    if os.environ.get("MILESTONES_GIT_COMMIT"):
        return False
    return git("rev-parse", "--is-shallow-repository") == "false"


def commit_known(commit: str) -> bool:
    return git("cat-file", "-e", f"{commit}^{{commit}}") is not None


def is_ancestor(commit: str) -> bool:
    return git("merge-base", "--is-ancestor", commit, "HEAD") is not None


def commit_states(commits: set[str] | list[str]) -> dict[str, str]:
    """For each commit id: 'ancestor' (in HEAD's history), 'other' (in this repository, not an ancestor of HEAD) or
    'unknown'. Two git calls however many commits and results name them (``git cat-file --batch-check`` resolves every
    id at once, ``git rev-list HEAD`` lists HEAD's history once): what ``commit_known`` and ``is_ancestor`` answer,
    one process per tree rather than two per result file."""
    commits = sorted(set(commits))
    if not commits:
        return {}
    queries = [c for c in commits if re.fullmatch(r"[0-9a-f]{7,40}", c)]  # an id, never an option or a revision
    found = git("cat-file", "--batch-check", input="".join(f"{c}^{{commit}}\n" for c in queries)) if queries else ""
    full = {}
    for commit, line in zip(queries, (found or "").splitlines()):
        parts = line.split()
        if len(parts) == 3 and parts[1] == "commit":
            full[commit] = parts[0]
    history = set((git("rev-list", "HEAD") or "").split()) if full else set()
    return {c: "unknown" if c not in full else "ancestor" if full[c] in history else "other" for c in commits}


def changed_since(commit: str, paths: list[str] | tuple[str, ...]) -> list[str]:
    """The files among ``paths`` whose content differs between ``commit`` and the working tree."""
    out = git("diff", "--name-only", commit, "--", *paths)
    return out.splitlines() if out else []
