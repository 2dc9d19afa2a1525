"""The registry of entries: one YAML file per entry in benchmarks/configs/, validated, and nothing else lists them.

An entry is one model on one or more tasks with one recipe. Its YAML names the task(s) (the first is the default), the
division, the paper, the paper-reported (or reference) number, the recipe, the budget and the default number of seeds.
The model is given LightningCLI-style as ``class_path`` + ``init_args``; the arguments are type-checked against the
class's constructor by jsonargparse, so a wrong type or an unknown key is an error naming the file and the key.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import inspect
import json
import re
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import lightning as L
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator
from pydantic_core import PydanticCustomError

from benchmarks.core.paths import CONFIG_DIR
from benchmarks.tasks import Task, UnknownNameError, get_task, unknown


class ConfigError(ValueError):
    """An invalid entry config. The message names the file and the offending field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paper(Strict):
    authors: str
    year: int = Field(ge=1900, le=2100)
    title: str
    venue: str


# Where a reference number comes from. A reader weighs a paper's own number differently from a later paper's, a
# reference implementation's or one the suite computes itself on the same split.
REFERENCE_KINDS = {
    "paper": "the milestone's own paper",
    "later-paper": "a later paper's number for the same model",
    "implementation": "a reference implementation",
    "suite": "computed by this suite on the task's own split",
}


class Reported(Strict):
    """The number to compare against, on the task where it was measured, what kind of number it is, and its source.

    ``kind: suite`` names the computation (``reference``) whose committed record in leaderboards/references/ holds the
    value (``milestones reference <name> --task <task>`` makes it); validate checks the two agree."""

    kind: Literal[tuple(REFERENCE_KINDS)]
    task: str
    value: float
    source: str
    metric: str | None = None  # when the paper used another measure than the task's (e.g. Parzen log-likelihood)
    reference: str | None = None  # kind suite: the name of the suite's computation
    note: str | None = None  # why the reproduced number differs from this one, where that is known or measured

    @model_validator(mode="after")
    def _suite_names_its_computation(self) -> Reported:
        if (self.kind == "suite") != (self.reference is not None):
            raise ValueError("'reference' names the suite's computation, and only a 'kind: suite' value has one")
        return self


# What a deviation from the paper may touch. A task's protocol fixes the first four for every entry alike, so a closed
# entry may deviate there; a model or recipe (optimiser, schedule, loss, initialisation, ...) deviation makes it open.
TASK_FIXED = ("data", "budget", "seeds", "protocol")
DEVIATION_KINDS = TASK_FIXED + ("model", "recipe")


class Deviation(Strict):
    """One thing that differs from the paper, and why."""

    kind: Literal[DEVIATION_KINDS]
    what: str = Field(min_length=1)
    why: str = Field(min_length=1)


class Recipe(Strict):
    """Human-readable summary of what the model's arguments implement (shown by `milestones list --long`)."""

    optimizer: str
    schedule: str
    loss: str


# a class in the lightning_modules package, as dotted identifiers: lightning_modules.<module>[.<module>...].<Class>
CLASS_PATH = r"^lightning_modules(\.[A-Za-z_][A-Za-z0-9_]*)+$"


class ModelSpec(Strict):
    class_path: str = Field(pattern=CLASS_PATH)
    init_args: dict[str, Any] = {}


class DataSpec(Strict):
    batch_size: int = Field(gt=0)
    init_args: dict[str, Any] = {}  # further data-module arguments the recipe fixes (e.g. a language model's context)


# The Trainer arguments a recipe may fix: its budget, clipping, accumulation and validation cadence. Everything else
# is the harness's (precision, accelerator, devices, deterministic, logger, callbacks, checkpointing, fast_dev_run and
# limit_*_batches, max_steps: the budget is whole epochs, which resume, --max-epochs and the leaderboard count).
TRAINER_ARGS = ("max_epochs", "gradient_clip_val", "gradient_clip_algorithm", "accumulate_grad_batches",
                "check_val_every_n_epoch", "val_check_interval")  # fmt: skip
# bounds a recipe must meet beyond Lightning's types (max_epochs -1 would train forever; validation every 0 epochs)
TRAINER_BOUNDS = {
    "max_epochs": Field(ge=1),
    "check_val_every_n_epoch": Field(ge=1),
    "accumulate_grad_batches": Field(ge=1),
}
# always in a resolved config's trainer mapping, null when unset: results recorded it so before the whitelist
RECORDED_UNSET = ("gradient_clip_val",)


def lightning_trainer_types() -> dict[str, Any]:
    """``lightning.Trainer.__init__``'s annotation of each whitelisted argument; val_check_interval without the
    wall-clock forms (a str, timedelta or dict validates by time, which no seed repeats)."""
    import typing

    hints = typing.get_type_hints(L.Trainer.__init__)
    types = {name: hints[name] for name in TRAINER_ARGS}
    types["val_check_interval"] = int | float | None
    return types


def _trainer_field(name: str, hint: Any) -> tuple[Any, Any]:
    if name in TRAINER_BOUNDS:
        hint = Annotated[hint, TRAINER_BOUNDS[name]]
    return (hint, ...) if name == "max_epochs" else (hint, None)


class _TrainerBase(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _only_recipe_arguments(cls, given: Any) -> Any:
        if isinstance(given, dict):
            for key in given:
                if key not in TRAINER_ARGS:
                    owner = "a Trainer argument the harness sets" if key in HARNESS_TRAINER_ARGS else "not allowed"
                    raise PydanticCustomError("trainer_arg", f"{key} is {owner}; a recipe may set: "
                                              f"{', '.join(TRAINER_ARGS)}")  # fmt: skip
        return given

    def recipe(self) -> dict[str, Any]:
        """The arguments the config sets (null: Lightning's default), as they go to the Trainer."""
        return {key: value for key, value in self.model_dump(exclude_unset=True).items() if value is not None}


HARNESS_TRAINER_ARGS = set(inspect.signature(L.Trainer.__init__).parameters) - set(TRAINER_ARGS) - {"self"}

# ``trainer:`` of a config: any whitelisted argument, typed by Lightning's own annotation (strictly: 1.0 stays a float)
TrainerSpec = create_model(
    "TrainerSpec",
    __base__=_TrainerBase,
    __doc__="The Trainer arguments a recipe fixes (TRAINER_ARGS), typed against lightning.Trainer's signature.",
    **{name: _trainer_field(name, hint) for name, hint in lightning_trainer_types().items()},
)


def trainer_error(error: dict) -> str:
    """'trainer.<key>: …' for a pydantic error inside ``trainer``: the key, the value and Lightning's annotation
    (not one line per member of a Union)."""
    loc = error["loc"]
    if len(loc) >= 2 and loc[0] == "trainer" and loc[1] in TRAINER_ARGS:
        expected = lightning_trainer_types()[loc[1]]
        bound = TRAINER_BOUNDS.get(loc[1])
        detail = error["msg"] if error["type"] in ("greater_than_equal", "missing") else f"expected {expected}"
        return f"trainer.{loc[1]}: {error.get('input')!r}: {detail} (lightning.Trainer's {loc[1]})" + (
            f"; at least {bound.metadata[0].ge}" if bound is not None and error["type"] != "greater_than_equal" else ""
        )
    return f"{'.'.join(str(p) for p in loc)}: {error['msg']}"


class EntryConfig(Strict):
    entry: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    summary: str
    tasks: list[str] = Field(min_length=1)
    division: Literal["closed", "open"]
    paper: Paper
    reported: Reported | None = None
    recipe: Recipe
    model: ModelSpec
    data: DataSpec
    trainer: TrainerSpec
    seeds: int = Field(ge=1)
    deviations: list[Deviation]  # what differs from the paper and why; [] says "nothing", and is checked like the rest

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str]) -> list[str]:
        for name in tasks:
            get_task(name)
        return tasks

    @model_validator(mode="after")
    def _closed_means_faithful(self) -> EntryConfig:
        """A closed entry deviates from its paper only where the task's protocol fixes the same for every entry."""
        if self.division == "closed":
            own = [d for d in self.deviations if d.kind not in TASK_FIXED]
            if own:
                raise ValueError(
                    "a closed entry may deviate only in what its task fixes for every entry "
                    f"({', '.join(TASK_FIXED)}); "
                    f"'{own[0].kind}' deviation '{own[0].what}' makes it open (division: open)"
                )
        return self


class Entry:
    """A validated entry: its config, the source file, and how to build its model for a task."""

    def __init__(self, config: EntryConfig, path: Path) -> None:
        self.config, self.path = config, path
        self._model_args: dict[str, dict[str, Any]] = {}  # per task and its model inputs: jsonargparse runs once

    name = property(lambda self: self.config.entry)
    default_task = property(lambda self: self.config.tasks[0])

    def task(self, name: str | None = None) -> Task:
        name = name or self.default_task
        if name not in self.config.tasks:
            raise ConfigError(f"entry '{self.name}' does not run on task '{name}'; its tasks: {self.config.tasks}")
        return get_task(name)

    def model_class(self) -> type[L.LightningModule]:
        return import_class(self.config.model.class_path, self.path)

    def linked_args(self) -> dict[str, Any]:
        """The data arguments the model receives too (LightningCLI's ``link_arguments``): each ``data.init_args`` key
        that is also a parameter of the model's constructor (a language model's ``context``), written once, under
        ``data``. A config that also sets it under ``model.init_args`` must give the same value."""
        params = inspect.signature(self.model_class().__init__).parameters
        linked = {k: v for k, v in self.config.data.init_args.items() if k in params}
        model = self.config.model.init_args
        for key, value in linked.items():
            if key in model and model[key] != value:
                raise ConfigError(f"{self.path}: model.init_args.{key} ({model[key]!r}) differs from "
                                  f"data.init_args.{key} ({value!r}): the data's {key} is the model's too; write it "
                                  "once, under data.init_args")  # fmt: skip
        return linked

    def model_args(self, task: Task) -> dict[str, Any]:
        """The full constructor arguments: the YAML's init_args, the data arguments linked to the model's
        (``linked_args``), the task's inputs, and the class's defaults."""
        cls = self.model_class()
        params = inspect.signature(cls.__init__).parameters
        inputs = {k: v for k, v in task.model_inputs.items() if k in params}
        given = inputs | self.linked_args() | dict(self.config.model.init_args)
        key = f"{id(cls)}.{id(cls.__init__)}:{json.dumps(given, sort_keys=True, default=repr)}"
        if key not in self._model_args:  # the same class and arguments type-check the same (validate asks per file)
            self._model_args[key] = check_init_args(cls, given, self.path)
        return copy.deepcopy(self._model_args[key])

    def build_model(self, task: Task) -> L.LightningModule:
        return self.model_class()(**self.model_args(task))

    def resolved_config(self, task: Task, max_epochs: int | None = None) -> dict[str, Any]:
        """Everything that defines the recipe on ``task`` (not the seeds, precision or hardware), defaults filled in."""
        config = self.config.model_dump(mode="json")
        for optional in ("metric", "reference", "note"):
            if config["reported"] and config["reported"][optional] is None:
                del config["reported"][optional]  # said only where it applies
        if not config["data"]["init_args"]:
            del config["data"]["init_args"]  # likewise
        # the trainer arguments the config sets, nothing filled in: results from before an argument existed lack it
        config["trainer"] = {key: None for key in RECORDED_UNSET} | self.config.trainer.recipe()
        config["task"] = task.name
        config["model"]["init_args"] = json.loads(json.dumps(self.model_args(task), default=list))
        if max_epochs is not None:
            config["trainer"]["max_epochs"] = max_epochs
            if (config["trainer"].get("check_val_every_n_epoch") or 1) > max_epochs:  # a smoke run validates too
                config["trainer"]["check_val_every_n_epoch"] = max_epochs
        return config


def entry_from_resolved(resolved: dict[str, Any], source: Path, registry: Entry | None = None) -> Entry:
    """The entry exactly as a result file recorded its run (the ``RUN_FIELDS`` of ``Entry.resolved_config``), not as
    the registry holds it today: ``milestones verify`` re-runs this. The review fields (division, paper, reference,
    deviations) come from the registry's entry when there is one, since a file written before a field existed lacks
    it."""
    review = registry.config.model_dump(mode="json") if registry is not None else {}
    recorded = {k: v for k, v in resolved.items() if (k in RUN_FIELDS or k not in review) and k != "task"}
    fields = review | recorded
    try:
        config = EntryConfig.model_validate(fields)
    except ValidationError as error:
        raise ConfigError(f"{source}: config.{trainer_error(error.errors()[0])}") from None
    return Entry(config, Path(source))


# The fields of a resolved config that decide what a run does. The others (summary, division, paper, reference,
# recipe summary, deviations, default seed count) are the suite's description and review of the recipe: they can be
# corrected after a run — an entry reclassified as open, a reference given its kind — without making its results stale.
RUN_FIELDS = ("entry", "task", "model", "data", "trainer")


def review(entry_name: str, recorded: dict[str, Any]) -> dict[str, Any]:
    """The registry's review of an entry — division, paper, reference and deviations — as of this commit; what a result
    recorded (``recorded``, its config with its division) when the entry is not registered (validate refuses those)."""
    try:
        return get_entry(entry_name).config.model_dump(mode="json")
    except UnknownNameError:
        return recorded


def run_config(resolved: dict[str, Any]) -> dict[str, Any]:
    return {key: resolved.get(key) for key in RUN_FIELDS}


def run_differences(recorded: dict[str, Any], registry: dict[str, Any]) -> list[str]:
    """'key.path: recorded ≠ registry' for every run-deciding field that differs; empty when the run is the same."""
    return config_diff(run_config(recorded), run_config(registry))


def config_hash(resolved: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """'key.path: a-value ≠ b-value' for every leaf that differs. A key that is not a plain name (letters, digits,
    ``_``, ``-``) is shown as its repr, like a value, so no key from a result file reaches a terminal unescaped."""
    lines = []
    for key in sorted(set(a) | set(b), key=str):
        here = f"{prefix}{key if isinstance(key, str) and re.fullmatch(r'[A-Za-z0-9_-]+', key) else repr(key)}"
        left, right = a.get(key, "(absent)"), b.get(key, "(absent)")
        if isinstance(left, dict) and isinstance(right, dict):
            lines += config_diff(left, right, here + ".")
        elif left != right:
            lines.append(f"{here}: {left!r} ≠ {right!r}")
    return lines


def import_class(class_path: str, source: Path) -> type[L.LightningModule]:
    """Import a model class, which must live in the lightning_modules package: the form is checked before any import
    (``lightning_modulesX.y`` or ``this.Cls`` would otherwise run another package's code)."""
    module_name, _, class_name = class_path.rpartition(".")
    in_package = module_name == "lightning_modules" or module_name.startswith("lightning_modules.")
    if not (in_package and re.fullmatch(CLASS_PATH, class_path)):
        raise ConfigError(f"{source}: model.class_path '{class_path}' must name a class in lightning_modules/ "
                          "(lightning_modules.<module>.<Class>)")  # fmt: skip
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"{source}: model.class_path '{class_path}' cannot be imported ({error})") from error
    if not (isinstance(cls, type) and issubclass(cls, L.LightningModule)):
        raise ConfigError(f"{source}: model.class_path '{class_path}' is not a LightningModule")
    return cls


def check_init_args(cls: type, init_args: dict[str, Any], source: Path) -> dict[str, Any]:
    """Type-check ``init_args`` against ``cls``'s constructor (jsonargparse), returning all arguments with defaults."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "model", fail_untyped=False)
    try:
        namespace = parser.parse_object({"model": init_args})
    except Exception as error:  # jsonargparse raises ArgumentError with a precise message
        message = " ".join(str(error).split())
        raise ConfigError(f"{source}: model.init_args invalid for {cls.__name__}: {message}") from None
    return namespace.model.as_dict()


def check_interface(entry: Entry, task: Task) -> None:
    """The model class provides every method its task calls (``task.interface``), or the config is refused, naming the
    entry, the task and the first missing method with its declared signature, before anything trains."""
    missing = task.interface.missing(entry.model_class())
    if missing:
        method = missing[0]
        raise ConfigError(f"{entry.path}: entry '{entry.name}' runs on task {task.name}, whose models provide "
                          f"{task.interface.name} ({', '.join(task.interface.methods)}); "
                          f"{entry.config.model.class_path} lacks {task.interface.describe(method)}")  # fmt: skip


HARNESS_DATA_ARGS = ("data_dir", "batch_size", "seed", "download")  # what the harness passes itself


def check_data_args(task: Task, init_args: dict[str, Any], source: Path) -> None:
    """``data.init_args`` go to the task's data module as keywords (``make_datamodule(data_dir, batch_size, seed=...,
    download=..., **init_args)``): an unknown one is refused here, naming the file, rather than a TypeError mid-run."""
    params = inspect.signature(task.make_datamodule).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [name for name in params if name not in HARNESS_DATA_ARGS]
    unknown_keys = sorted(set(init_args) - set(allowed))
    if unknown_keys:
        raise ConfigError(f"{source}: data.init_args.{unknown_keys[0]}: not an argument of task {task.name}'s data "
                          f"({getattr(task.make_datamodule, '__name__', 'make_datamodule')}); it takes: "
                          f"{', '.join(allowed) or 'none'}")  # fmt: skip


def load_entry(path: Path) -> Entry:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start})"
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        config = EntryConfig.model_validate(raw)
    except ValidationError as error:
        first, count = (
            trainer_error(error.errors()[0]),
            len({e["loc"][:2] for e in error.errors()}),
        )  # not per Union member
        raise ConfigError(f"{path}: {first} ({count} error(s) in all)") from None
    except KeyError as error:  # an unknown task name from the validator
        raise ConfigError(f"{path}: tasks: {error}") from None
    if config.entry != path.stem:
        raise ConfigError(f"{path}: entry '{config.entry}' must equal the file name '{path.stem}'")
    entry = Entry(config, path)
    if config.reported is not None and config.reported.kind == "suite":
        from benchmarks.running.references import ReferenceError, check_quote

        try:
            check_quote(config.reported.task, config.reported.reference, config.reported.value, path)
        except ReferenceError as error:
            raise ConfigError(str(error)) from None
    for task_name in config.tasks:
        check_interface(entry, get_task(task_name))
        entry.model_args(get_task(task_name))  # type-check the model arguments on every task it claims
        check_data_args(get_task(task_name), config.data.init_args, path)
    return entry


@cache
def _registry(config_dir: Path) -> dict[str, Entry]:
    return {path.stem: load_entry(path) for path in sorted(config_dir.glob("*.yaml"))}


def all_entries(config_dir: Path = CONFIG_DIR) -> dict[str, Entry]:
    return _registry(Path(config_dir))


def get_entry(name: str, config_dir: Path = CONFIG_DIR) -> Entry:
    entries = all_entries(config_dir)
    if name not in entries:
        raise unknown("entry", name, list(entries))
    return entries[name]
