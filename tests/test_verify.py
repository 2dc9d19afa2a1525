"""`milestones verify`: a real result re-runs to identical numbers here, and a doctored or outdated one does not pass.

The result is the single-layer perceptron's full recipe on the bundled digits (3 seeds, a few seconds), made in this
test session with MILESTONES_GIT_COMMIT set to HEAD, so that a working tree with uncommitted edits can still record a
result; the verify itself checks the provenance as usual (it refuses while the model file has uncommitted edits).
"""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
import statistics

import pytest
from scipy import stats

from benchmarks.core import paths, provenance
from benchmarks.core.environment import NUMERIC_PACKAGES, PACKAGES, drift, environment, git
from benchmarks.core.results import aggregate, read_result
from benchmarks.core.stats import verify_tolerance, welch_p_better
from benchmarks.judging.verify import VerifyOptions, preflight, verify
from benchmarks.running.harness import BenchError, BenchOptions, run_benchmark
from benchmarks.running.registry import config_hash


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    out = tmp_path_factory.mktemp("recorded")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MILESTONES_GIT_COMMIT", git("rev-parse", "HEAD") or "unknown")
        options = BenchOptions(task="digits", accelerator="cpu", wandb="off", progress="none",
                               output_dir=str(out / "runs"), results_dir=str(out / "results"))  # fmt: skip
        _, path = run_benchmark("perceptron-single-layer", options)
    return path


@pytest.fixture
def result_file(recorded, tmp_path):
    copy = tmp_path / recorded.name
    shutil.copy(recorded, copy)
    return copy


def edit(path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def options(tmp_path, **overrides) -> VerifyOptions:
    return VerifyOptions(output_dir=str(tmp_path / "verify"), progress="none", **overrides)


def test_a_deterministic_cpu_result_verifies_exactly(result_file, tmp_path, capsys):
    assert verify(result_file, options(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "verdict: MATCH (exact)" in out and out.count(" yes") == 3
    rerun = next((tmp_path / "verify" / "verify-results").rglob("*.json"))
    assert read_result(rerun).seeds[2].metrics == read_result(result_file).seeds[2].metrics


def test_a_subset_of_seeds(result_file, tmp_path, capsys):
    assert verify(result_file, options(tmp_path, seeds=[1])) == 0
    out = capsys.readouterr().out
    assert out.count(" yes") == 1 and "verdict: MATCH (exact), resting on same hardware" in out
    assert re.search(r"mean .* over seeds \[1\]", out) and "every test metric, status and epoch of seeds [1]" in out
    with pytest.raises(BenchError, match="were not in the result"):
        verify(result_file, options(tmp_path, seeds=[7]))


def test_a_doctored_number_is_a_mismatch(result_file, tmp_path, capsys):
    def improve(data):
        data["seeds"][0]["metrics"]["error"] -= 0.5

    edit(result_file, improve)
    assert verify(result_file, options(tmp_path, seeds=[0])) == 1
    out = capsys.readouterr().out
    assert "verdict: MISMATCH (exact)" in out and " NO" in out


def test_other_hardware_is_judged_within_the_tolerance(result_file, tmp_path, capsys):
    edit(result_file, lambda d: d["environment"].update(device="Some Other CPU"))
    assert verify(result_file, options(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "device Some Other CPU →" in out and "tolerance on the mean" in out
    assert "verdict: MATCH (within tolerance)" in out


def test_a_config_that_left_the_registry_is_refused_unless_run_anyway(result_file, tmp_path, capsys):
    def other_lr(data):
        data["config"]["model"]["init_args"]["lr"] = 0.5
        data["config_hash"] = config_hash(data["config"])

    edit(result_file, other_lr)
    assert verify(result_file, options(tmp_path)) == 2
    out = capsys.readouterr().out
    assert "refused: the recorded run differs from the registry's" in out and "model.init_args.lr: 0.5 ≠ 1.0" in out
    assert verify(result_file, options(tmp_path, seeds=[0], run_anyway=True)) == 0  # lr only scales the weights
    out = capsys.readouterr().out
    assert "RUNNING ANYWAY despite: the recorded run differs" in out and "— RUN ANYWAY: the recorded run differs" in out


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda d: d["config"]["trainer"].update(max_epochs=2), "does not hash to its config_hash"),
        (lambda d: d.update(smoke=True), "a smoke run"),
        (lambda d: d["code"].update(git_dirty=True), "uncommitted changes"),
        (lambda d: d["code"].update(git_commit=None), "git_commit is missing"),
        (lambda d: d["environment"].update(accelerator="gpu"), "recorded on a GPU and this machine has none"),
    ],
)
def test_refusals_say_why(result_file, tmp_path, capsys, change, reason):
    if "GPU" in reason and __import__("torch").cuda.is_available():
        pytest.skip("this machine has a GPU")
    edit(result_file, change)
    assert verify(result_file, options(tmp_path)) == 2
    assert reason in capsys.readouterr().out


def test_tolerance_is_the_student_t_bound_on_a_difference_of_means():
    values = [1.0, 1.2, 0.9]
    tol, why = verify_tolerance(values, 2)
    expected = stats.t.ppf(0.995, 2) * statistics.stdev(values) * math.sqrt(1 / 3 + 1 / 2)
    assert math.isclose(tol, expected) and "99% two-sided" in why
    tol, why = verify_tolerance([2.0], 1)
    assert math.isclose(tol, 0.2) and "no recorded spread" in why


def test_welch_p_value_matches_scipy_and_needs_two_seeds():
    a, b = [0.8, 0.82, 0.79], [1.1, 1.0, 1.25]
    assert math.isclose(welch_p_better(a, b, "min"), stats.ttest_ind(a, b, equal_var=False, alternative="less").pvalue)
    assert welch_p_better(b, a, "min") > 0.95 and welch_p_better(a, b, "max") > 0.95
    assert welch_p_better([1.0], b, "min") is None and welch_p_better([1.0, 1.0], [2.0, 2.0], "min") is None
    assert aggregate(a).n == 3


def test_a_long_result_is_skipped_when_asked(result_file, tmp_path, capsys):
    assert verify(result_file, options(tmp_path, skip_over_minutes=0)) == 0
    assert "verdict: SKIPPED" in capsys.readouterr().out and not (tmp_path / "verify").exists()


# --- what can move a number: the scoring code and every package ------------------------------------------------------
SCORERS = ["benchmarks/scoring/sample_metrics.py", "benchmarks/scoring/text_metrics.py",
           "benchmarks/tools/featurenet.py", "benchmarks/featurenets/mnist-lenet5-modern.pt",
           "lightning_modules/lenet_modern.py"]  # fmt: skip


@pytest.mark.parametrize("scorer", SCORERS)
def test_a_changed_scorer_is_reported(scorer):
    """A result made at a commit where the scorer was different: verify's preflight names the scorer file."""
    if not provenance.history_available():
        pytest.skip("needs the full git history")
    last = git("log", "-n1", "--format=%H", "--", scorer)
    before = git("rev-parse", "--verify", "--quiet", f"{last}^") if last else None
    if not before:
        pytest.skip(f"{scorer} has no earlier version in this history")
    committed = sorted((paths.RESULTS_DIR / "mnist" / "perceptron").glob("*.json"))[0]
    result = read_result(committed)
    result = result.model_copy(update={"code": {"git_commit": before, "git_dirty": False}})
    _, notes = preflight(result, "cpu")
    assert any(line.startswith("harness code changed") and scorer in line for line in notes), notes


def test_every_package_that_can_move_a_number_is_recorded_and_a_difference_is_drift():
    env = environment("cpu")
    expected = {"torch", "torchvision", "lightning", "torchmetrics", "numpy", "scipy", "scikit-learn", "pillow",
                "sacrebleu", "tokenizers", "datasets"}  # fmt: skip
    assert expected <= set(NUMERIC_PACKAGES) and set(NUMERIC_PACKAGES) <= set(PACKAGES)
    for name in NUMERIC_PACKAGES:
        assert env["packages"][name], f"{name} is installed and recorded"
        other = copy.deepcopy(env)
        other["packages"][name] = "0.0.1"
        assert drift(other, env) == [(name, "0.0.1", env["packages"][name])]
    for name in ("wandb", "pydantic"):  # recorded, but they cannot move a number
        other = copy.deepcopy(env)
        other["packages"][name] = "0.0.1"
        assert drift(other, env) == []
    older = copy.deepcopy(env)
    del older["packages"]["sacrebleu"]  # a result made before sacrebleu was recorded: unknown, not drift
    assert drift(older, env) == []


def test_the_constraints_file_pins_every_dependency_exactly():
    pins = {}
    for line in (paths.REPO_ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version and re.fullmatch(r"[\w.+!-]+", version), f"not an exact pin: {line}"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((paths.REPO_ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    declared = [re.match(r"[A-Za-z0-9_.-]+", r).group() for r in requirements]
    names = {re.sub(r"[-_.]+", "-", n).lower() for n in [*declared, *PACKAGES]}
    assert names - set(pins) == set(), "every dependency and recorded package has an exact pin"


# --- what an entry runs: its class, its bases and the definitions they use, not whole files ---------------------------
BASE = '''"""Shared."""
import torch


class Classifier:
    def score(self, x):
        return helper(x) * SCALE


def helper(x):
    return x + 1


SCALE = 2
'''
MODEL = """from lightning_modules.base import Classifier


class Model(Classifier):
    pass
"""


@pytest.fixture
def model_repo(tmp_path):
    """A repository whose first commit holds lightning_modules/{base,model}.py; returns (root, that commit)."""
    (tmp_path / "lightning_modules").mkdir()
    (tmp_path / "lightning_modules" / "base.py").write_text(BASE)
    (tmp_path / "lightning_modules" / "model.py").write_text(MODEL)
    for args in (
        ["init", "-q"],
        ["add", "."],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "fixture"],
    ):
        assert git("-C", str(tmp_path), *args) is not None
    return tmp_path, git("-C", str(tmp_path), "rev-parse", "HEAD")


@pytest.mark.parametrize(
    "old, new, changed",
    [
        ("SCALE = 2\n", "SCALE = 2\n\n\nclass ImageGenerator:\n    pass\n", []),  # an unrelated addition to base.py
        ('"""Shared."""', '"""Shared, and documented."""\n# a comment', []),  # docstrings and comments run nothing
        ("    def score(self, x):\n", '    def score(self, x):\n        """Scored."""\n\n', []),
        ("return helper(x) * SCALE", "return helper(x) * SCALE * 1", ["lightning_modules.base.Classifier"]),
        ("return x + 1", "return x - 1", ["lightning_modules.base.helper"]),  # a helper the base class calls
        ("SCALE = 2", "SCALE = 3", ["lightning_modules.base.SCALE"]),  # a constant it reads
        (
            "import torch\n",
            "import torch\n\ntorch.manual_seed(1)\n",
            ["lightning_modules.base (import-time statements)"],
        ),
    ],
)
def test_model_changes_are_what_the_entry_runs(model_repo, old, new, changed):
    root, commit = model_repo
    base = root / "lightning_modules" / "base.py"
    base.write_text(base.read_text().replace(old, new, 1))
    assert provenance.model_changes("lightning_modules.model.Model", commit, root) == changed


def test_model_changes_parse_and_never_import(model_repo):
    root, commit = model_repo
    (root / "lightning_modules" / "model.py").write_text(MODEL + "raise SystemExit('imported')\n")
    assert provenance.model_changes("lightning_modules.model.Model", commit, root) == [
        "lightning_modules.model (import-time statements)"
    ]
    with pytest.raises(ValueError, match="is not a lightning_modules class"):
        provenance.model_changes("os.system", commit, root)
    with pytest.raises(ValueError, match="is not a commit id"):
        provenance.model_changes("lightning_modules.model.Model", "--output=x", root)


def test_the_mean_compares_the_same_seeds_and_the_verdict_says_what_it_rests_on(recorded):
    from benchmarks.judging.verify import comparison

    result = read_result(recorded)
    metric = result.metric
    seeds = [s.model_copy(update={"metrics": {**s.metrics, metric: 10.0 + 2 * s.seed}}) for s in result.seeds]
    result = result.model_copy(update={"seeds": seeds})  # recorded: 10, 12, 14 (mean 12)
    rerun_seed = seeds[0].model_copy(update={"metrics": {**seeds[0].metrics, metric: 10.5}})
    other = {**result.environment, "device": "Some Other CPU"}
    rerun = result.model_copy(update={"seeds": [rerun_seed], "environment": other})
    holds, mode, basis, lines = comparison(result, rerun)
    assert re.search(r"mean\s+10\s+10\.5\s+0\.5\s+over seeds \[0\]", lines[-3]), lines
    assert holds and mode == "within tolerance" and "over seeds [0]" in basis and "±" in basis
    assert "√(2/1)" in lines[-1]
    rerun = result.model_copy(update={"seeds": [seeds[0]]})
    holds, mode, basis, _ = comparison(result, rerun)
    assert holds and mode == "exact" and "every test metric" in basis and "[0]" in basis


def test_the_gan_base_class_added_to_base_py_does_not_touch_the_classifiers():
    """The README's case: base.py gained ImageGenerator; a classifier result from before that still verifies."""
    if not provenance.history_available():
        pytest.skip("needs the full git history")
    added = git("log", "--format=%H", "-S", "class ImageGenerator", "--", "lightning_modules/base.py")
    before = git("rev-parse", "--verify", "--quiet", f"{added.splitlines()[-1]}^") if added else None
    if not before:
        pytest.skip("no commit before ImageGenerator in this history")
    assert provenance.changed_since(before, ["lightning_modules/base.py"]) == ["lightning_modules/base.py"]
    changed = provenance.model_changes("lightning_modules.perceptron.Perceptron", before)
    assert not any("ImageGenerator" in name for name in changed), changed
