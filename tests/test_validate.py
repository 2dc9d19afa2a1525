"""`milestones validate`: every kind of bad submission is refused with a line naming the file and the field.

The fixture is a committed MNIST result (real, made from a clean commit in this repository's history) copied into a
tmp results folder with its leaderboard built beside it; each test edits one thing the way a careless or dishonest
pull request would, and checks that validate names it.

Validate gives the same answer on every machine: a task's data identity is declared by its code
(``Task.declared_identity()``), so validate never reads the data folder, never builds a cache and never trains a
tokenizer; the tests below watch every file it opens, lists, creates or stats.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.core import paths
from benchmarks.core.results import aggregate, read_result
from benchmarks.judging import leaderboard
from benchmarks.judging.validate import validate
from benchmarks.running.registry import config_hash
from benchmarks.tasks import all_tasks, get_task

COMMITTED = sorted((paths.RESULTS_DIR / "mnist" / "perceptron").glob("*.json"))[0]
TRANSFORMER = sorted((paths.RESULTS_DIR / "multi30k-de-en" / "transformer").glob("*.json"))[0]
# the data folder this session was started with (CI: ../shared/data), read before any test changes the environment
SESSION_DATA = os.environ.get("MILESTONES_DATA")


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
    data["config"]["model"]["init_args"]["threshold"] = 7  # any recipe change the registry did not make
    data["config_hash"] = config_hash(data["config"])  # consistent with itself, not with the registry


CASES = {
    "hand-edited aggregate": (lambda d: d["aggregate"].update(mean=d["aggregate"]["mean"] - 1.0), "aggregate.mean"),
    "missing seed": (drop_seed(1), "seed(s) [1] missing"),
    "best-of-N seeds": (best_of_n, "seed(s) [0, 1, 2] missing"),
    "wrong dataset checksum": (wrong_checksum, "dataset['MNIST/raw/t10k-images-idx3-ubyte.gz']"),
    "unknown entry": (lambda d: d.update(entry="perceptorn"), "entry: unknown entry 'perceptorn'"),
    "config differs from registry": (other_lr, "differs from the registry"),
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
    if case == "unknown commit" and not __import__("benchmarks.core.provenance").core.provenance.history_available():
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


def test_a_different_tokenizer_fails_validation(submission):
    results, board, _ = submission
    target = results / "multi30k-de-en" / "transformer" / TRANSFORMER.name
    target.parent.mkdir(parents=True)
    shutil.copy(TRANSFORMER, target)
    shutil.copytree(TRANSFORMER.with_suffix(""), target.with_suffix(""))  # its translations.md
    leaderboard.build(results, board)
    assert run(results, board, target) == [], "the committed Transformer result agrees with the declaration"
    key = "tokenizer (byte-level BPE, 8000)"
    edit(target, lambda d: d["dataset"].update({key: "sha256:" + "0" * 64}))
    problems = run(results, board, target)
    assert any(f"dataset['{key}']" in line and "declares sha256:79043e96" in line for line in problems), problems
    edit(target, lambda d: d["dataset"].pop(key))
    assert any(f"dataset['{key}']: (absent)" in line for line in run(results, board, target))


# --- the declared data identity ---------------------------------------------------------------------------------------
def test_every_task_declares_its_identity_in_code():
    """A declared value is a file's checksum (md5 / sha256), or, for data derived from checksummed files by code (a
    32×32 reduction, shifted test digits), the derivation's versioned description ``<name> v<N>: <parameters>``: the
    derivation is this repository's code, so its parameters name it exactly."""
    derivation = re.compile(r"[\w .-]+ v\d+: .+")
    for name, task in all_tasks().items():
        declared = task.declared_identity()
        assert declared.required or declared.user_hashed, f"{name} declares no data"
        checksums = 0
        for value in [*declared.required.values(), *declared.optional.values()]:
            checksum = value.split(":")[0] in ("md5", "sha256") and len(value.split(":")[1]) in (32, 64)
            assert checksum or derivation.fullmatch(value), (name, value)
            checksums += checksum
        assert checksums or declared.user_hashed, f"{name}: a derivation, but of no checksummed file"


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "mnist-gen", "fashion-mnist-gen", "shakespeare-char",
                                  "digits", "logic-gates", "imagenette-320", "tiny-imagenet"])  # fmt: skip
def test_what_a_run_records_agrees_with_the_declaration(name, tmp_path):
    """The data modules whose record needs no data (checked files, code constants, a package file): the same."""
    task = get_task(name)
    recorded = task.make_datamodule(tmp_path, 1, seed=0, download=False).identity()
    assert task.declared_identity().problems(recorded, name) == []


def test_multi30k_optional_test_sets_are_checked_when_recorded():
    task = get_task("multi30k-de-en")
    recorded = read_result(TRANSFORMER).dataset
    assert task.declared_identity().problems(recorded, task.name) == []
    without = {k: v for k, v in recorded.items() if "2017" not in k and "2018" not in k}
    assert task.declared_identity().problems(without, task.name) == [], "the later test sets: only when present"
    wrong = recorded | {"multi30k/test_2018_flickr.en.gz": "md5:" + "0" * 32}
    assert any("test_2018_flickr.en.gz" in line for line in task.declared_identity().problems(wrong, task.name))
    without_val = {k: v for k, v in recorded.items() if not k.startswith("multi30k/val.")}
    assert any("val.de.gz']: (absent)" in line for line in task.declared_identity().problems(without_val, task.name))


def test_an_imagenet_manifest_is_declared_by_key_its_value_must_be_recorded():
    task = get_task("imagenet-10")
    declared = task.declared_identity()
    classlist = dict(declared.required)
    assert list(classlist) == ["classlists/imagenet10.txt"] and declared.user_hashed == ("manifest",)
    manifest = {"manifest": "sha256:" + "ab" * 32}  # from the user's own copy: any sha256

    def problems(recorded) -> str:
        return "\n".join(declared.problems(recorded, task.name))

    assert problems(classlist | manifest) == ""
    assert "manifest']: absent" in problems(classlist) and "manifest']: absent" in problems(
        classlist | {"manifest": None}
    )
    assert "not a sha256" in problems(classlist | {"manifest": "md5:12"})
    assert "dataset['extra']: not a file of task imagenet-10" in problems(classlist | manifest | {"extra": "md5:1"})


def test_a_run_that_trains_another_tokenizer_says_so_loudly(monkeypatch, capsys, tmp_path):
    from benchmarks.tasks import translation

    monkeypatch.setattr(translation, "cached_bpe", lambda *args, **kwargs: (object(), "f" * 64))
    data = translation.TranslationData(tmp_path, 1)
    data.text["train"] = (["ein hund"], ["a dog"])
    with pytest.warns(UserWarning, match="FAIL `milestones validate`"):
        data._train_tokenizer()
    assert "WARNING" in capsys.readouterr().err
    assert data.identity().get("tokenizer (byte-level BPE, 8000)") == "sha256:" + "f" * 64, "it records what it used"


@pytest.fixture(scope="module")
def real_multi30k() -> Path:
    if not SESSION_DATA or not (Path(SESSION_DATA) / "multi30k" / "train.de.gz").exists():
        held = "holds no" if SESSION_DATA else "is unset: set it to a folder holding"
        pytest.skip(f"real-data test: MILESTONES_DATA {held} multi30k (CI uses ../shared/data)")
    return Path(SESSION_DATA)


def test_the_pinned_tokenizer_is_what_the_pinned_text_trains(real_multi30k, tmp_path, monkeypatch):
    """The declared BPE sha256 is reproduced from the md5-pinned training text, in an empty cache (a few seconds)."""
    from benchmarks.tasks.translation import TranslationData

    monkeypatch.setenv("MILESTONES_CACHE", str(tmp_path / "cache"))
    recorded = TranslationData(real_multi30k, 1, download=False).identity()
    assert get_task("multi30k-de-en").declared_identity().problems(recorded, "multi30k-de-en") == []


# --- validate never touches the data folder ---------------------------------------------------------------------------
class Watch:
    """Every file opened, listed, created, removed or stat'ed under ``roots`` while on (an audit hook, which stays
    installed for the process, plus os.stat, which has no audit event: Path.exists and os.path.exists use it)."""

    installed = None
    roots: tuple[str, ...] = ()
    seen: list[str] = []
    EVENTS = {"open", "os.listdir", "os.scandir", "os.mkdir", "os.remove", "os.rename", "os.rmdir", "os.truncate",
              "shutil.rmtree", "shutil.copyfile", "os.symlink", "os.utime", "os.chmod", "glob.glob"}  # fmt: skip

    @classmethod
    def hit(cls, path) -> None:
        if cls.roots and isinstance(path, (str, bytes, os.PathLike)):
            text = os.fsdecode(os.fspath(path))
            if any(text == root or text.startswith(root + os.sep) for root in cls.roots):
                cls.seen.append(text)

    @classmethod
    def audit(cls, event, args) -> None:
        if event in cls.EVENTS and args:
            cls.hit(args[0])


@pytest.fixture
def watch(monkeypatch):
    if Watch.installed is None:
        sys.addaudithook(Watch.audit)
        Watch.installed = True
    stat = os.stat

    def watched_stat(path, *args, **kwargs):
        Watch.hit(path)
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", watched_stat)

    def on(*roots: Path) -> list[str]:
        Watch.roots, Watch.seen = tuple(str(r) for r in roots), []
        return Watch.seen

    yield on
    Watch.roots = ()


def test_the_watch_sees_what_the_old_validate_did(watch, tmp_path):
    """The check itself: reading a data module's files and asking whether one exists are both caught."""
    seen = watch(tmp_path)
    (tmp_path / "x").exists()
    with open(tmp_path / "y", "w"):
        pass
    list(tmp_path.iterdir())
    assert str(tmp_path / "x") in seen and str(tmp_path / "y") in seen and str(tmp_path) in seen


def data_folders() -> list:
    shared = [Path(SESSION_DATA)] if SESSION_DATA and any(Path(SESSION_DATA).glob("*")) else []
    shared += [p for p in [paths.REPO_ROOT.parent / "shared" / "data"] if p.is_dir()]  # CI: ../shared/data
    real = pytest.param(
        shared[0] if shared else None,
        id="real-data",
        marks=[] if shared else pytest.mark.skip(reason="no data folder here (../shared/data)"),
    )
    return [pytest.param("empty", id="empty-data-folder"), real]


@pytest.mark.parametrize("data", data_folders())
def test_validate_reads_no_data_builds_no_cache_and_answers_the_same(data, watch, tmp_path, monkeypatch, capsys):
    """`milestones validate` on every committed result: exit 0, the same lines with the data and without, not one
    access to the data folder, and MILESTONES_CACHE (an empty folder) stays empty."""
    data = tmp_path / "empty-data" if data == "empty" else Path(data)
    data.mkdir(exist_ok=True)
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("MILESTONES_DATA", str(data))
    monkeypatch.setenv("MILESTONES_CACHE", str(cache))
    assert paths.data_dir() == data.resolve()
    seen = watch(data.resolve(), cache.resolve())
    with pytest.raises(SystemExit) as info:
        main(["validate"])
    out = capsys.readouterr()
    assert seen == [], f"validate touched the data or cache folder: {sorted(set(seen))[:10]}"
    assert list(cache.iterdir()) == [], "validate built a cache"
    assert info.value.code == 0 and "all result files pass" in out.out, out.err
