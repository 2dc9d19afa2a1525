"""Which code made a result, and whether it is still the code here: git history lookups for verify and validate.

Two tiers, because a refactor of the harness must not orphan every committed result:
- the **model code** of an entry (its module in lightning_modules/ and the lightning_modules it imports) defines the
  milestone: if it changed since the result's commit, the result no longer describes this code, and ``verify``
  refuses (``--run-anyway`` overrides, and says so);
- the **harness code** (training loop, callbacks, tasks and data, and the scoring: sample and text metrics, the
  committed feature classifiers and their model) can move numbers too: a change is reported as drift, and the re-run
  itself decides.
"""

from __future__ import annotations

import os
import re
from importlib import util
from pathlib import Path

from benchmarks.environment import git
from benchmarks.paths import REPO_ROOT

HARNESS_CODE = (
    "benchmarks/harness.py",
    "benchmarks/callbacks.py",
    "benchmarks/tasks",  # data modules, tokenizer, and each task's evaluate()
    "benchmarks/sample_metrics.py",  # Fréchet distance, Inception Score, Parzen window (generative tasks)
    "benchmarks/text_metrics.py",  # sacrebleu BLEU and chrF (translation)
    "benchmarks/featurenet.py",  # how the feature classifiers are trained
    "benchmarks/featurenets",  # the committed feature classifiers (weights) that score samples
    "lightning_modules/lenet_modern.py",  # the feature classifiers' model
)
_IMPORT = re.compile(r"^\s*(?:from|import)\s+(lightning_modules\.[\w.]+)", re.MULTILINE)


def model_code(class_path: str) -> list[str]:
    """Repository-relative files of the model's module and every lightning_modules module it imports, transitively."""
    pending, seen = [class_path.rpartition(".")[0]], {}
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        spec = util.find_spec(module)
        if spec is None or spec.origin is None:
            continue
        path = Path(spec.origin)
        seen[module] = path.relative_to(REPO_ROOT).as_posix()
        pending += _IMPORT.findall(path.read_text())
    return sorted(seen.values())


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


def changed_since(commit: str, paths: list[str] | tuple[str, ...]) -> list[str]:
    """The files among ``paths`` whose content differs between ``commit`` and the working tree."""
    out = git("diff", "--name-only", commit, "--", *paths)
    return out.splitlines() if out else []
