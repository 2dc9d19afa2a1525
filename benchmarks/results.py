"""The result file: one JSON per benchmark invocation, schema-validated, written atomically, never overwritten.

Results are data: they are parsed and validated, never executed or unpickled. ``schema_version`` changes whenever a
field changes meaning; readers reject versions they do not know.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from scipy import stats

SCHEMA_VERSION = 1
ARTIFACTS = "artifacts"  # a seed's run folder keeps the files to publish with its result under this name


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeedResult(Strict):
    seed: int
    status: Literal["ok", "failed"]
    failure: str | None = None
    metrics: dict[str, float] = {}  # test metrics, e.g. {"error": 0.98, "accuracy": 99.02}
    notes: dict[str, str] = {}  # what a metric needs to be read, e.g. {"bleu_signature": "nrefs:1|case:mixed|..."}
    selected_epoch: int | None = None  # the best-validation epoch whose weights were tested
    time_to_target_s: float | None = None
    epoch_to_target: int | None = None
    train_time_s: float
    eval_time_s: float
    wall_time_s: float
    samples_per_s: float | None = None
    epochs: int
    val_history: list[dict[str, float | None]] = []  # None: a validation metric that was not finite (NaN samples)
    wandb_run: str | None = None
    log_dir: str | None = None  # the seed's run folder, relative to the output folder (older files: absolute)
    artifacts: list[str] = []  # files saved with the result (e.g. samples.png): see ``artifact_path``

    def run_dir(self, output_dir: str | os.PathLike) -> Path | None:
        """The seed's run folder (checkpoints, logs, artifacts) under ``output_dir``, the folder it was run with."""
        return Path(output_dir) / self.log_dir if self.log_dir else None


class Aggregate(Strict):
    mean: float
    std: float  # sample standard deviation (ddof=1); 0 for n = 1
    n: int
    ci95: tuple[float, float]  # Student-t 95 % interval of the mean; (mean, mean) for n = 1


class Result(Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    entry: str
    task: str
    division: Literal["closed", "open"]
    metric: str
    direction: Literal["min", "max"]
    status: Literal["ok", "failed"]  # failed when any seed failed: such a result is listed, never ranked
    smoke: bool  # fast-dev-run or budget overrides: never enters the leaderboard
    seeds: list[SeedResult] = Field(min_length=1)
    aggregate: Aggregate | None
    time_to_target_s: float | None  # median over seeds that reached the target
    samples_per_s: float | None  # mean over seeds, in the task's unit (images, sentences, or tokens for text tasks)
    peak_memory_mb: float
    peak_memory_kind: Literal["gpu_max_allocated", "process_rss"]
    wall_time_s: float
    precision: str
    deterministic: bool
    world_size: int
    config: dict[str, Any]
    config_hash: str
    dataset: dict[str, str]
    environment: dict[str, Any]
    code: dict[str, Any]
    wandb: dict[str, Any]
    created: str  # ISO 8601, UTC

    def metric_values(self) -> list[float]:
        """The reported metric of every ok seed, in seed order: the values the aggregate and the tests are about."""
        return [s.metrics[self.metric] for s in self.seeds if s.status == "ok" and self.metric in s.metrics]


class ResultError(ValueError):
    """A malformed result file; the message names the file and the field."""


def aggregate(values: list[float]) -> Aggregate | None:
    if not values:
        return None
    n, mean = len(values), statistics.fmean(values)
    if n == 1:
        return Aggregate(mean=mean, std=0.0, n=1, ci95=(mean, mean))
    std = statistics.stdev(values)
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return Aggregate(mean=mean, std=std, n=n, ci95=(mean - half, mean + half))


def result_filename(result: Result) -> str:
    stamp = datetime.fromisoformat(result.created).strftime("%Y%m%dT%H%M%SZ")
    accel = result.environment.get("accelerator", "cpu")
    return f"{stamp}-{accel}-{result.precision}-{result.config_hash[:8]}.json"


def write_atomic(data: str, final: Path, overwrite: bool = False) -> Path:
    """Write through a temporary file in the same folder; without ``overwrite`` an existing file is an error."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, final)
        else:
            os.link(tmp, final)  # fails with FileExistsError rather than replacing an earlier result
    finally:
        tmp.unlink(missing_ok=True)
    return final


def write_result(result: Result, results_dir: Path) -> Path:
    folder = results_dir / result.task / result.entry
    path = folder / result_filename(result)
    stem = path.stem
    for i in range(1, 100):
        try:
            return write_atomic(result.model_dump_json(indent=2) + "\n", path)
        except FileExistsError:
            path = folder / f"{stem}-{i}.json"
    raise FileExistsError(f"too many results named {stem}* in {folder}")


def read_result(path: Path) -> Result:
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultError(f"{path}: not readable JSON ({error})") from None
    try:
        return Result.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ResultError(f"{path}: field '{field}': {first['msg']}") from None


def artifact_path(result_path: Path, seed: int, name: str) -> Path:
    """Where a seed's artifact lives beside its result file: ``<task>/<entry>/<result stem>/seed-<k>/<name>``."""
    return Path(result_path).with_suffix("") / f"seed-{seed}" / name


def find_results(results_dir: Path) -> list[Path]:
    return sorted(Path(results_dir).glob("*/*/*.json"))
