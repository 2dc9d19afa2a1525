"""Two-player board games played by their rules (open_spiel): an agent learns from games against itself, and is
measured against fixed opponents that anyone can rerun.

- ``tic-tac-toe``: against a perfect player (a memoised minimax solver of the whole game; among equally good moves it
  picks one at random from its own seeded stream, so it does not play one fixed line), 50 games as each colour. Perfect
  play draws, so the ranked number is the percentage of games *lost* (0 is the target), with the draw rate, the 95 %
  Wilson interval of the loss rate, and win and draw rates against a uniformly random player (50 games as each colour).
- ``connect-four``: against open_spiel's MCTSBot (UCT, c = 2, ``MCTS_SIMULATIONS`` simulations a move, one random
  rollout per leaf, solving terminal lines), 50 games as each colour; the ranked number is the win rate, with its
  95 % Wilson interval. No Connect Four solver is installed here, so there is no perfect-play measure of this game.

Opponents draw their randomness from their own generators, seeded by a constant of the split and the run's seed:
the same seed plays the same games, and validation never touches the streams the agent trains with. Validation
('val') plays fewer games, with other seeds, than the test.

The rules are the data: the task's identity is the game, its parameters and the pinned open_spiel version, and the data
module refuses to start under another version (results are comparable only under the same rules and bots).
"""

from __future__ import annotations

import hashlib
from importlib import metadata

import numpy as np
import torch

from benchmarks.tasks.base import DataIdentity, Metric
from benchmarks.tasks.files import DataError
from benchmarks.tasks.interaction import InteractionData, InteractionTask, wilson
from benchmarks.tasks.interfaces import PLAYER

OPEN_SPIEL = "2.0.2"  # pinned: the rules and the MCTS baseline are this version's
MCTS_SIMULATIONS = 400  # the Connect Four baseline's simulations a move
MCTS_UCT_C = 2.0
TIC_TAC_TOE_GAMES = {"val": 20, "test": 50}  # games as each colour, against each opponent
CONNECT_FOUR_GAMES = {"val": 5, "test": 50}
SEED_BASE = {"val": 1_000_000, "test": 2_000_000}  # + the run's seed: the opponents' streams
EXAMPLE_GAMES = 1  # as each colour, in an --example-data run (a smoke run)


class OpenSpielVersionError(DataError):
    """Another open_spiel than the task's pinned one: one line saying what to install (the command line prints it and
    exits 2, before anything runs)."""


def installed_open_spiel() -> str | None:
    try:
        return metadata.version("open_spiel")
    except metadata.PackageNotFoundError:
        return None


class GameData(InteractionData):
    """Self-play games: each training batch is ``batch_size`` games the agent plays against itself (``self_play``),
    every position labelled with the final outcome z from the view of the player who was to move there:
    (N, C + 1, H, W) planes, (N, A) search policies π, (N,) outcomes z. An epoch is ``steps_per_epoch`` games."""

    game_name = ""
    game_parameters: dict = {}
    unit = "self-play games"

    def __init__(self, data_dir=None, batch_size: int = 1, seed: int = 0, download: bool = False,
                 steps_per_epoch: int = 100) -> None:  # fmt: skip
        super().__init__(data_dir, batch_size, seed, download, steps_per_epoch)
        self.check_version()
        import pyspiel

        self.game = pyspiel.load_game(self.game_name, self.game_parameters)
        self.is_example = False
        self.random_policy = torch.Generator().manual_seed(seed)  # the example's random self-play (no agent)

    # --- identity -----------------------------------------------------------------------------------------------------
    @classmethod
    def spec(cls, version: str | None) -> str:
        parameters = ",".join(f"{k}={v}" for k, v in sorted(cls.game_parameters.items()))
        return f"{cls.game_name}({parameters}) open_spiel=={version}"

    @classmethod
    def key(cls) -> str:
        return f"game:{cls.game_name}(open_spiel=={OPEN_SPIEL})"

    @classmethod
    def declared_identity(cls) -> DataIdentity:
        """The rules: the game, its parameters and the pinned open_spiel version, as one checksum."""
        return DataIdentity(required={cls.key(): "sha256:" + hashlib.sha256(cls.spec(OPEN_SPIEL).encode()).hexdigest()})

    def identity(self) -> dict[str, str]:
        return {self.key(): "sha256:" + hashlib.sha256(self.spec(installed_open_spiel()).encode()).hexdigest()}

    @classmethod
    def check_version(cls) -> None:
        found = installed_open_spiel()
        if found != OPEN_SPIEL:
            raise OpenSpielVersionError(
                f"open_spiel {OPEN_SPIEL} is pinned for this task (the rules and the MCTS baseline are its), "
                f"{'open_spiel ' + found + ' is' if found else 'none is'} installed: install open_spiel=={OPEN_SPIEL} "
                "(make setup does), or run in an environment made from constraints.txt"
            )

    @classmethod
    def example(cls, folder, batch_size: int, seed: int = 0, **init_args) -> GameData:
        """The rules need no data files: the example is the game itself, two training steps an epoch and a game of
        each colour against each opponent."""
        data = cls(None, batch_size, seed, **{**init_args, "steps_per_epoch": 2 * batch_size})
        data.is_example = True
        return data

    # --- self-play ----------------------------------------------------------------------------------------------------
    def random_game(self, state) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
        """A game of uniformly random moves (the example batch, with no agent): planes as the agent encodes them, π
        uniform over the legal moves."""
        shape = self.game.observation_tensor_shape()
        positions = []
        while not state.is_terminal():
            player, legal = state.current_player(), state.legal_actions()
            planes = torch.tensor(state.observation_tensor(player)).view(shape)
            colour = torch.full((1, *planes.shape[1:]), float(player))
            pi = torch.zeros(self.game.num_distinct_actions())
            pi[legal] = 1 / len(legal)
            positions.append((torch.cat([planes, colour]), pi, player))
            pick = int(torch.randint(len(legal), (1,), generator=self.random_policy))
            state.apply_action(legal[pick])
        return positions

    def collect(self, agent) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], int]:
        xs, pis, zs = [], [], []
        for _ in range(self.batch_size):
            state = self.game.new_initial_state()
            positions = agent.self_play(state) if agent is not None else self.random_game(state)
            outcome = state.returns()  # the game was played on ``state``: its final returns, one per player
            for x, pi, player in positions:
                xs.append(x)
                pis.append(pi)
                zs.append(float(outcome[player]))
        batch = (torch.stack(xs), torch.stack(pis), torch.tensor(zs))
        return batch, len(zs)


class TicTacToeData(GameData):
    game_name = "tic_tac_toe"

    def __init__(self, data_dir=None, batch_size: int = 1, seed: int = 0, download: bool = False,
                 steps_per_epoch: int = 100) -> None:  # fmt: skip
        super().__init__(data_dir, batch_size, seed, download, steps_per_epoch)


class ConnectFourData(GameData):
    game_name = "connect_four"

    def __init__(self, data_dir=None, batch_size: int = 1, seed: int = 0, download: bool = False,
                 steps_per_epoch: int = 50) -> None:  # fmt: skip
        super().__init__(data_dir, batch_size, seed, download, steps_per_epoch)


# --- fixed opponents -------------------------------------------------------------------------------------------------
class Minimax:
    """A perfect player: the game solved by memoised negamax over positions keyed by their board (``str(state)``,
    which in these games also fixes the player to move). Ties among optimal moves go to a seeded random choice."""

    def __init__(self, rng: np.random.RandomState) -> None:
        self.rng, self.memo = rng, {}

    def solve(self, state) -> tuple[float, list[int]]:
        """The value for the player to move under perfect play, and every move that achieves it."""
        key = str(state)
        if key not in self.memo:
            player, best, moves = state.current_player(), -2.0, []
            for action in state.legal_actions():
                child = state.child(action)
                value = child.returns()[player] if child.is_terminal() else -self.solve(child)[0]
                if value > best:
                    best, moves = value, [action]
                elif value == best:
                    moves.append(action)
            self.memo[key] = (best, moves)
        return self.memo[key]

    def choose(self, state) -> int:
        moves = self.solve(state)[1]
        return moves[self.rng.randint(len(moves))]


class UniformRandom:
    def __init__(self, rng: np.random.RandomState) -> None:
        self.rng = rng

    def choose(self, state) -> int:
        legal = state.legal_actions()
        return legal[self.rng.randint(len(legal))]


class MCTSBaseline:
    """open_spiel's MCTSBot with random rollouts, its randomness from ``rng``."""

    def __init__(self, game, rng: np.random.RandomState, simulations: int = MCTS_SIMULATIONS) -> None:
        from open_spiel.python.algorithms import mcts

        evaluator = mcts.RandomRolloutEvaluator(n_rollouts=1, random_state=rng)
        self.bot = mcts.MCTSBot(game, MCTS_UCT_C, simulations, evaluator, solve=True, random_state=rng)

    def choose(self, state) -> int:
        return self.bot.step(state)


def play_match(game, agent, opponent, games_each: int) -> dict[str, int]:
    """``games_each`` games with the agent first and as many second: counts of its wins, draws and losses."""
    tally = {"wins": 0, "draws": 0, "losses": 0, "games": 0}
    for agent_player in (0, 1):
        for _ in range(games_each):
            state = game.new_initial_state()
            while not state.is_terminal():
                mover = agent if state.current_player() == agent_player else opponent
                state.apply_action(mover.choose(state))
            result = state.returns()[agent_player]
            tally["wins" if result > 0 else "losses" if result < 0 else "draws"] += 1
            tally["games"] += 1
    return tally


def rates(tally: dict[str, int], prefix: str = "") -> dict[str, float]:
    """Percentages of the games won, drawn and lost."""
    n = tally["games"]
    return {f"{prefix}{name}_rate": 100.0 * tally[key] / n
            for name, key in (("win", "wins"), ("draw", "draws"), ("loss", "losses"))}  # fmt: skip


def interval(tally: dict[str, int], outcome: str, name: str) -> dict[str, float]:
    low, high = wilson(tally[outcome], tally["games"])
    return {f"{name}_low": 100.0 * low, f"{name}_high": 100.0 * high}


def games_each(datamodule, split: str, games: dict[str, int]) -> int:
    return EXAMPLE_GAMES if getattr(datamodule, "is_example", False) else games[split]


def opponent_rng(datamodule, split: str, stream: int = 0) -> np.random.RandomState:
    return np.random.RandomState(SEED_BASE[split] + 1000 * stream + datamodule.seed)


class TicTacToeTask(InteractionTask):
    def play(self, model, datamodule, split: str) -> dict[str, float]:
        n = games_each(datamodule, split, TIC_TAC_TOE_GAMES)
        perfect = play_match(datamodule.game, model, Minimax(opponent_rng(datamodule, split)), n)
        metrics = {k: v for k, v in rates(perfect).items() if k != "win_rate"}  # perfect play cannot be beaten
        metrics |= interval(perfect, "losses", "loss_rate")
        if split == "test":  # the uniformly random player: a sanity check, not ranked
            random = play_match(datamodule.game, model, UniformRandom(opponent_rng(datamodule, split, 1)), n)
            metrics |= rates(random, "random_")
        return metrics


class ConnectFourTask(InteractionTask):
    def play(self, model, datamodule, split: str) -> dict[str, float]:
        n = games_each(datamodule, split, CONNECT_FOUR_GAMES)
        baseline = MCTSBaseline(datamodule.game, opponent_rng(datamodule, split))
        tally = play_match(datamodule.game, model, baseline, n)
        return rates(tally) | interval(tally, "wins", "win_rate")


# what a model is built for: open_spiel's observation planes (C, H, W) and its move count, written out so that the
# registry imports no game library to list the tasks (tests/test_games.py checks them against open_spiel)
TASKS = [
    TicTacToeTask(
        name="tic-tac-toe",
        description="tic-tac-toe by open_spiel's rules; self-play only, measured against a perfect minimax player",
        metric=Metric("loss_rate", "min", 0.0, 100.0, unit="%"),
        target=0.0,
        min_seeds=3,
        make_datamodule=TicTacToeData,
        interface=PLAYER,
        model_inputs={"game": "tic_tac_toe", "observation_shape": [3, 3, 3], "num_actions": 9},
        protocol=(
            f"% of {2 * TIC_TAC_TOE_GAMES['test']} games lost to a perfect minimax player (random among optimal "
            f"moves, seeded), {TIC_TAC_TOE_GAMES['test']} as each colour; val {2 * TIC_TAC_TOE_GAMES['val']} "
            f"games; open_spiel {OPEN_SPIEL}"
        ),
        bundled=True,
        extra_metrics=("draw_rate", "loss_rate_high", "random_win_rate", "random_draw_rate"),
        throughput_unit="positions",
    ),
    ConnectFourTask(
        name="connect-four",
        description="Connect Four (6×7) by open_spiel's rules; self-play only, measured against MCTS with random "
        "rollouts (no Connect Four solver is installed)",
        metric=Metric("win_rate", "max", 0.0, 100.0, unit="%"),
        target=50.0,
        min_seeds=3,
        make_datamodule=ConnectFourData,
        interface=PLAYER,
        model_inputs={"game": "connect_four", "observation_shape": [3, 6, 7], "num_actions": 7},
        protocol=(
            f"% of {2 * CONNECT_FOUR_GAMES['test']} games won against open_spiel's MCTSBot "
            f"({MCTS_SIMULATIONS} simulations, uct_c {MCTS_UCT_C:g}, 1 random rollout, seeded), "
            f"{CONNECT_FOUR_GAMES['test']} as each colour; val {2 * CONNECT_FOUR_GAMES['val']} games; "
            f"open_spiel {OPEN_SPIEL}"
        ),
        bundled=True,
        extra_metrics=("win_rate_low", "win_rate_high", "draw_rate"),
        throughput_unit="positions",
    ),
]
