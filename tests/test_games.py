"""The board-game tasks (benchmarks/tasks/games.py) and AlphaZero (lightning_modules/alphazero.py): the search finds a
win and blocks a loss, the minimax opponent is perfect, the intervals are Wilson's, the rules' version is pinned, and a
run is a function of its seed, also across a kill and --resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pyspiel
import pytest
import torch

from benchmarks.core.paths import REPO_ROOT
from benchmarks.core.results import find_results, read_result
from benchmarks.running.harness import run_benchmark
from benchmarks.tasks import games, get_task
from benchmarks.tasks.interaction import wilson
from lightning_modules.alphazero import AlphaZero

TTT = pyspiel.load_game("tic_tac_toe")


def position(moves: list[int]):
    state = TTT.new_initial_state()
    for move in moves:
        state.apply_action(move)
    return state


def untrained(simulations: int = 200) -> AlphaZero:
    torch.manual_seed(0)
    return AlphaZero(channels=8, blocks=1, simulations=simulations, window=100, minibatch=8).eval()


def test_the_search_takes_a_win_and_blocks_a_loss_with_an_untrained_network():
    # cells 0..8 row by row; x moves first. x: 0, 1; o: 3, 4 → x wins at 2 (o would win at 5)
    assert untrained().choose(position([0, 3, 1, 4])) == 2
    # x: 0, 8; o: 3, 4, and x to move → x must take 5, or o completes the middle row
    assert untrained().choose(position([0, 3, 8, 4])) == 5


def test_self_play_is_a_function_of_the_global_seed_and_gives_distributions():
    model = untrained(simulations=16)
    torch.manual_seed(3)
    first = model.self_play(TTT.new_initial_state())
    torch.manual_seed(3)
    second = model.self_play(TTT.new_initial_state())
    assert len(first) == len(second) and all(torch.equal(a[1], b[1]) for a, b in zip(first, second))
    assert all(abs(float(pi.sum()) - 1) < 1e-6 and x.shape == (4, 3, 3) for x, pi, _ in first)


def test_minimax_values_the_start_a_draw_and_never_loses_to_random_play():
    perfect = games.Minimax(np.random.RandomState(0))
    value, moves = perfect.solve(TTT.new_initial_state())
    assert value == 0 and moves == list(range(9))  # every opening move draws under perfect play
    assert perfect.solve(position([0, 3, 1, 4])) == (1.0, [2])
    tally = games.play_match(TTT, perfect, games.UniformRandom(np.random.RandomState(1)), 50)
    assert tally["losses"] == 0 and tally["games"] == 100 and tally["wins"] > 80


def test_wilson_interval():
    low, high = wilson(0, 100)
    assert low == 0 and high == pytest.approx(1.959964**2 / (100 + 1.959964**2))  # z²/(n + z²) at p = 0
    low, high = wilson(50, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert wilson(100, 100)[1] == 1.0


def test_the_tasks_model_inputs_are_open_spiels():
    for name in ("tic-tac-toe", "connect-four"):
        inputs = get_task(name).model_inputs
        game = pyspiel.load_game(inputs["game"])
        assert inputs["observation_shape"] == game.observation_tensor_shape()
        assert inputs["num_actions"] == game.num_distinct_actions()


def test_another_open_spiel_version_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(games, "installed_open_spiel", lambda: "2.1.0")
    with pytest.raises(games.OpenSpielVersionError) as info:
        games.TicTacToeData(None, 4, 0)
    message = str(info.value)
    assert message.startswith("open_spiel 2.0.2 is pinned for this task") and "2.1.0 is installed" in message
    assert "install open_spiel==2.0.2" in message and "\n" not in message


def test_the_identity_is_declared_from_the_code_and_recorded_from_the_installed_package():
    for data in (games.TicTacToeData, games.ConnectFourData):
        assert data(None, 1, 0).identity() == dict(data.declared_identity().required)
    assert games.TicTacToeData.declared_identity() != games.ConnectFourData.declared_identity()


def test_the_same_seed_gives_the_same_games_and_metrics(quick, tmp_path):
    """Two runs of seed 0 (the example: 2 steps of 4 self-play games an epoch, 2 epochs): identical val history and
    test metrics, on the CPU."""
    runs = [
        run_benchmark(
            "alphazero",
            quick(task="tic-tac-toe", example_data=True, max_epochs=2, threads=1, output_dir=str(tmp_path / name)),
        )[0]  # fmt: skip
        for name in ("a", "b")
    ]
    assert runs[0].status == "ok" and runs[0].seeds[0].metrics == runs[1].seeds[0].metrics
    history = [[{k: v for k, v in h.items() if k.startswith("val/")} for h in run.seeds[0].val_history] for run in runs]
    assert history[0] == history[1] and len(history[0]) == 2  # (train_seconds, recorded beside them, differ)
    assert {"loss_rate", "draw_rate", "loss_rate_high", "random_win_rate"} <= set(runs[0].seeds[0].metrics)


@pytest.mark.slow
def test_a_kill_mid_training_then_resume_gives_the_uninterrupted_metrics(tmp_path):
    """kill -9 in the second epoch's training (benchmarks/core/faults.py's kill point), then --resume: exactly the
    metrics of an uninterrupted run (the replay window travels in the checkpoint, the RNG with it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MILESTONES_KILL_AT"))}

    def bench(name: str, *extra: str, kill: str | None = None) -> subprocess.CompletedProcess:
        args = [sys.executable, "-m", "benchmarks.cli", "bench", "alphazero", "--task", "tic-tac-toe",
                "--example-data", "--max-epochs", "3", "--threads", "1", "--seeds", "0", "--wandb", "off",
                "--progress", "none",
                "--results-dir", str(tmp_path / name / "results"), "--output-dir", str(tmp_path / name / "runs"),
                *extra]  # fmt: skip
        run_env = env | ({"MILESTONES_KILL_AT": kill} if kill else {})
        return subprocess.run(args, cwd=REPO_ROOT, env=run_env, capture_output=True, text=True, timeout=180)

    def metrics(name: str) -> dict:
        (path,) = find_results(tmp_path / name / "results")
        return read_result(path).seeds[0].metrics

    done = bench("reference")
    assert done.returncode == 0, done.stdout + done.stderr
    killed = bench("resumed", kill="training:3")  # the 3rd training batch: the 1st of epoch 2, after a checkpoint
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert not find_results(tmp_path / "resumed" / "results")
    resumed = bench("resumed", "--resume")
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout, resumed.stdout + resumed.stderr
    assert metrics("resumed") == metrics("reference")
