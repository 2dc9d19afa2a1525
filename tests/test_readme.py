"""Every command the README shows works as written against this tree: each `make` line is a real target whose recipe
(make -n) runs `milestones` with arguments the CLI accepts, each `milestones` line parses, and what the arguments name
(entries, tasks, result files, references) exists. Running them all for real is the job of the other tests (the
demo, the tests themselves) and of the benchmarks; a renamed entry, a removed result file or a dropped option shows
up here."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from benchmarks.cli import build_parser
from benchmarks.core.paths import REPO_ROOT, RESULTS_DIR
from benchmarks.core.results import find_results
from benchmarks.running.references import COMPUTATIONS
from benchmarks.running.registry import get_entry
from benchmarks.tasks import get_task

PLACEHOLDERS = {"<result.json>": str(find_results(RESULTS_DIR)[0].relative_to(REPO_ROOT))}


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (REPO_ROOT / "README.md").read_text(), re.S)
    lines = [line for block in blocks for line in block.splitlines()]
    return [line for line in lines if shlex.split(line, comments=True)]


COMMANDS = readme_commands()


def words_of(line: str) -> list[str]:
    words = shlex.split(" ".join(PLACEHOLDERS.get(w, w) for w in line.split(" ")), comments=True)
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):  # leading environment assignments
        words.pop(0)
    return words


def check_milestones(argv: list[str]) -> None:
    """The CLI parses ``argv`` and what it names exists."""
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        get_entry(args.entry).task(args.task)
    elif args.command == "verify":
        assert (REPO_ROOT / args.result).exists(), f"{args.result}: no such result file"
    elif args.command == "reference":
        assert args.name in COMPUTATIONS
        get_task(args.task)
    elif args.command == "probe" and args.result:
        assert (REPO_ROOT / args.result).exists(), f"{args.result}: no such result file"
    elif args.command == "compare":
        for target in args.targets:
            assert (REPO_ROOT / target).exists() or get_entry(target)


def milestones_lines_of(make_args: list[str]) -> list[list[str]]:
    """The `milestones` invocations a make line's recipe would run (make -n prints, runs nothing)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    out = subprocess.run(["make", "-n", *make_args], cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, f"make {' '.join(make_args)}: {out.stderr.strip()}"
    return [shlex.split(line)[1:] for line in out.stdout.splitlines() if re.match(r"\S*bin/milestones ", line)]


def test_the_readme_shows_commands():
    assert any(line.startswith("make bench-") for line in COMMANDS) and any("milestones " in c for c in COMMANDS)


@pytest.mark.parametrize("line", COMMANDS)
def test_every_readme_command_works_as_written(line):
    words = words_of(line)
    if words[0] == "make":
        invocations = milestones_lines_of(words[1:])
        if words[1].startswith(("bench-", "verify", "compare", "validate", "leaderboard", "demo")):
            assert invocations, f"{line}: its recipe runs no milestones command"
        for argv in invocations:
            check_milestones(argv)
    elif words[0] == "milestones":
        check_milestones(words[1:])
    elif words[0] == "torchrun":  # a distributed launch of the same CLI: its arguments after -m benchmarks.cli
        assert "-m" in words and words[words.index("-m") + 1] == "benchmarks.cli", line
        check_milestones(words[words.index("-m") + 2 :])
    elif words[0] == "sbatch":  # a recipe in benchmarks/launch/ with its entry and bench options
        script = next(w for w in words[1:] if w.endswith(".sbatch"))
        assert os.access(REPO_ROOT / script, os.X_OK), f"{script}: no such executable recipe"
        entry, *options = words[words.index(script) + 1 :]
        check_milestones(["bench", entry, *options])
    elif words[0] == "wandb":
        assert (Path(os.sys.executable).parent / "wandb").exists(), "wandb's CLI is installed with the project"
    elif words[:2] == ["python", "-m"]:  # a tool module of the suite: it exists and its parser takes the subcommand
        help_ = subprocess.run([os.sys.executable, "-m", words[2], *words[3:4], "--help"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=120)  # fmt: skip
        assert help_.returncode == 0, f"{line}: {help_.stderr.strip()[-500:]}"
    elif words[0] == ".ci/run":
        assert os.access(REPO_ROOT / ".ci/run", os.X_OK)
    else:
        pytest.fail(f"a README command this test does not know how to check: {line}")


def test_the_readme_answers_the_first_questions():
    """PATH, install size and a smaller build, a smoke run, what the MNIST table's hardware is, compare --wandb."""
    text = " ".join((REPO_ROOT / "README.md").read_text().split())
    assert "source .venv/bin/activate" in text
    assert "~6.3 GB" in text and "TORCH_SPEC='torch==" in text and "download.pytorch.org/whl/cpu" in text
    assert any("--max-epochs 1" in line and "smoke run" in line for line in COMMANDS)
    assert "this project's CPU machine" not in text, "the MNIST table has a GPU row"
    assert "needs W&B online" in text
