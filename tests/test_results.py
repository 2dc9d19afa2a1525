"""Result files (schema, atomic never-overwriting writes, statistics) and the leaderboard built from them."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest
from scipy import stats

from benchmarks.core.results import ResultError, aggregate, find_results, read_result, write_atomic, write_result
from benchmarks.judging import leaderboard
from benchmarks.running.harness import BenchOptions, run_benchmark


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    """Real full-recipe results on bundled data: McCulloch-Pitts (1 seed) and the perceptron on digits (3 seeds)."""
    out = tmp_path_factory.mktemp("results")
    runs = tmp_path_factory.mktemp("runs")
    for entry, task in [("mcculloch-pitts", "logic-gates"), ("perceptron", "digits")]:
        options = BenchOptions(task=task, accelerator="cpu", wandb="off", progress="none", output_dir=str(runs),
                               results_dir=str(out))  # fmt: skip
        run_benchmark(entry, options)
    return out


def copy_of(results_dir, tmp_path):
    target = tmp_path / "results"
    shutil.copytree(results_dir, target)
    return target


def test_aggregate_matches_scipy():
    values = [1.0, 1.2, 0.9, 1.1]
    agg = aggregate(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=agg.mean, scale=stats.sem(values))
    assert agg.n == 4 and math.isclose(agg.mean, 1.05) and math.isclose(agg.ci95[0], low)
    assert math.isclose(agg.ci95[1], high) and math.isclose(agg.std, stats.tstd(values))
    assert aggregate([2.0]).ci95 == (2.0, 2.0) and aggregate([]) is None


def test_results_are_never_overwritten(results_dir, tmp_path):
    (path,) = [p for p in find_results(results_dir) if "perceptron" in str(p)]
    result = read_result(path)
    first = write_result(result, tmp_path)
    second = write_result(result, tmp_path)
    assert first != second and first.read_text() == second.read_text()
    with pytest.raises(FileExistsError):
        write_atomic("x", first)
    assert read_result(first) == result and not list(tmp_path.rglob("*.tmp"))


def test_full_recipe_results_are_not_smoke_and_rank(results_dir):
    results = leaderboard.load_results(results_dir)
    assert {r.entry for _, r in results} == {"mcculloch-pitts", "perceptron"}
    assert all(not r.smoke and r.status == "ok" for _, r in results)
    perceptron = next(r for _, r in results if r.entry == "perceptron")
    assert perceptron.aggregate.n == 3 and [s.seed for s in perceptron.seeds] == [0, 1, 2]
    for seed in perceptron.seeds:  # testing the best checkpoint must not roll the measurements back to its epoch
        assert len(seed.val_history) == seed.epochs == 10
        assert seed.train_time_s >= seed.val_history[-1]["train_seconds"] > 0


@pytest.mark.parametrize(
    "edit,field",
    [
        (lambda d: d.pop("config_hash"), "config_hash"),
        (lambda d: d.update(precision=16), "precision"),
        (lambda d: d.update(schema_version=99), "schema_version"),
        (lambda d: d["seeds"][0].update(status="great"), "seeds.0.status"),
        (lambda d: d.update(surprise=1), "surprise"),
    ],
)
def test_malformed_result_names_file_and_field_and_builds_nothing(results_dir, tmp_path, edit, field):
    results = copy_of(results_dir, tmp_path)
    path = find_results(results)[0]
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    out = tmp_path / "board"
    with pytest.raises(ResultError) as info:
        leaderboard.build(results, out)
    assert str(path) in str(info.value) and field in str(info.value)
    assert not out.exists(), "nothing is built half-way"


def test_result_that_is_not_json(results_dir, tmp_path):
    results = copy_of(results_dir, tmp_path)
    find_results(results)[0].write_text("{ not json")
    with pytest.raises(ResultError, match="not readable JSON"):
        leaderboard.load_results(results)


def test_leaderboard_tables_and_check(results_dir, tmp_path):
    out = tmp_path / "board"
    written = leaderboard.build(results_dir, out)
    readme = (out / "README.md").read_text()
    assert "## digits" in readme and "## logic-gates" in readme and "perceptron" in readme
    assert (out / "plots" / "digits.png").stat().st_size > 1000 and out / "leaderboard.csv" in written
    rows = (out / "leaderboard.csv").read_text().splitlines()
    assert rows[0].startswith("task,entry,year") and len(rows) == 3
    assert leaderboard.check(results_dir, out) == []
    (out / "README.md").write_text(readme.replace("perceptron", "perceptron-edited"))
    assert leaderboard.check(results_dir, out)
    assert leaderboard.build(results_dir, out) and leaderboard.check(results_dir, out) == []


def test_leaderboard_is_deterministic(results_dir):
    assert leaderboard.render_markdown(results_dir) == leaderboard.render_markdown(results_dir)


def test_smoke_runs_are_excluded_and_failed_runs_listed_apart(results_dir, tmp_path):
    results = copy_of(results_dir, tmp_path)
    (path,) = [p for p in find_results(results) if "perceptron" in str(p)]
    data = json.loads(path.read_text())
    smoke = dict(data, smoke=True)
    failed = dict(data, status="failed")
    failed["seeds"][1].update(status="failed", failure="training loss is nan at epoch 2, step 7", metrics={})
    (path.parent / "smoke.json").write_text(json.dumps(smoke))
    (path.parent / "failed.json").write_text(json.dumps(failed))
    ranked, failures = leaderboard.collect(leaderboard.load_results(results))
    assert len(ranked["digits"]) == 1 and [r["file"] for r in failures] == ["failed.json"]
    text = leaderboard.render_markdown(results)
    assert "Failed runs (not ranked)" in text and "training loss is nan" in text


def test_fewer_seeds_than_the_protocol_is_provisional(results_dir, tmp_path):
    results = copy_of(results_dir, tmp_path)
    (path,) = [p for p in find_results(results) if "perceptron" in str(p)]
    data = json.loads(path.read_text())
    data["seeds"] = data["seeds"][:1]
    data["aggregate"] = aggregate([data["seeds"][0]["metrics"]["error"]]).model_dump()
    path.write_text(json.dumps(data))
    assert "*provisional*" in leaderboard.render_markdown(results)


def test_committed_leaderboard_equals_what_the_committed_results_produce():
    problems = leaderboard.check()
    assert problems == [], "\n".join(problems)


def test_a_result_records_its_run_folder_relative_to_the_output_folder(quick, tmp_path):
    opts = quick(task="digits")
    result, path = run_benchmark("perceptron-single-layer", opts)
    seed = result.seeds[0]
    assert not os.path.isabs(seed.log_dir) and str(tmp_path) not in path.read_text(), "no local absolute path"
    assert (seed.run_dir(opts.output_dir) / "seed_result.json").exists()
