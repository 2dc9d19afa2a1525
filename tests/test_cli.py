"""The `milestones` command: listing, one-line errors, the demo, and the Makefile's targets."""

from __future__ import annotations

import subprocess

import pytest

from benchmarks.cli import main
from benchmarks.core.paths import REPO_ROOT
from benchmarks.running.harness import BenchOptions
from benchmarks.running.registry import all_entries
from benchmarks.tools.demo import demo_plan, run_demo


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_list_shows_every_entry_with_year_task_division_and_paper_value(capsys):
    main(["list"])
    out = capsys.readouterr().out
    for name, entry in all_entries().items():
        assert name in out and str(entry.config.paper.year) in out
    assert "0.95 (paper, mnist)" in out and "13.98 (suite, mnist)" in out and "closed" in out and "open" in out
    assert "open (3 deviations)" in out


def test_unknown_entry_is_one_line_with_close_matches(capsys):
    code, out, err = run_cli(capsys, "bench", "lenet-5")
    assert code == 2 and err.count("\n") == 1 and "unknown entry 'lenet-5'; did you mean lenet5" in err


def test_help_is_whole_sentences_and_names_the_entries(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping inside a name
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and "nothing half-written is left behind." not in out and "rebuild the leaderboard, run" in out
    code, out, _ = run_cli(capsys, "bench", "--help")
    assert code == 0 and "the entry to run, one of:" in out
    for name in all_entries():
        assert name in out


def test_tasks_are_listed_by_name(capsys):
    main(["tasks"])
    names = [line.split(":")[0] for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert names == sorted(names) and len(names) > 5
    main(["tasks"])
    out = capsys.readouterr().out
    assert "models provide: CharacterModel (forward, generate)" in out and "optionally LowerBound (lower_bound)" in out


def test_unknown_task_for_an_entry(capsys):
    code, _, err = run_cli(capsys, "bench", "lenet5", "--task", "cifar10", "--wandb", "off")
    assert code == 2 and "does not run on task 'cifar10'" in err


def test_unknown_precision(capsys):
    code, _, err = run_cli(capsys, "bench", "perceptron", "--task", "digits", "--precision", "fp8", "--wandb", "off")
    assert code == 2 and "unknown precision 'fp8'" in err


def test_missing_data_offline_is_one_clear_error(capsys, tmp_path):
    code, _, err = run_cli(capsys, "bench", "lenet5", "--data-dir", str(tmp_path), "--offline", "--wandb", "off",
                           "--results-dir", str(tmp_path / "results"))  # fmt: skip
    assert code == 2 and err.count("\n") == 1
    assert "4 files are missing" in err and "t10k-labels-idx1-ubyte.gz" in err and "--data-dir" in err
    assert not (tmp_path / "results").exists()


def test_bench_says_at_the_start_where_its_result_file_goes(capsys, tmp_path):
    _, out, _ = run_cli(capsys, "bench", "lenet5", "--data-dir", str(tmp_path), "--offline", "--wandb", "off")
    first = out.splitlines()[0]  # before anything else
    assert "leaderboards/results, the leaderboard's committed results" in first and "--results-dir <folder>" in first
    _, out, _ = run_cli(capsys, "bench", "lenet5", "--data-dir", str(tmp_path), "--offline", "--wandb", "off",
                        "--results-dir", str(tmp_path / "tries"))  # fmt: skip
    assert out.splitlines()[0] == f"result file goes to {tmp_path / 'tries'}"


def test_example_data_runs_an_entry_with_no_data_folder_as_a_smoke_run(capsys, tmp_path):
    """`--example-data` (the README's first try for a new entry): the task's generated example, no data, no download."""
    main(["bench", "mlp", "--example-data", "--seeds", "0", "--data-dir", str(tmp_path / "none"), "--offline",
          "--wandb", "off", "--progress", "none", "--results-dir", str(tmp_path / "results")])  # fmt: skip
    (result,) = (tmp_path / "results").rglob("*.json")
    assert '"smoke": true' in result.read_text() and not (tmp_path / "none").exists()


def test_bench_alexnet_with_no_data_and_no_network_says_what_to_download_and_where(capsys, tmp_path):
    code, _, err = run_cli(capsys, "bench", "alexnet", "--data-dir", str(tmp_path), "--offline", "--wandb", "off",
                           "--results-dir", str(tmp_path / "results"))  # fmt: skip
    assert code == 2 and err.count("\n") == 1
    assert f"{tmp_path}/imagenette2-224 not found" in err and "--task imagenette-320" in err and "--data-dir" in err
    code, _, err = run_cli(capsys, "bench", "alexnet", "--task", "imagenette-320", "--data-dir", str(tmp_path),
                           "--offline", "--wandb", "off")  # fmt: skip
    assert code == 2 and "imagenette2-320.tgz is missing and downloading is off" in err
    assert not (tmp_path / "results").exists()


def test_malformed_result_file_stops_the_leaderboard(capsys, tmp_path):
    bad = tmp_path / "results" / "mnist" / "lenet5" / "x.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"entry": "lenet5"}')
    code, _, err = run_cli(capsys, "leaderboard", "--results-dir", str(tmp_path / "results"),
                           "--out-dir", str(tmp_path / "board"))  # fmt: skip
    assert code == 2 and str(bad) in err and "field" in err and not (tmp_path / "board").exists()


def test_demo_plan_covers_the_early_milestones():
    plan = demo_plan()
    assert plan[0] == ("mcculloch-pitts", "logic-gates")
    assert {("perceptron", "digits"), ("mlp", "digits"), ("lenet5", "digits")} <= set(plan)


def test_demo_runs_offline_and_prints_a_leaderboard(capsys, tmp_path):
    run_demo(BenchOptions(wandb="off", progress="none", output_dir=str(tmp_path)))  # what `make demo` runs
    out = capsys.readouterr().out
    assert "logic-gates: test error" in out and "digits: test error" in out and "demo finished" in out
    assert (tmp_path / "demo" / "results" / "digits" / "lenet5-modern").exists()
    assert "![" not in out and "| # |" not in out and "1 epochs" not in out, "a readable table, not raw markdown"
    assert "too few for" in out, "the mlp row says why its error is high on digits"
    board = tmp_path / "demo" / "leaderboard"
    assert "plots/digits.png" in (board / "README.md").read_text() and (board / "plots" / "digits.png").exists()


def test_make_help_lists_targets_and_a_bench_rule_per_entry():
    out = subprocess.run(["make", "-s", "help"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    for target in ("setup", "demo", "test", "leaderboard", "perf", "gpu-check", "bench-<entry>"):
        assert target in out
    for name in all_entries():
        assert name in out
    dry = subprocess.run(["make", "-n", "bench-perceptron", "TASK=digits"], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert "bench perceptron --task digits" in dry


def test_gpu_check_cpu_dry_run(tmp_path, capsys):
    """The prepared GPU script's CPU dry run: every selected entry briefly, a summary table, exit status 0."""
    from benchmarks.tools.gpu_check import main as gpu_check

    status = gpu_check(["--accelerator", "cpu", "--entries", "mcculloch-pitts,perceptron", "--no-full",
                        "--output-dir", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0 and "mcculloch-pitts" in out and "bf16-mixed" in out and "32-true" in out
    assert "multi-GPU leg (every entry under DDP): skipped, 0 GPUs visible" in out
    assert list((tmp_path / "gpu-check" / "smoke-results").rglob("*.json"))


def test_validate_passes_the_committed_results_and_fails_a_stray_file(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "validate")
    assert code == 0 and "all result files pass" in out
    stray = tmp_path / "x.json"
    stray.write_text('{"entry": "lenet5"}')
    code, out, err = run_cli(capsys, "validate", str(stray))
    assert code == 1 and f"{stray}: path: not under" in err and "field" in err and "problem(s)" in out


def test_verify_of_a_missing_file_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "verify", str(tmp_path / "nope.json"))
    assert code == 2 and err.count("\n") == 1 and "nope.json: cannot be read (No such file or directory)" in err


def test_compare_prints_side_by_side(capsys):
    main(["compare", "perceptron", "mlp", "--task", "mnist"])
    out = capsys.readouterr().out
    assert "perceptron / mnist" in out and "mlp / mnist" in out and "p (better than 1st)" in out


def test_the_github_workflow_installs_tests_and_validates_as_the_readme_says():
    import yaml

    workflow = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "ci.yml").read_text())
    steps = " ".join(step.get("run", "") for step in workflow["jobs"]["test"]["steps"])
    assert "make setup" in steps and "make test" in steps and "milestones validate" in steps
    assert "make setup" in (REPO_ROOT / "README.md").read_text()
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()


def _flags(command: str) -> dict[str, object]:
    """dest → argparse action of a subcommand's options (deferred ones added)."""
    import argparse

    from benchmarks.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    sub.complete()
    return {a.dest: a for a in sub._actions if a.option_strings and a.dest != "help"}


def test_every_option_of_bench_options_has_a_flag_and_every_flag_a_field():
    import dataclasses

    fields = {f.name for f in dataclasses.fields(BenchOptions)} - {"callbacks"}  # callbacks: tests and tools only
    assert set(_flags("bench")) == fields
    assert "callbacks" not in _flags("bench") and "callbacks" not in _flags("demo")
    bench_only = {f.name for f in dataclasses.fields(BenchOptions) if f.metadata.get("bench_only")}
    assert bench_only == {"max_epochs", "fast_dev_run", "limit_train_batches", "resume", "example_data", "part"}
    assert set(_flags("demo")) == fields - bench_only
    names = {s for a in _flags("bench").values() for s in a.option_strings}
    assert {"--offline", "--no-deterministic", "--seeds", "--devices", "--example-data", "--wandb-project"} <= names


def test_the_flags_defaults_are_the_fields_defaults(monkeypatch):
    from benchmarks.cli import bench_options, build_parser

    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    assert bench_options(build_parser().parse_args(["bench", "mlp"])) == BenchOptions()
    assert bench_options(build_parser().parse_args(["demo"])) == BenchOptions()
    monkeypatch.setenv("WANDB_PROJECT", "mine")
    assert (
        bench_options(build_parser().parse_args(["bench", "mlp"])).wandb_project
        == "mine"
        == BenchOptions().wandb_project
    )


def test_flags_parse_into_typed_options():
    from benchmarks.cli import bench_options, build_parser

    args = ["bench", "mlp", "--offline", "--no-deterministic", "--seeds", "0,1,2", "--devices", "2", "--example-data",
            "--wandb", "off", "--threads", "3", "--max-epochs", "1", "--limit-train-batches", "4"]  # fmt: skip
    opts = bench_options(build_parser().parse_args([*args, "--task", "mnist"]))
    assert (opts.download, opts.deterministic, opts.seeds, opts.devices) == (False, False, [0, 1, 2], 2)
    assert (opts.example_data, opts.wandb, opts.threads, opts.max_epochs) == (True, "off", 3, 1)
    assert (opts.limit_train_batches, opts.task) == (4, "mnist")
    assert opts.smoke
    assert bench_options(build_parser().parse_args(["bench", "mlp", "--devices", "0,1"])).devices == "0,1"
    assert bench_options(build_parser().parse_args(["bench", "mlp", "--devices", "auto"])).devices == "auto"


@pytest.mark.parametrize(
    "argv,says",
    [
        (["bench", "mlp", "--seeds", "a,b"], "argument --seeds: takes comma-separated integers"),
        (["bench", "mlp", "--wandb", "sometimes"], "argument --wandb: invalid choice: 'sometimes'"),
        (["bench", "mlp", "--threads", "0"], "argument --threads: takes a whole number of at least 1"),
        (["bench", "mlp", "--progress", "loud"], "argument --progress: invalid choice"),
        (["demo", "--max-epochs", "2"], "unrecognized arguments: --max-epochs 2"),
        (["verify", "x.json", "--accelerator", "auto"], "argument --accelerator: invalid choice: 'auto'"),
    ],
)
def test_a_bad_flag_value_is_one_line_and_exit_status_2(capsys, argv, says):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and says in err and "(see milestones " in err and out == ""


def test_verify_shares_benchs_flags_with_its_own_defaults():
    import dataclasses

    from benchmarks.judging.verify import VerifyOptions

    flags = _flags("verify")
    shared = {"seeds", "accelerator", "data_dir", "output_dir", "wandb", "download", "progress"}
    assert shared | {"run_anyway", "skip_over_minutes"} == set(flags)
    assert {f.name for f in dataclasses.fields(VerifyOptions)} == set(flags)
    for f in dataclasses.fields(VerifyOptions):
        assert flags[f.name].default == f.default, f.name
    assert flags["download"].option_strings == ["--offline"] and flags["accelerator"].choices == ["cpu", "gpu"]
