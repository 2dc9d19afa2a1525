"""Distributed runs on CPU processes (gloo): the harness under Lightning's DDP, launched by Lightning itself, by
``torchrun`` as two nodes on 127.0.0.1, and by SLURM's ``srun`` (a stand-in that starts the tasks as srun does).

The unit tests check the sharding that makes evaluation exact (every example on exactly one process) and the global
batch (one step of W processes sees the examples one step of a single process sees). The runs check what a user
relies on: a result that records the layout, a test metric equal to the single-process evaluation of the same
weights, the same numbers twice, a killed run that resumes to the uninterrupted numbers, and the same numbers
whichever launcher started the processes. With MNIST in MILESTONES_DATA they train on it; without, on the example.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmarks.core.paths import REPO_ROOT
from benchmarks.core.results import find_results, read_result
from benchmarks.running import distributed
from benchmarks.running.distributed import RankSlices, first_process, process_batch, processes
from benchmarks.tasks.imagecache import EvalBatches, TenCropBatches
from benchmarks.tasks.loader import TensorBatches

BIN = Path(sys.executable).parent
TIMEOUT = 600  # a hung collective fails the test instead of blocking CI


# --- which process writes -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "first"),
    [
        ({}, True),  # a plain single-process run
        ({"LOCAL_RANK": "0", "NODE_RANK": "0"}, True),  # Lightning's launcher, the main process
        ({"LOCAL_RANK": "1"}, False),  # … a child
        ({"RANK": "1", "LOCAL_RANK": "0", "GROUP_RANK": "1"}, False),  # torchrun, node 1's first process
        ({"SLURM_PROCID": "3", "SLURM_LOCALID": "0"}, False),  # srun, node 1's first task (before Lightning runs)
        ({"SLURM_PROCID": "0"}, True),
    ],
)
def test_only_global_rank_zero_is_the_first_process(monkeypatch, env, first):
    for name in distributed.RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert first_process() is first


# --- exact evaluation and the global batch ---------------------------------------------------------------------------
def ranks(world: int):
    return [SimpleNamespace(global_rank=rank, world_size=world) for rank in range(world)]


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("n", [1, 2, 5, 7, 10])
def test_sliced_evaluation_sees_every_example_exactly_once(n, world):
    loader = [torch.arange(start, min(start + 4, n)) for start in range(0, n, 4)]  # batches of 4, the last short
    seen = [int(i) for trainer in ranks(world) for batch in RankSlices(loader, trainer, train=False) for i in batch]
    assert sorted(seen) == list(range(n))


@pytest.mark.parametrize("world", [2, 3])
def test_sliced_training_gives_every_rank_an_equal_share_of_each_global_batch(world):
    loader = [(torch.arange(12), torch.arange(12) * 10), (torch.arange(12, 19), torch.arange(12, 19) * 10)]
    shares = [list(RankSlices(loader, trainer, train=True)) for trainer in ranks(world)]
    for step in range(2):
        sizes = {len(share[step][0]) for share in shares}
        assert len(sizes) == 1  # equal: DDP's mean of the ranks' mean gradients weighs every example alike
        together = torch.cat([share[step][0] for share in shares])
        assert len(together) == len(loader[step][0]) - len(loader[step][0]) % world
        assert torch.equal(torch.cat([share[step][1] for share in shares]), together * 10)  # x and y stay paired


@pytest.mark.parametrize("world", [2, 3])
def test_sharded_evaluation_loaders_see_every_example_exactly_once(world):
    n = 7
    images, labels = torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.arange(n)
    seen = [
        int(y)
        for rank in range(world)
        for _, ys in TensorBatches(images, labels, 3, shuffle=False, rank=rank, world_size=world)
        for y in ys
    ]
    assert sorted(seen) == list(range(n))
    store, device = torch.zeros(n, 3, 8, 8, dtype=torch.uint8), torch.device("cpu")
    seen = [int(y) for rank in range(world) for _, ys in EvalBatches(store, labels, labels, 3, device, rank, world)
            for y in ys]  # fmt: skip
    assert sorted(seen) == list(range(n))
    ten_crop = [TenCropBatches(store, labels, labels, 2, device, 6, None, rank, world) for rank in range(world)]
    assert sorted(int(y) for views in ten_crop for y in views.labels) == list(range(n))


@pytest.mark.parametrize("world", [2, 4])
def test_one_step_of_w_processes_sees_the_examples_of_one_single_process_step(world):
    """TensorBatches with the per-process share of the global batch: step k of the W ranks together is step k of one
    process at the global batch (the order is a function of seed and epoch, the same on every rank)."""
    n, batch = 50, 8
    images, labels = torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.arange(n)
    single = [set(y.tolist()) for _, y in TensorBatches(images, labels, batch, shuffle=True, seed=3)]
    shares = [list(TensorBatches(images, labels, process_batch(batch, world), shuffle=True, seed=3, rank=rank,
                                 world_size=world)) for rank in range(world)]  # fmt: skip
    for step in range(n // batch):
        assert set().union(*(set(share[step][1].tolist()) for share in shares)) == single[step]


def test_a_batch_that_does_not_divide_is_refused_with_what_to_do():
    assert process_batch(128, 4) == 32
    with pytest.raises(distributed.BatchSplitError, match="batch of 100 does not divide among 3 processes"):
        process_batch(100, 3)


@pytest.mark.parametrize(
    ("env", "devices", "nodes", "said"),
    [
        ({"WORLD_SIZE": "2"}, 1, 1, "the launcher started 2 processes but --devices 1 × --num-nodes 1 make 1"),
        ({"SLURM_NTASKS": "4", "SLURM_JOB_NAME": "job"}, 2, 1, "started 4 processes but --devices 2 × --num-nodes 1"),
        ({}, 1, 2, "--num-nodes 2 needs the same command started on every node: by torchrun or SLURM's srun"),
        ({"WORLD_SIZE": "2"}, 1, 2, None),  # torchrun, 2 nodes of 1
        ({"NODE_RANK": "1", "MASTER_ADDR": "10.0.0.1"}, 2, 2, None),  # by hand, as Lightning's multi-node launch
        ({"SLURM_NTASKS": "4", "SLURM_JOB_NAME": "interactive"}, 1, 1, None),  # Lightning ignores such a job
        ({}, 2, 1, None),  # Lightning's own launcher
    ],
)
def test_a_launch_that_does_not_match_the_options_is_refused_before_it_starts(monkeypatch, env, devices, nodes, said):
    for name in (*distributed.RANK_VARIABLES, "WORLD_SIZE", "SLURM_NTASKS", "SLURM_JOB_NAME", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    problem = distributed.launch_problem(devices, nodes, "cpu")
    assert problem == said if said is None else said in problem


def test_fsdp_on_a_cpu_is_one_line(quick):
    from benchmarks.running.harness import BenchError, run_benchmark

    with pytest.raises(BenchError, match="--strategy fsdp runs on GPUs only"):
        run_benchmark("lenet5-modern", quick(strategy="fsdp", devices=2, example_data=True))


def test_processes_counts_devices_times_nodes():
    assert processes(2, 1, "cpu") == 2 and processes(8, 4, "gpu") == 32 and processes("0,1", 2, "gpu") == 4
    assert processes("auto", 3, "cpu") == 3


def test_weights_digest_sees_a_change_in_any_parameter():
    model = torch.nn.Linear(3, 2)
    before = distributed.weights_digest(model)
    assert before == distributed.weights_digest(model) and before < 2**52  # exact in the float64 gathered
    with torch.no_grad():
        model.bias[1] += 1e-7
    assert distributed.weights_digest(model) != before


# --- real runs ------------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data_args() -> list[str]:
    """MNIST for 1 epoch of 20 steps where the data is present (a test metric over 10,000 images); else the example."""
    folder = os.environ.get("MILESTONES_DATA")
    if folder and (Path(folder) / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists():
        return ["--data-dir", folder, "--offline", "--max-epochs", "2", "--limit-train-batches", "20"]
    return ["--example-data", "--max-epochs", "3"]


def bench(output: Path, *args: str, env: dict | None = None, launcher: list[str] | None = None):
    command = [*(launcher or [str(BIN / "milestones")]), "bench", "lenet5-modern", "--accelerator", "cpu",
               "--seeds", "0", "--wandb", "off", "--progress", "none", "--threads", "1", "--output-dir", str(output),
               "--results-dir", str(output / "results"), *args]  # fmt: skip
    environment = {k: v for k, v in os.environ.items() if k not in distributed.RANK_VARIABLES} | (env or {})
    return subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip


def finish(*processes) -> list[str]:
    outputs = [p.communicate(timeout=TIMEOUT)[0] for p in processes]
    return [out + f"\n(exit {p.returncode})" for p, out in zip(processes, outputs)]


def the_result(output: Path):
    paths = find_results(output / "results")
    assert len(paths) == 1, paths
    return read_result(paths[0])


def checkpoint(output: Path, name: str) -> dict:
    path = next(output.glob(f"mnist/lenet5-modern/*/seed-0/checkpoints/{name}"))
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, data_args):
    """lenet5-modern on 2 CPU processes, Lightning's launcher: (output folder, result)."""
    output = tmp_path_factory.mktemp("ddp")
    out = finish(bench(output, "--devices", "2", *data_args))[0]
    assert out.endswith("(exit 0)"), out
    return output, the_result(output)


@pytest.mark.slow
def test_a_two_process_run_records_its_layout(ddp_run):
    _, result = ddp_run
    layout = result.distributed
    assert result.world_size == 2 and layout.strategy == "ddp" and (layout.num_nodes, layout.devices_per_node) == (1, 2)
    assert layout.batch_per_process == result.config["data"]["batch_size"] // 2
    assert [(r.rank, r.local_rank, r.node_rank, r.torch_threads) for r in layout.ranks] == [(0, 0, 0, 1), (1, 1, 0, 1)]


@pytest.mark.slow
def test_ddp_test_metric_equals_the_single_process_evaluation_of_the_same_weights(ddp_run, data_args, tmp_path):
    import lightning as L

    from benchmarks.running.registry import get_entry

    output, result = ddp_run
    entry = get_entry("lenet5-modern")
    task = entry.task(None)
    best = next(output.glob("mnist/lenet5-modern/*/seed-0/checkpoints/best-*.ckpt"))
    if "--example-data" in data_args:
        datamodule = task.example_datamodule(tmp_path, entry.config.data.batch_size, seed=0)
    else:
        datamodule = task.make_datamodule(Path(data_args[1]), entry.config.data.batch_size, seed=0, download=False)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    metrics = task.evaluate(trainer, entry.build_model(task), datamodule, best, artifacts=tmp_path)
    assert metrics == result.seeds[0].metrics  # exactly: counts reduced across the ranks, not averages of averages


@pytest.mark.slow
def test_the_same_seed_and_world_size_give_identical_results(ddp_run, data_args, tmp_path):
    first_output, first = ddp_run
    out = finish(bench(tmp_path, "--devices", "2", *data_args))[0]
    assert out.endswith("(exit 0)"), out
    again = the_result(tmp_path)
    assert again.seeds[0].metrics == first.seeds[0].metrics
    assert again.seeds[0].val_history == [
        {**row, "train_seconds": again.seeds[0].val_history[i]["train_seconds"]}
        for i, row in enumerate(first.seeds[0].val_history)
    ]
    a, b = checkpoint(first_output, "last.ckpt"), checkpoint(tmp_path, "last.ckpt")
    assert all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.slow
def test_a_killed_ddp_run_resumes_to_the_uninterrupted_weights(ddp_run, data_args, tmp_path):
    first_output, first = ddp_run
    steps_per_epoch = 20 if "--limit-train-batches" in data_args else 1
    killed = finish(bench(tmp_path, "--devices", "2", *data_args,
                          env={"MILESTONES_KILL_AT": f"training:{steps_per_epoch + 1}"}))[0]  # fmt: skip
    assert killed.endswith("(exit -9)"), killed  # in its second epoch, after the first one's checkpoint
    out = finish(bench(tmp_path, "--devices", "2", "--resume", *data_args))[0]
    assert out.endswith("(exit 0)") and "resuming from" in out, out
    assert the_result(tmp_path).seeds[0].metrics == first.seeds[0].metrics
    a, b = checkpoint(first_output, "last.ckpt"), checkpoint(tmp_path, "last.ckpt")
    assert all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.slow
def test_torchrun_two_nodes_on_localhost_give_the_same_numbers(ddp_run, data_args, tmp_path):
    """The same `torchrun` command twice, one process per "node", meeting at a c10d rendezvous on 127.0.0.1: the
    numbers of the run that Lightning launched, one result file, written by the global rank 0 only."""
    _, reference = ddp_run
    port = str(free_port())
    nodes = [
        bench(tmp_path, "--devices", "1", "--num-nodes", "2", *data_args,
              launcher=[str(BIN / "torchrun"), "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                        "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "milestones-test", "-m", "benchmarks.cli"])
        for _ in (0, 1)
    ]  # fmt: skip
    for out in finish(*nodes):
        assert out.endswith("(exit 0)"), out
    result = the_result(tmp_path)
    assert [(r.rank, r.node_rank, r.local_rank) for r in result.distributed.ranks] == [(0, 0, 0), (1, 1, 0)]
    assert (result.distributed.num_nodes, result.distributed.devices_per_node) == (2, 1)
    assert result.seeds[0].metrics == reference.seeds[0].metrics


FAKE_SRUN = """#!/usr/bin/env python3
# srun's part in a job step, for the test: start SLURM_NNODES x SLURM_NTASKS_PER_NODE copies of the command, each
# with the variables srun gives a task, and exit with the worst status.
import os, subprocess, sys
nodes, per_node = int(os.environ["SLURM_NNODES"]), int(os.environ["SLURM_NTASKS_PER_NODE"])
tasks = [subprocess.Popen(sys.argv[1:], env=os.environ | {"SLURM_NTASKS": str(nodes * per_node),
         "SLURM_PROCID": str(i), "SLURM_LOCALID": str(i % per_node), "SLURM_NODEID": str(i // per_node)})
         for i in range(nodes * per_node)]
sys.exit(max(task.wait() for task in tasks))
"""


@pytest.mark.slow
def test_the_slurm_recipe_runs_two_nodes_through_lightnings_slurm_environment(ddp_run, data_args, tmp_path):
    """benchmarks/launch/ddp.sbatch as sbatch would run it on 2 nodes × 1 task, srun replaced by a stand-in."""
    _, reference = ddp_run
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in distributed.RANK_VARIABLES} | {
        "PATH": f"{bin_dir}:{os.environ['PATH']}", "MILESTONES": str(BIN / "milestones"),
        "SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "milestones",
        "SLURM_NODELIST": "127.0.0.1", "SLURM_SUBMIT_DIR": str(REPO_ROOT), "MASTER_PORT": str(free_port()),
    }  # fmt: skip
    args = ["--accelerator", "cpu", "--seeds", "0", "--wandb", "off", "--threads", "1", "--output-dir", str(tmp_path),
            "--results-dir", str(tmp_path / "results"), *data_args]  # fmt: skip
    out = subprocess.run(["bash", str(REPO_ROOT / "benchmarks/launch/ddp.sbatch"), "lenet5-modern", *args], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    result = the_result(tmp_path)
    assert [(r.rank, r.node_rank) for r in result.distributed.ranks] == [(0, 0), (1, 1)]
    assert result.seeds[0].metrics == reference.seeds[0].metrics


@pytest.mark.slow
def test_every_entry_runs_under_ddp_or_says_why_not(tmp_path):
    """The uniform registry test of distributed runs: `ddp_check` runs every entry on 2 CPU processes with its
    task's example; each trains with the ranks in agreement (the harness checks weights and metrics) or is refused
    with its reason."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.tools.ddp_check", "--accelerator", "cpu", "--devices", "2",
                          "--example-data", "--output-dir", str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=2 * TIMEOUT)  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    summary = out.stdout.split("entry  ")[-1]
    assert " 0 failed or raised" in summary and " ok, " in summary, summary
    for path in find_results(tmp_path / "ddp-check" / "smoke-results"):
        assert read_result(path).world_size == 2


@pytest.mark.slow
@pytest.mark.parametrize(("entry", "task", "said"), [
    ("perceptron", "digits", "perceptron has no gradient-trained parameters, so 2 devices have nothing to share"),
    ("dqn-cartpole", "cartpole", "dqn-cartpole's agent gathers its own experience in one environment (CartPoleData)"),
    ("gatys-style-suite", "style-fig2", "gatys-style-suite optimises one image per pair with its own L-BFGS"),
])  # fmt: skip
def test_an_entry_that_cannot_share_is_refused_in_one_line(entry, task, said, tmp_path):
    """distributed.cannot_share, known before any process starts, is what the harness refuses with, in one line."""
    from benchmarks.running.registry import get_entry

    spec = get_entry(entry)
    chosen = spec.task(task)
    assert said in distributed.cannot_share(entry, spec.build_model(chosen), chosen.make_datamodule, 2)
    out = subprocess.run([str(BIN / "milestones"), "bench", entry, "--task", task, "--accelerator", "cpu", "--devices",
                          "2", "--example-data", "--seeds", "0", "--wandb", "off", "--output-dir", str(tmp_path)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    (line,) = out.stderr.strip().splitlines()
    assert out.returncode == 2 and line.startswith(f"milestones: error: {said}") and line.endswith("--devices 1")
    assert not find_results(tmp_path)


@pytest.mark.slow
def test_the_seeds_recipe_runs_seeds_as_parallel_jobs_and_joins_them(tmp_path):
    """benchmarks/launch/seeds.sbatch as two array tasks at once (the same run folder, no lock between them: each part
    has its own), then `milestones join`: one result with both seeds."""
    env = {k: v for k, v in os.environ.items() if k not in distributed.RANK_VARIABLES}
    env |= {"MILESTONES": str(BIN / "milestones"), "SLURM_SUBMIT_DIR": str(REPO_ROOT)}
    args = ["--accelerator", "cpu", "--example-data", "--max-epochs", "1", "--wandb", "off", "--output-dir",
            str(tmp_path / "runs")]  # fmt: skip
    jobs = [subprocess.Popen(["bash", str(REPO_ROOT / "benchmarks/launch/seeds.sbatch"), "mlp", *args],
                             env=env | {"SLURM_ARRAY_TASK_ID": str(task)}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for task in (0, 1)]  # fmt: skip
    for out in finish(*jobs):
        assert out.endswith("(exit 0)"), out
    parts = tmp_path / "runs" / "parts" / "mnist" / "mlp"
    assert len(find_results(parts.parent.parent)) == 2  # <output>/parts/<task>/<entry>/
    join = [str(BIN / "milestones"), "join", str(parts), "--seeds", "0,1", "--results-dir", str(tmp_path / "results")]
    out = subprocess.run(join, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stdout + out.stderr
    joined = the_result(tmp_path)
    assert [seed.seed for seed in joined.seeds] == [0, 1] and len(joined.parts) == 2


def test_the_reducers_refusal_is_recognised_and_nothing_else():
    refusal = RuntimeError("Expected to have finished reduction in the prior iteration before starting a new one.")
    assert distributed.reducer_refused(refusal)
    assert not distributed.reducer_refused(RuntimeError("CUDA out of memory")) and not distributed.reducer_refused(
        ValueError("Expected to have finished reduction in the prior iteration")
    )


@pytest.mark.slow
def test_verify_reruns_a_ddp_result_with_its_layout_and_matches_exactly(tmp_path):
    """A full-budget DDP result (mlp on the bundled digits, 2 processes) verifies exactly: verify re-runs it as 2
    processes (Lightning starts the second by running `milestones verify` again), not as one."""
    from benchmarks.core.environment import git

    env = {k: v for k, v in os.environ.items() if k not in distributed.RANK_VARIABLES}
    env["MILESTONES_GIT_COMMIT"] = git("rev-parse", "HEAD") or "unknown"  # the tests' tree may be uncommitted
    command = [str(BIN / "milestones"), "bench", "mlp", "--task", "digits", "--accelerator", "cpu", "--devices", "2",
               "--seeds", "0", "--wandb", "off", "--progress", "none", "--output-dir", str(tmp_path / "runs"),
               "--results-dir", str(tmp_path / "results")]  # fmt: skip
    out = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stdout + out.stderr
    recorded = find_results(tmp_path / "results")[0]
    verify = [str(BIN / "milestones"), "verify", str(recorded), "--output-dir", str(tmp_path / "verify")]
    out = subprocess.run(verify, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0 and "verdict: MATCH (exact)" in out.stdout, out.stdout + out.stderr
    assert out.stdout.count("verdict:") == 1  # the second process says nothing
    rerun = read_result(find_results(tmp_path / "verify" / "verify-results")[0])
    assert rerun.world_size == 2


EVALUATION_HOOKS = [("validation_step", True), ("test_step", True), ("on_validation_epoch_end", False),
                    ("training_step", False)]  # fmt: skip


@pytest.mark.parametrize(("hook", "synced"), EVALUATION_HOOKS)
def test_only_what_a_model_logs_in_its_evaluation_steps_is_averaged_across_processes(hook, synced):
    logged = []
    model = SimpleNamespace(_current_fx_name=hook, log=lambda name, value, **kwargs: logged.append(kwargs))
    distributed.reduce_evaluation_logs(model)
    model.log("val/x", 1.0)
    assert logged == [{"sync_dist": True} if synced else {}]
