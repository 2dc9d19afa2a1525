"""`milestones validate`: every kind of bad submission is refused with a line naming the file and the field.

The fixture is a committed MNIST result (real, made from a clean commit in this repository's history) copied into a
tmp results folder with its leaderboard built beside it; each test edits one thing the way a careless or dishonest
pull request would, and checks that validate names it.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest

from benchmarks import leaderboard, paths
from benchmarks.registry import config_hash
from benchmarks.results import aggregate
from benchmarks.validate import validate

COMMITTED = sorted((paths.RESULTS_DIR / "mnist" / "perceptron").glob("*.json"))[0]


@pytest.fixture
def submission(tmp_path):
    """(results_dir, leaderboard_dir, file): a valid result in place, its leaderboard built."""
    results, board = tmp_path / "results", tmp_path / "board"
    target = results / "mnist" / "perceptron" / COMMITTED.name
    target.parent.mkdir(parents=True)
    shutil.copy(COMMITTED, target)
    leaderboard.build(results, board)
    return results, board, target


def run(results, board, *targets):
    problems, _ = validate([str(t) for t in targets], results_dir=results, leaderboard_dir=board)
    return problems


def edit(path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def rederive(data) -> None:
    """Make the aggregate agree with edited per-seed values, as a careful forger would."""
    values = [s["metrics"]["error"] for s in data["seeds"] if s["status"] == "ok"]
    data["aggregate"] = aggregate(values).model_dump(mode="json")


def test_the_committed_results_all_pass():
    problems, _ = validate()
    assert problems == []


def test_an_untouched_copy_passes(submission):
    assert run(*submission[:2], submission[2]) == []


def set_seed_error(value):
    def change(data):
        data["seeds"][0]["metrics"]["error"] = value

    return change


def drop_seed(index):
    def change(data):
        del data["seeds"][index]
        rederive(data)
        data["time_to_target_s"], data["samples_per_s"] = None, sum(s["samples_per_s"] for s in data["seeds"]) / 2

    return change


def best_of_n(data):
    """Seeds 3, 5 and 7 of a larger set, chosen for their numbers and submitted as if they were the run."""
    for seed, number in zip(data["seeds"], (3, 5, 7)):
        seed["seed"] = number


def wrong_checksum(data):
    data["dataset"]["MNIST/raw/t10k-images-idx3-ubyte.gz"] = "md5:00000000000000000000000000000000"


def other_lr(data):
    data["config"]["model"]["init_args"]["lr"] = 0.5
    data["config_hash"] = config_hash(data["config"])  # consistent with itself, not with the registry


CASES = {
    "hand-edited aggregate": (lambda d: d["aggregate"].update(mean=d["aggregate"]["mean"] - 1.0), "aggregate.mean"),
    "missing seed": (drop_seed(1), "seed(s) [1] missing"),
    "best-of-N seeds": (best_of_n, "seed(s) [0, 1, 2] missing"),
    "wrong dataset checksum": (wrong_checksum, "dataset['MNIST/raw/t10k-images-idx3-ubyte.gz']"),
    "unknown entry": (lambda d: d.update(entry="perceptorn"), "entry: unknown entry 'perceptorn'"),
    "config differs from registry": (other_lr, "config: differs from the registry"),
    "config edited, hash kept": (lambda d: d["config"]["trainer"].update(max_epochs=3), "config_hash: the recorded"),
    "non-finite metric": (set_seed_error(math.nan), "seeds[0].metrics.error: nan is not finite"),
    "metric out of range": (set_seed_error(140.0), "seeds[0].metrics.error: 140.0 outside [0.0, 100.0]"),
    "smoke run": (lambda d: d.update(smoke=True), "smoke: a smoke run"),
    "dirty tree": (lambda d: d["code"].update(git_dirty=True), "code.git_dirty"),
    "unknown commit": (lambda d: d["code"].update(git_commit="0" * 40), "code.git_commit: 0000000000 is not in"),
    "schema: unknown field": (lambda d: d.update(bonus=1), "field 'bonus'"),
    "status contradicts seeds": (lambda d: d["seeds"][1].update(status="failed", failure="NaN"), "status: 'ok' but"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_submission_is_refused_naming_file_and_field(submission, case):
    results, board, path = submission
    change, expected = CASES[case]
    if case == "unknown commit" and not __import__("benchmarks.provenance").provenance.history_available():
        pytest.skip("a shallow clone cannot tell a missing commit")
    edit(path, change)
    problems = run(results, board, path)
    assert any(expected in line and line.startswith(str(path)) for line in problems), problems


def test_edited_per_seed_values_with_a_consistent_aggregate_fail_the_leaderboard_check(submission):
    results, board, path = submission

    def forge(data):
        for seed in data["seeds"]:
            seed["metrics"]["error"] -= 1.0
            seed["metrics"]["accuracy"] += 1.0
        rederive(data)

    edit(path, forge)
    problems = run(results, board, path)
    assert problems and all("differs from the result files" in line for line in problems), problems


def test_a_file_outside_the_results_folder_is_refused(submission, tmp_path):
    results, board, path = submission
    stray = tmp_path / "elsewhere" / "mnist" / "perceptron" / path.name
    stray.parent.mkdir(parents=True)
    shutil.copy(path, stray)
    assert any(line.startswith(f"{stray}: path: not under") for line in run(results, board, stray))


def test_a_file_in_the_wrong_folder_is_refused(submission):
    results, board, path = submission
    moved = results / "mnist" / "mlp" / path.name
    moved.parent.mkdir(parents=True)
    shutil.move(path, moved)
    leaderboard.build(results, board)
    expected = "path: folder mnist/mlp but the file says mnist/perceptron"
    assert any(expected in line for line in run(results, board, moved))


def test_fewer_seeds_than_the_protocol_is_a_note_and_a_provisional_row(submission):
    results, board, path = submission
    edit(path, drop_seed(2))  # seeds 0 and 1 of 3: no gap, just fewer
    leaderboard.build(results, board)
    problems, notes = validate([str(path)], results_dir=results, leaderboard_dir=board)
    assert not problems, problems
    assert any("2 of the 3 the protocol asks for" in n for n in notes)
    assert "*provisional*" in (board / "README.md").read_text()
