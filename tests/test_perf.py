"""The performance scripts work, and the commands a person types stay light: `list`, `tasks` and the help import
neither torch nor Lightning; validate looks commits up per tree, not per file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks.core import provenance
from benchmarks.core.paths import REPO_ROOT
from benchmarks.judging import leaderboard
from benchmarks.judging.validate import validate
from benchmarks.perf import scaling

HEAVY = ("torch", "lightning", "torchvision", "torchmetrics", "pydantic", "jsonargparse")


def modules_loaded_by(argv: list[str], env: dict | None = None) -> list[str]:
    """The heavy modules a fresh process has imported after running ``milestones <argv>``."""
    code = ("import sys\nfrom benchmarks.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO_ROOT, capture_output=True, text=True, env=env,
                         check=True)  # fmt: skip
    line = next(line for line in out.stderr.splitlines() if line.startswith("LOADED"))
    return eval(line.removeprefix("LOADED "))


@pytest.mark.parametrize("argv", [["list"], ["list", "--long"], ["--help"], ["bench", "--help"], ["tasks"]])
def test_listing_and_help_import_neither_torch_nor_lightning(argv, tmp_path):
    import os

    env = os.environ | {"MILESTONES_CACHE": str(tmp_path / "cache")}
    if argv == ["tasks"]:
        modules_loaded_by(argv, env)  # the first run builds the task summaries (importing the tasks) and caches them
    assert modules_loaded_by(argv, env) == []


def test_tasks_summaries_are_rebuilt_when_the_cache_is_stale_or_broken(tmp_path, monkeypatch):
    from benchmarks import tasks

    monkeypatch.setenv("MILESTONES_CACHE", str(tmp_path))
    fresh = tasks.task_summaries()
    assert [t["name"] for t in fresh] == sorted(tasks.all_tasks())
    (cached,) = (tmp_path / "listing").glob("tasks-*.json")
    cached.write_text("{ not json")
    assert tasks.task_summaries() == fresh, "a broken cache file is rebuilt, not trusted"
    monkeypatch.setattr(tasks, "code_fingerprint", lambda: "0" * 64)  # the code changed: another cache file
    assert tasks.task_summaries() == fresh and len(list((tmp_path / "listing").glob("tasks-*.json"))) == 2


def test_a_broken_config_is_still_refused_by_list_in_one_line(tmp_path, monkeypatch, capsys):
    from benchmarks import cli
    from benchmarks.core import paths

    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "lenet5.yaml").write_text("entry: lenet5\nsummary: no paper\n")
    monkeypatch.setattr(paths, "CONFIG_DIR", configs)
    with pytest.raises(SystemExit) as info:
        cli.main(["list"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "lenet5.yaml" in err


def test_synthetic_results_pass_validate_and_a_copy_is_caught(tmp_path, monkeypatch):
    files = scaling.make_tree(tmp_path / "results", 20, scaling.sources())
    assert len(files) == len({f.name for f in files}) == 20
    leaderboard.build(tmp_path / "results", tmp_path / "board")
    calls, git = [], provenance.git
    monkeypatch.setattr(provenance, "git", lambda *args, **kwargs: calls.append(args) or git(*args, **kwargs))
    assert validate(None, tmp_path / "results", tmp_path / "board")[0] == []
    assert len(calls) <= 3, f"git runs per tree (shallow?, the commits, HEAD's history), not per file: {calls}"
    copy = files[0].with_name(files[0].stem + "-1.json")
    copy.write_bytes(files[0].read_bytes())
    problems, _ = validate(None, tmp_path / "results", tmp_path / "board")
    assert any("seeds: the same per-seed records as" in p and str(copy) in p and str(files[0]) in p for p in problems)


def test_commit_states_in_one_lookup():
    if not provenance.history_available():
        pytest.skip("no full git history here")
    head = provenance.git("rev-parse", "HEAD")
    states = provenance.commit_states([head, head[:10], "0" * 40, "--all"])
    assert states == {head: "ancestor", head[:10]: "ancestor", "0" * 40: "unknown", "--all": "unknown"}


def test_scaling_script_at_toy_size(tmp_path):
    """10 and 40 synthetic files made from the committed results: every one passes validate, and the leaderboard is
    built from them (the timing is only printed: on a shared machine it says little at this size)."""
    report = scaling.main(["--sizes", "10,40", "--in-process", "--json", str(tmp_path / "report.json")])
    rows = report["rows"]
    assert [r["files"] for r in rows] == [10, 40]
    assert all(r[step]["problem_count"] == 0 for r in rows for step in scaling.STEPS)
    assert json.loads((tmp_path / "report.json").read_text())["verdicts"]


def test_a_plot_shows_at_most_the_best_rows(tmp_path):
    rows = [
        {"entry": f"e{i}", "precision": "32-true", "hardware": "cpu", "provisional": False, "mean": 1.0 + i,
         "std": 0.1, "paper_value": None, "paper_task": None, "paper_metric": None, "metric": "error"}
        for i in range(leaderboard.PLOT_ROWS + 40)
    ]  # fmt: skip
    ax = leaderboard.plot_figure("mnist", rows).axes[0]
    assert len(ax.get_yticks()) == leaderboard.PLOT_ROWS and f"of {len(rows)} rows" in ax.get_title()


@pytest.mark.slow
def test_the_harness_overhead_and_epoch_scripts_run_at_toy_size(real_data_dir, tmp_path):
    """`make perf-overhead` and `make perf`, shrunk: every row trains, the harness row through run_benchmark, and the
    three ways of training an epoch see the same number of images."""
    from benchmarks.perf import harness_overhead, lenet_epoch
    from benchmarks.running.registry import get_entry

    report = harness_overhead.main(["--steps", "4", "--rounds", "1", "--data-dir", str(real_data_dir),
                                    "--json", str(tmp_path / "overhead.json")])  # fmt: skip
    assert len(report["us_per_step"]) == len(harness_overhead.ROWS)
    assert all(value > 0 for value in report["us_per_step"].values())
    epoch = lenet_epoch.main(["--limit-batches", "3", "--workers", "0", "--data-dir", str(real_data_dir)])
    images = {m["images_per_epoch"] for m in epoch["measurements"].values()}
    assert images == {3 * 16} and epoch["targets"]["b/a"] == "<= 1.1"
    assert "LeNet" in type(get_entry("lenet5").build_model(get_entry("lenet5").task("mnist"))).__name__  # untouched


@pytest.mark.slow
def test_the_environment_steps_script_compares_the_harness_with_a_bare_loop(tmp_path):
    """`make perf-env`, one epoch of dqn-cartpole (25,000 steps, its warm-up and 1,500 updates): both rows gather the
    same steps, and the harness ends with the bare loop's weights (it adds nothing to what the agent computes)."""
    from benchmarks.perf import environment_steps

    assert environment_steps.main(["--epochs", "1", "--out", str(tmp_path / "env.json")]) == 0
    report = json.loads((tmp_path / "env.json").read_text())
    assert report["same_weights"] and report["harness"]["steps_per_s"] > 0 and report["bare"]["steps_per_s"] > 0
