"""`milestones join`: the result files of seeds run as separate jobs ("parts") become one result file, which validate
accepts; parts that are not one run in all but the seed, or that miss or repeat a seed, are refused in one line and
nothing is written.

Two real parts (seed 0 and seed 1 of the MLP, one epoch on the task's generated example) are run once for the module;
each refusal edits copies of them the way a mixed-up job array would.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.core.results import Result, aggregate, artifact_path, find_results, read_result
from benchmarks.judging import leaderboard
from benchmarks.judging.join import JoinError, join_parts
from benchmarks.judging.validate import validate
from benchmarks.running.harness import BenchOptions, run_benchmark
from benchmarks.running.registry import config_hash

ENTRY = "mlp"  # among the fastest entries: a seed of one epoch on the example takes well under a second


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> list[Path]:
    """The part files of seeds 0 and 1, each run as its own job (own output folder), into one parts folder."""
    root = tmp_path_factory.mktemp("parts")
    written = []
    for seed in (0, 1):
        options = BenchOptions(example_data=True, max_epochs=1, wandb="off", progress="none", seeds=[seed],
                               accelerator="cpu", output_dir=str(root / f"job-{seed}"),
                               results_dir=str(root / "parts"))  # fmt: skip
        _, path = run_benchmark(ENTRY, options)
        written.append(path)
    return written


def copies(parts: list[Path], folder: Path, change=None, which: int = 1) -> list[Path]:
    """Copies of the parts in ``folder``; ``change`` edits the JSON of part ``which``."""
    folder.mkdir(parents=True)
    paths = [Path(shutil.copy(part, folder / part.name)) for part in parts]
    if change is not None:
        data = json.loads(paths[which].read_text())
        change(data)
        paths[which].write_text(json.dumps(data, indent=2))
    return paths


def without_folder(problem: str) -> str:
    return problem.split(": ", 1)[1]


def test_two_parts_join_into_one_result_that_validates(parts, tmp_path):
    results = tmp_path / "results"
    path = join_parts(list(reversed(parts)), [0, 1], results)  # the order given does not matter
    joined, first, second = read_result(path), read_result(parts[0]), read_result(parts[1])
    assert find_results(results) == [path] and path.parent == results / joined.task / ENTRY

    assert [s.seed for s in joined.seeds] == [0, 1]
    assert joined.seeds == [first.seeds[0], second.seeds[0]]
    assert joined.aggregate == aggregate([first.seeds[0].metrics["error"], second.seeds[0].metrics["error"]])
    assert joined.aggregate.n == 2 and joined.status == "ok"
    assert joined.wall_time_s == first.wall_time_s + second.wall_time_s  # the compute spent
    assert joined.peak_memory_mb == max(first.peak_memory_mb, second.peak_memory_mb)
    assert (joined.environment, joined.config, joined.code) == (first.environment, first.config, first.code)
    assert [(p.file, p.sha256, p.seeds) for p in joined.parts] == [
        (part.name, hashlib.sha256(part.read_bytes()).hexdigest(), [seed]) for seed, part in enumerate(parts)
    ]

    # validate finds nothing in the join that it does not find in the part of seed 0: what remains is what any smoke
    # run on the example data has (a smoke run, one epoch, the example's data, perhaps a tree with changes)
    board = tmp_path / "board"
    leaderboard.build(results, board)
    problems, _ = validate([str(path)], results_dir=results, leaderboard_dir=board)
    part_results = tmp_path / "part-results"
    alone = copies(parts[:1], part_results / joined.task / ENTRY)[0]
    leaderboard.build(part_results, tmp_path / "part-board")
    expected, _ = validate([str(alone)], results_dir=part_results, leaderboard_dir=tmp_path / "part-board")
    assert {without_folder(p) for p in problems} <= {without_folder(p) for p in expected}, problems
    assert all(p.split(": ")[1].startswith(("smoke", "config", "dataset[", "code.git_dirty")) for p in problems)


def test_a_folder_of_parts_joins_with_the_seeds_it_is_told(parts, tmp_path):
    path = join_parts([parts[0].parent], [0, 1], tmp_path / "results")
    assert [s.seed for s in read_result(path).seeds] == [0, 1]
    again = join_parts([parts[0].parent, parts[0]], [0, 1], tmp_path / "other")  # a file named twice is one part
    assert len(read_result(again).parts) == 2


def test_the_same_parts_are_joined_once(parts, tmp_path):
    path = join_parts(parts, [0, 1], tmp_path / "results")
    with pytest.raises(JoinError, match="joined already, into .*nothing was written"):
        join_parts(parts, [0, 1], tmp_path / "results")
    assert find_results(tmp_path / "results") == [path]


def test_artifacts_are_copied_beside_the_joined_result(parts, tmp_path):
    def with_artifact(data):
        data["seeds"][0]["artifacts"] = ["notes.txt"]

    paths = copies(parts, tmp_path / "parts", with_artifact)
    source = artifact_path(paths[1], 1, "notes.txt")
    source.parent.mkdir(parents=True)
    source.write_text("seed 1's artifact\n")
    path = join_parts(paths, [0, 1], tmp_path / "results")
    assert artifact_path(path, 1, "notes.txt").read_text() == "seed 1's artifact\n"

    source.unlink()  # an artifact left behind when the part was copied: refused before anything is written
    with pytest.raises(JoinError, match="notes.txt is missing"):
        join_parts(paths, [0, 1], tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()


def other_config(data):
    data["config"]["trainer"]["max_epochs"] = 2
    data["config_hash"] = config_hash(data["config"])  # consistent with itself, not with the other part


def other_package(name, version):
    def change(data):
        data["environment"]["packages"][name] = version

    return change


# case: (change to the copy of seed 1's part, the seeds expected, what the message says)
REFUSALS = {
    "missing seed": (None, [0, 1, 2], "seed(s) [2] missing"),
    "missing seeds of the entry's count": (None, None, "seed(s) [2] missing"),
    "unexpected seed": (None, [0], "seed(s) [1] in"),
    "duplicate seed": (lambda d: d["seeds"][0].update(seed=0), [0, 1], "seed 0 is in both"),
    "config": (other_config, [0, 1], "differ in config (config_hash, trainer)"),
    "code": (lambda d: d["code"].update(git_commit="0" * 40), [0, 1], "differ in code (git_commit)"),
    "dirty tree": (lambda d: d["code"].update(git_dirty=not d["code"]["git_dirty"]), [0, 1], "code (git_dirty)"),
    "numeric package": (other_package("torch", "0.0.1"), [0, 1], "differ in environment class (packages.torch)"),
    "device": (lambda d: d["environment"].update(device="Other CPU"), [0, 1], "environment class (device)"),
    "precision": (lambda d: d.update(precision="bf16-mixed"), [0, 1], "environment class (precision)"),
    "deterministic": (lambda d: d.update(deterministic=False), [0, 1], "environment class (deterministic)"),
    "entry": (lambda d: d.update(entry="lenet5-modern"), [0, 1], "differ in entry and task (entry)"),
    "dataset": (lambda d: d["dataset"].update(example="other"), [0, 1], "differ in dataset (example)"),
    "wandb project": (lambda d: d["wandb"].update(project="other"), [0, 1], "differ in W&B settings (project)"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_parts_that_are_not_one_run_are_refused_and_nothing_is_written(parts, tmp_path, case):
    change, seeds, expected = REFUSALS[case]
    paths = copies(parts, tmp_path / "parts", change)
    results = tmp_path / "results"
    with pytest.raises(JoinError) as refused:
        join_parts(paths, seeds, results)
    message = str(refused.value)
    assert expected in message and "\n" not in message, message
    assert str(paths[1]) in message or case == "missing seed", "the message names the file concerned"
    assert not results.exists()


def test_an_unchanged_environment_class_ignores_the_host(parts, tmp_path):
    """What differs from job to job on one kind of machine (the host's name, its thread count) joins."""

    def other_host(data):
        data["environment"].update(machine="another-node", torch_threads=3)

    path = join_parts(copies(parts, tmp_path / "parts", other_host), [0, 1], tmp_path / "results")
    assert read_result(path).environment == read_result(parts[0]).environment  # the part holding the lowest seed's


def distributed(strategy: str, host: str):
    """A part run as two processes on one node (the layout a multi-process run records), its ranks on ``host``."""

    def change(data):
        ranks = [{"rank": r, "node_rank": 0, "local_rank": r, "device": "cpu", "torch_threads": 1, "host": host}
                 for r in (0, 1)]  # fmt: skip
        data.update(world_size=2, distributed={"strategy": strategy, "num_nodes": 1, "devices_per_node": 2,
                                               "batch_per_process": 16, "ranks": ranks})  # fmt: skip

    return change


def test_a_distributed_layout_must_agree_but_its_ranks_may_differ(parts, tmp_path):
    if "distributed" not in Result.model_fields:
        pytest.skip("results record no distributed layout yet")
    paths = copies(parts, tmp_path / "parts", distributed("ddp", "00000000"), which=0)
    data = json.loads(paths[1].read_text())
    distributed("ddp", "11111111")(data)
    paths[1].write_text(json.dumps(data))
    path = join_parts(paths, [0, 1], tmp_path / "results")  # other nodes, same layout
    assert read_result(path).distributed == read_result(paths[0]).distributed  # the lowest seed's part's

    distributed("fsdp", "11111111")(data)
    paths[1].write_text(json.dumps(data))
    with pytest.raises(JoinError, match=r"differ in environment class \(distributed\)"):
        join_parts(paths, [0, 1], tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_nothing_to_join_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(JoinError, match="no parts found in"):
        join_parts([tmp_path / "empty"], None, tmp_path / "results")
    (tmp_path / "empty" / "broken.json").write_text("{")
    with pytest.raises(JoinError, match="broken.json: not readable JSON"):
        join_parts([tmp_path / "empty"], None, tmp_path / "results")
    assert not (tmp_path / "results").exists()


def test_the_command_joins_or_says_why_in_one_line_with_status_2(parts, tmp_path, capsys):
    folder, results = str(parts[0].parent), str(tmp_path / "results")
    with pytest.raises(SystemExit) as exit_:
        main(["join", folder, "--seeds", "0,1,2", "--results-dir", results])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith("milestones: error: seed(s) [2] missing") and "--seeds" in err
    assert not Path(results).exists()

    main(["join", folder, "--seeds", "0,1", "--results-dir", results])
    out = capsys.readouterr().out
    [path] = find_results(Path(results))
    assert "joined seeds [0, 1] of 2 parts" in out and f"result (ok, smoke): {path}" in out


def test_bench_says_nothing_about_the_result_in_a_process_other_than_rank_0(parts, monkeypatch, capsys):
    """Each process of a multi-process run returns from run_benchmark; only rank 0 has a path and reports it."""
    import benchmarks.running.harness as harness

    monkeypatch.setattr(harness, "run_benchmark", lambda entry, opts: (read_result(parts[0]), None))
    with pytest.raises(SystemExit) as exit_:
        main(["bench", ENTRY, "--example-data", "--wandb", "off"])
    assert exit_.value.code == 0 and "result (" not in capsys.readouterr().out
