"""Environment tasks and DQN: the protocol's pieces, determinism, exact resume, and the refusals (unknown environment,
missing ROM, another simulator version) that must stop a run before it writes anything."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.core.paths import REPO_ROOT
from benchmarks.core.results import find_results, read_result
from benchmarks.running.registry import load_entry
from benchmarks.tasks import environments as env_tasks
from benchmarks.tasks import get_task
from lightning_modules.dqn import DQN

# A tiny recipe of dqn-cartpole that learns within a few hundred steps: every piece (memory, target network, warm-up,
# several steps per update) is exercised at a size the tests can afford.
TINY = """\
# A tiny DQN on CartPole for the tests: three epochs of 200 steps. Run: python -m pytest tests/test_environments.py
entry: {name}
summary: tiny DQN for tests
tasks: [cartpole]
division: open
paper:
  authors: V. Mnih et al.
  year: 2013
  title: Playing Atari with Deep Reinforcement Learning
  venue: NIPS Deep Learning Workshop
recipe:
  optimizer: Adam
  schedule: linear ε
  loss: squared TD error
model:
  class_path: lightning_modules.dqn.DQN
  init_args:
    network: mlp
    hidden: [32]
    replay_size: 500
    minibatch: 16
    optimizer: adam
    lr: 0.001
    epsilon_steps: 300
    epsilon_end: 0.05
    learning_starts: 100
    target_update_steps: 50
    clip_rewards: false
data:
  batch_size: 10
  init_args:
    steps_per_epoch: 200
trainer:
  max_epochs: 3
seeds: 1
deviations:
  - kind: model
    what: a tiny network
    why: a test
"""

RUN = """
import sys
from pathlib import Path
from benchmarks.running.harness import BenchOptions, run_benchmark
from benchmarks.running.registry import load_entry
tmp = Path(sys.argv[1])
run_benchmark(load_entry(tmp / "tiny-dqn.yaml"), BenchOptions(seeds=[0], wandb="off", progress="none", threads=1,
              output_dir=str(tmp / "runs"), results_dir=str(tmp / "results"), resume=sys.argv[2] == "resume"))
"""


def tiny_config(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny-dqn.yaml"
    path.write_text(TINY.format(name="tiny-dqn"))
    return path


def run(folder: Path, mode: str = "fresh", kill_at: str | None = None) -> subprocess.CompletedProcess:
    tiny_config(folder)
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("MILESTONES_KILL_AT", "WANDB_"))}
    if kill_at:
        env["MILESTONES_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-c", RUN, str(folder), mode], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def seed_record(folder: Path) -> tuple[dict, list, list]:
    """The test metrics, the validation returns of every epoch, and the final weights (the returns of a tiny agent
    can agree while its weights differ: the weights are what an exact resume must reproduce)."""
    (path,) = find_results(folder / "results")
    seed = read_result(path).seeds[0]
    (last,) = (folder / "runs").rglob("last.ckpt")
    weights = torch.load(last, weights_only=True)["state_dict"]
    history = [{k: v for k, v in row.items() if k != "train_seconds"} for row in seed.val_history]
    return seed.metrics, history, [weights[k].tolist() for k in sorted(weights)]


# --- the pieces -------------------------------------------------------------------------------------------------------
def test_a_dqn_step_learns_from_its_memory_once_warm():
    torch.manual_seed(0)
    model = DQN(num_actions=2, observation_shape=(4,), network="mlp", hidden=(8,), minibatch=4, replay_size=16,
                learning_starts=0)  # fmt: skip
    batch = get_task("cartpole").example_batch(6)
    model.steps += 6  # as act() would have counted while gathering them
    loss = model.training_step(batch, 0)
    assert loss is not None and torch.isfinite(loss) and loss.requires_grad
    assert model.memory.size == 6 and not model.warming_up


def test_the_replay_memory_is_circular_and_keeps_dtypes():
    model = DQN(num_actions=6, observation_shape=(4, 84, 84), replay_size=8, minibatch=2)
    batch = get_task("atari-pong").example_batch(6)
    for _ in range(2):
        model.memory.add(batch)
    assert model.memory.size == 8 and model.memory.position == 4
    assert model.memory.tensors["observation"].dtype == torch.uint8  # frames stay bytes: 28 KB a transition, not 113


def test_epsilon_falls_linearly_then_stays():
    model = DQN(num_actions=2, observation_shape=(4,), network="mlp", epsilon_steps=100, epsilon_end=0.1)
    assert model.epsilon() == 1.0
    model.steps += 50
    assert abs(model.epsilon() - 0.55) < 1e-9
    model.steps += 500
    assert abs(model.epsilon() - 0.1) < 1e-9


def test_evaluation_is_a_function_of_the_seed_and_leaves_the_training_streams_alone():
    task = get_task("cartpole")
    datamodule = task.make_datamodule(None, 1, seed=3)
    torch.manual_seed(0)
    model = DQN(num_actions=2, observation_shape=(4,), network="mlp", hidden=(8,))
    state = torch.get_rng_state()
    first = task.play(model, datamodule, "val")
    assert torch.equal(state, torch.get_rng_state()), "evaluation drew from the global stream"
    assert task.play(model, datamodule, "val") == first
    assert task.play(model, task.make_datamodule(None, 1, seed=4), "val") != first  # other seeds, other episodes


def test_the_environment_state_round_trips_through_a_checkpoint(tmp_path):
    """Mid-episode, through torch.save / torch.load(weights_only=True): the restored environment continues exactly."""
    datamodule = get_task("cartpole").make_datamodule(None, 5, seed=0)
    datamodule.collect(None)
    torch.save(datamodule.state_dict(), tmp_path / "state.pt")
    policy = datamodule.random_policy.get_state()  # the acting policy's stream (the model's, in training)
    first = datamodule.collect(None)[0]
    restored = get_task("cartpole").make_datamodule(None, 5, seed=0)
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    restored.random_policy.set_state(policy)
    again = restored.collect(None)[0]
    assert all(torch.equal(first[key], again[key]) for key in first)


# --- refusals ---------------------------------------------------------------------------------------------------------
class NoSuchEnvironment(env_tasks.EnvironmentData):
    env_id = "NoSuchEnvironment-v9"


def test_an_unknown_environment_id_is_one_line_naming_it():
    with pytest.raises(env_tasks.EnvironmentUnavailable, match="NoSuchEnvironment-v9.*cannot be made"):
        NoSuchEnvironment(None, 1)


def test_a_missing_rom_is_one_line_naming_it_and_what_to_do(monkeypatch):
    from ale_py import roms

    monkeypatch.setattr(roms, "get_rom_path", lambda name: None)
    with pytest.raises(env_tasks.EnvironmentUnavailable, match="ROM 'pong'.*pip install --force-reinstall"):
        env_tasks.PongData(None, 1)


def test_another_simulator_version_is_refused(monkeypatch):
    monkeypatch.setattr(env_tasks, "installed", lambda name: "0.29.1" if name == "gymnasium" else "0.12.1")
    with pytest.raises(env_tasks.EnvironmentUnavailable, match=r"gymnasium 1\.4\.0 is pinned.*0\.29\.1 installed"):
        env_tasks.CartPoleData(None, 1)


@pytest.mark.slow
def test_a_refused_environment_writes_nothing(tmp_path):
    """Through the command line: exit 2, one line, no result file, no run folder left with a result."""
    script = ("import sys; from benchmarks.tasks import environments as e; e.installed = lambda n: '0.29.1'; "
              "from benchmarks.cli import main; sys.argv = ['milestones'] + sys.argv[1:]; main()")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", script, "bench", "dqn-cartpole", "--seeds", "0", "--wandb", "off",
                           "--results-dir", str(tmp_path / "results"), "--output-dir", str(tmp_path / "runs")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "is pinned" in proc.stderr and "Traceback" not in proc.stderr
    assert not find_results(tmp_path / "results")


# --- determinism and resume through the harness -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    proc = run(folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return seed_record(folder)


@pytest.mark.slow
def test_the_same_seed_twice_gives_identical_returns(uninterrupted, tmp_path):
    proc = run(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert seed_record(tmp_path) == uninterrupted
    metrics, history, _ = uninterrupted
    assert len(history) == 3 and metrics["episodes"] == 100


@pytest.mark.slow
def test_a_kill_mid_training_then_resume_gives_the_uninterrupted_returns(uninterrupted, tmp_path):
    """kill -9 in the second epoch (its environment mid-episode, the replay memory half full), then --resume from the
    first epoch's checkpoint: the same validation returns every epoch and the same test returns."""
    killed = run(tmp_path, kill_at="training:30")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert not find_results(tmp_path / "results")
    resumed = run(tmp_path, "resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from" in resumed.stdout
    assert seed_record(tmp_path) == uninterrupted


def test_the_tiny_config_is_a_valid_entry(tmp_path):
    entry = load_entry(tiny_config(tmp_path))
    assert json.loads(json.dumps(entry.model_args(get_task("cartpole"))))["learning_starts"] == 100
