"""What a task asks of its models: small declared interfaces, one per kind of task.

A task names the interface its models provide (``Task.interface``) and the optional ones it measures where a model has
them (``Task.optional_interfaces``). The registry checks an entry's model class against the interfaces of every task
it lists when it loads the config, so a missing method is an error naming the entry, the task and the method before
any training; the uniform registry test then calls ``check`` on the task's own tiny example batch, which is where
shapes, ranges and dtypes are held to the declaration. New kinds of milestone (environments, games, audio) are new
interfaces here and new tasks beside them: the harness stays kind-agnostic.

Each interface is a ``typing.Protocol`` (its methods, typed and documented, are the declaration) plus a check.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


def _implemented(cls: type, method: str) -> bool:
    """True when ``cls`` defines ``method`` in a milestone's own code: not inherited from torch or Lightning (their
    ``forward`` exists on every module and raises), and not an abstract placeholder of a shared base class."""
    for owner in cls.__mro__:
        if method in vars(owner):
            function = vars(owner)[method]
            own = owner.__module__.split(".")[0] not in ("torch", "lightning", "pytorch_lightning", "builtins")
            return own and callable(function) and not getattr(function, "__isabstractmethod__", False)
    return False


@dataclass(frozen=True)
class Interface:
    """A Protocol's methods, with the check of what they return on an example batch."""

    protocol: type
    check: Callable[[object, dict, object], None]  # (model, the task's model_inputs, an example batch) → raises

    @property
    def name(self) -> str:
        return self.protocol.__name__

    @property
    def methods(self) -> tuple[str, ...]:
        declared = vars(self.protocol).items()  # typing adds dunders (__init__, __subclasshook__) to a Protocol
        return tuple(name for name, value in declared if inspect.isfunction(value) and not name.startswith("__"))

    def missing(self, cls: type) -> list[str]:
        return [method for method in self.methods if not _implemented(cls, method)]

    def implemented_by(self, model_or_class) -> bool:
        cls = model_or_class if isinstance(model_or_class, type) else type(model_or_class)
        return not self.missing(cls)

    def describe(self, method: str) -> str:
        """``name(signature) -> result``: what the declaration asks, for an error message."""
        function = vars(self.protocol)[method]
        signature = str(inspect.signature(function)).replace("(self, ", "(").replace("(self)", "()")
        return f"{method}{signature}".replace("'", "")


class ConformanceError(AssertionError):
    """A model's outputs on the task's example differ from what its interface declares."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise ConformanceError(message)


# --- classification ---------------------------------------------------------------------------------------------------
class ClassScores(Protocol):
    """A classifier: one score per class (or per output unit); the prediction is read from them by the task."""

    def forward(self, x: Tensor) -> Tensor:
        """(B, *input_shape) inputs → (B, num_classes) scores."""


def check_class_scores(model, inputs: dict, batch) -> None:
    x, y = batch
    scores = model(x)
    width = inputs.get("num_classes", y.shape[-1] if y.dim() > 1 else None)
    expect(scores.shape == (len(x), width), f"forward: scores {tuple(scores.shape)}, expected {(len(x), width)}")
    expect(bool(torch.isfinite(scores.float()).all()), "forward: scores are not all finite")


CLASS_SCORES = Interface(ClassScores, check_class_scores)


class Embedding(Protocol):
    """A classifier whose penultimate features score generated images (the Fréchet distance's feature net)."""

    def embed(self, images: Tensor) -> Tensor:
        """(B, C, H, W) images in [0, 1] → (B, D) features; ``forward`` applies the last layer to them."""


def check_embedding(model, inputs: dict, batch) -> None:
    x, _ = batch
    features = model.embed(x)
    expect(features.dim() == 2 and len(features) == len(x), f"embed: shape {tuple(features.shape)}, expected (B, D)")


EMBEDDING = Interface(Embedding, check_embedding)


# --- language ---------------------------------------------------------------------------------------------------------
class CharacterModel(Protocol):
    """A next-character model: scores the next id at every position, and samples text."""

    def forward(self, ids: Tensor) -> Tensor:
        """(B, T) ids → (B, T, vocab_size) next-id logits; position t sees positions ≤ t only."""

    def generate(
        self, ids: Tensor, n: int, temperature: float = 1.0, top_k: int | None = None, generator=None
    ) -> Tensor:
        """(B, T) ids → (B, T + n): ``n`` ids sampled one at a time and appended."""


def check_character_model(model, inputs: dict, batch) -> None:
    x, _ = batch
    vocab = inputs["vocab_size"]
    logits = model(x)
    expect(logits.shape == (*x.shape, vocab), f"forward: logits {tuple(logits.shape)}, expected {(*x.shape, vocab)}")
    expect(bool(torch.isfinite(logits.float()).all()), "forward: logits are not all finite")
    prefix = x[:1, :4]
    out = model.generate(prefix, 5, 0.8, 10, generator=torch.Generator(device=x.device).manual_seed(0))
    expect(out.shape == (1, 9), f"generate: shape {tuple(out.shape)}, expected (1, 9)")
    expect(torch.equal(out[:, :4], prefix), "generate: the prefix is not kept")
    expect(bool(((out >= 0) & (out < vocab)).all()), "generate: ids outside the vocabulary")


CHARACTER_MODEL = Interface(CharacterModel, check_character_model)


class Translator(Protocol):
    """A sequence-to-sequence model: scores target tokens given the source, and decodes greedily and by beam search."""

    def forward(self, source: Tensor, target_in: Tensor) -> Tensor:
        """(B, S) source ids, (B, T) target ids so far → (B, T, vocab_size) next-id logits."""

    def greedy(self, source: Tensor) -> list[list[int]]:
        """(B, S) source ids → one list of target ids per sentence, without <s>, </s> or padding."""

    def beam_search(self, source: Tensor) -> list[list[int]]:
        """As ``greedy``, by beam search (the model's beam size and length penalty)."""


def check_translator(model, inputs: dict, batch) -> None:
    source, target = batch
    vocab = inputs["vocab_size"]
    logits = model(source, target[:, :-1])
    expect(logits.shape == (*target[:, :-1].shape, vocab), f"forward: logits {tuple(logits.shape)}")
    for method in (model.greedy, model.beam_search):  # one sentence: an untrained model decodes to its length limit
        out = method(source[:1])
        expect(len(out) == 1, f"{method.__name__}: {len(out)} outputs for 1 sentence")
        expect(all(0 <= i < vocab for ids in out for i in ids), f"{method.__name__}: ids outside the vocabulary")


TRANSLATOR = Interface(Translator, check_translator)


# --- image generation -------------------------------------------------------------------------------------------------
class ImageSampler(Protocol):
    """A generative model of images: the task draws noise with its own generator and scores the images."""

    def noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` latent draws, on the generator's device (the model's when none is given)."""

    def generate(self, z: Tensor) -> Tensor:
        """Latents (n, ...) → images (n, *input_shape) in [0, 1]."""


def check_image_sampler(model, inputs: dict, batch) -> None:
    shape = tuple(inputs["input_shape"])
    z = model.noise(6, torch.Generator().manual_seed(0))
    expect(torch.equal(z, model.noise(6, torch.Generator().manual_seed(0))), "noise: not a function of the generator")
    images = model.generate(z.to(model.device)).detach()
    expect(images.shape == (6, *shape), f"generate: images {tuple(images.shape)}, expected {(6, *shape)}")
    expect(bool(torch.isfinite(images).all()) and 0 <= float(images.min()) <= float(images.max()) <= 1,
           "generate: images are not all in [0, 1]")  # fmt: skip


IMAGE_SAMPLER = Interface(ImageSampler, check_image_sampler)


class LowerBound(Protocol):
    """A likelihood model of images: a lower bound on log p(x) per image, which the task averages over the test set."""

    def lower_bound(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(N, *input_shape) images in [0, 1] → (N,) lower bounds on log p(x) in nats (draws its noise from
        ``generator``, so an evaluation is reproducible)."""


def check_lower_bound(model, inputs: dict, batch) -> None:
    images = batch[0]
    bounds = model.lower_bound(images, torch.Generator(device=images.device).manual_seed(0))
    again = model.lower_bound(images, torch.Generator(device=images.device).manual_seed(0))
    expect(bounds.shape == (len(images),), f"lower_bound: shape {tuple(bounds.shape)}, expected ({len(images)},)")
    expect(bool(torch.isfinite(bounds).all()), "lower_bound: not all finite")
    expect(torch.allclose(bounds, again), "lower_bound: not a function of the generator")


LOWER_BOUND = Interface(LowerBound, check_lower_bound)


# --- environments -----------------------------------------------------------------------------------------------------
class Actor(Protocol):
    """An agent in an environment: action values for the task's evaluation, and its own behaviour policy in training.
    Its training batches are the transitions it gathered (``tasks/environments.py``)."""

    def forward(self, observations: Tensor) -> Tensor:
        """(B, *observation_shape) → (B, num_actions) action values; the task's evaluation acts ε-greedily on them."""

    def act(self, observations: Tensor) -> Tensor:
        """(B, *observation_shape) → (B,) actions of the behaviour policy (its exploration; it draws from torch's
        global random stream, which the harness seeds and checkpoints)."""


def check_actor(model, inputs: dict, batch) -> None:
    x = batch["observation"]
    actions_n = inputs["num_actions"]
    values = model(x.to(model.device))
    expect(values.shape == (len(x), actions_n), f"forward: {tuple(values.shape)}, expected {(len(x), actions_n)}")
    expect(bool(torch.isfinite(values.float()).all()), "forward: action values are not all finite")
    actions = model.act(x.to(model.device))
    expect(actions.shape == (len(x),), f"act: shape {tuple(actions.shape)}, expected ({len(x)},)")
    expect(bool(((actions >= 0) & (actions < actions_n)).all()), "act: actions outside the action set")


ACTOR = Interface(Actor, check_actor)


# --- board games ------------------------------------------------------------------------------------------------------
class Player(Protocol):
    """A player of a two-player board game (open_spiel rules): it makes its own training games by self-play, and the
    task plays it against fixed opponents with ``choose``. Its training batches are the positions of its self-play
    games, each labelled by the task with the game's outcome (``tasks/games.py``)."""

    def self_play(self, state) -> list[tuple[Tensor, Tensor, int]]:
        """Plays one game against itself from the open_spiel ``state`` (a fresh initial state, played on in place, so
        the task reads the outcome from it): per position, (network input, search policy π (num_actions,), the player
        to move). Its exploration draws from torch's global random stream, which the harness seeds and checkpoints."""

    def choose(self, state) -> int:
        """The move it plays at ``state`` in evaluation, a legal action; the same state gives the same move."""


def check_player(model, inputs: dict, batch) -> None:
    import pyspiel

    game = pyspiel.load_game(inputs["game"])
    actions = inputs["num_actions"]
    state = game.new_initial_state()
    positions = model.self_play(state)
    expect(state.is_terminal(), "self_play: the game was not played to its end on the given state")
    expect(len(positions) == len(state.history()), f"self_play: {len(positions)} positions for "
           f"{len(state.history())} moves")  # fmt: skip
    for x, pi, player in positions:
        expect(isinstance(x, Tensor) and x.shape == positions[0][0].shape, "self_play: observations differ in shape")
        expect(pi.shape == (actions,), f"self_play: π {tuple(pi.shape)}, expected ({actions},)")
        expect(bool((pi >= 0).all()) and abs(float(pi.sum()) - 1) < 1e-5, "self_play: π is not a distribution")
        expect(player in (0, 1), f"self_play: player {player!r}, expected 0 or 1")
    expect(batch[0].shape[1:] == positions[0][0].shape, f"self_play: observations {tuple(positions[0][0].shape)}, "
           f"the task's batch holds {tuple(batch[0].shape[1:])}")  # fmt: skip
    start = game.new_initial_state()
    move = model.choose(start)
    expect(move in start.legal_actions(), f"choose: {move!r} is not a legal move")
    expect(model.choose(start) == move, "choose: not the same move twice for the same state")


PLAYER = Interface(Player, check_player)


# --- audio ------------------------------------------------------------------------------------------------------------
class SpokenAudio(Protocol):
    """An autoregressive model of μ-law audio conditioned on a digit and a speaker (WaveNet's global conditioning):
    the task scores the test recordings with ``forward`` and listens to what ``generate`` draws."""

    def forward(self, audio: Tensor, digit: Tensor, speaker: Tensor) -> Tensor:
        """(B, T) class ids, (B,) digits, (B,) speakers → (B, n_classes, T) logits; position t predicts audio[:, t]
        from audio[:, :t] only (the first sample from silence)."""

    def generate(self, digit: Tensor, speaker: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
        """(B,) digits, (B,) speakers → (B, n) class ids sampled one at a time (noise from ``generator``, on the
        CPU)."""


def check_spoken_audio(model, inputs: dict, batch) -> None:
    audio, _, digit, speaker = batch
    classes = inputs["n_classes"]
    audio, digit, speaker = (t.to(model.device) for t in (audio, digit, speaker))
    logits = model(audio, digit, speaker)
    expected = (len(audio), classes, audio.shape[1])
    expect(logits.shape == expected, f"forward: logits {tuple(logits.shape)}, expected {expected}")
    expect(bool(torch.isfinite(logits.float()).all()), "forward: logits are not all finite")
    t = audio.shape[1] // 2
    changed = audio.clone()
    changed[:, t:] = (changed[:, t:] + 1) % classes
    again = model(changed, digit, speaker)
    expect(torch.allclose(logits[..., : t + 1], again[..., : t + 1], atol=1e-5),
           "forward: position t depends on samples at or after t (not causal)")  # fmt: skip
    ids = model.generate(digit[:2], speaker[:2], 5, torch.Generator().manual_seed(0))
    expect(ids.shape == (min(2, len(digit)), 5), f"generate: shape {tuple(ids.shape)}, expected (2, 5)")
    expect(bool(((ids >= 0) & (ids < classes)).all()), "generate: ids outside the classes")
    same = model.generate(digit[:2], speaker[:2], 5, torch.Generator().manual_seed(0))
    expect(torch.equal(ids.cpu(), same.cpu()), "generate: not a function of the generator")


SPOKEN_AUDIO = Interface(SpokenAudio, check_spoken_audio)
