"""The result file: one JSON per benchmark invocation, schema-validated, written atomically, never overwritten.

Results are data: they are parsed and validated, never executed or unpickled. ``schema_version`` changes whenever a
field changes meaning; readers reject versions they do not know. A result file is hostile input (a pull request adds
it): ``read_result`` reads only a regular file of at most ``MAX_RESULT_BYTES``, UTF-8, nested at most ``MAX_DEPTH``
deep, without NaN or Infinity, and the schema fixes the form of every field that is rendered or used as a name.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import statistics
import typing
import unicodedata
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT_STR
from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from scipy import stats

from benchmarks.core import faults

SCHEMA_VERSION = 1
ARTIFACTS = "artifacts"  # a seed's run folder keeps the files to publish with its result under this name
MAX_RESULT_BYTES = 32 * 2**20  # the largest result file read (the committed ones are a few kB; a 30-seed one < 1 MB)
MAX_DEPTH = 32  # the deepest nesting read (a committed file nests 6 deep); "[" * 100000 is refused, not a crash
MAX_DIGITS = 100  # the longest integer literal read (a seed has 10 digits); 10**5000 is refused, not a ValueError
MAX_IMAGE_SIDE = 4096  # the widest and tallest artifact image decoded (a sample grid is a few hundred pixels)
# Never in any key or string of a result file, config included (no committed result or registry config holds one):
# C0 controls (line breaks and tabs too), DEL, C1 controls, and line/paragraph separators; besides these, every
# character of Unicode category Cf (bidi overrides and isolates, zero-width and other invisible format characters)
# or Cs (a lone surrogate, which json accepts as "\ud800"). Each could fake or hide text on a terminal or a page.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet takes a cell starting so for a formula

# The forms of the fields that are rendered, used as names, or joined into paths. Names are the registry's name form
# (an entry's YAML file name; a task's name); an artifact is a plain file name beside the result, never a path.
Name = Annotated[str, Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]
MetricName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$")]
FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]  # no "/", no leading "." (so no "..")
Line = Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]*$")]  # one line: no newline or other control character
Seconds = Annotated[float, Field(ge=0)]
# Lightning's precision strings, from Lightning itself, and the seeds seed_everything (NumPy's generator) accepts
PRECISIONS = typing.get_args(_PRECISION_INPUT_STR)
Precision = Literal[PRECISIONS]
MAX_SEED = 2**32 - 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # NaN and Infinity only where a field says so


class SeedResult(Strict):
    seed: int = Field(ge=0, le=MAX_SEED)
    status: Literal["ok", "failed"]
    failure: Line | None = None
    # test metrics, e.g. {"error": 0.98, "accuracy": 99.02}; finite in every file read_result returns (the harness
    # drops a failed seed's non-finite values), but the schema lets validate report a NaN with the file's other problems
    metrics: dict[MetricName, Annotated[float, AllowInfNan(True)]] = {}
    notes: dict[MetricName, Line] = {}  # what a metric needs to be read, e.g. {"bleu_signature": "nrefs:1|case:..."}
    selected_epoch: int | None = Field(default=None, ge=0)  # the best-validation epoch whose weights were tested
    time_to_target_s: Seconds | None = None
    epoch_to_target: int | None = Field(default=None, ge=0)
    train_time_s: Seconds
    eval_time_s: Seconds
    wall_time_s: Seconds
    samples_per_s: float | None = Field(default=None, gt=0)
    epochs: int = Field(ge=0)
    val_history: list[dict[str, float | None]] = []  # None: a validation metric that was not finite (NaN samples)
    wandb_run: Line | None = None
    log_dir: str | None = None  # the seed's run folder, relative to the output folder (older files: absolute)
    artifacts: list[FileName] = []  # files saved with the result (e.g. samples.png): see ``artifact_path``

    @field_validator("failure", mode="before")
    @classmethod
    def _one_line(cls, value: Any, info: ValidationInfo) -> Any:
        """A run's own message is made one line (an exception's text may span lines); in a file read back
        (read_result passes a context) a line break was put there by hand, and the pattern refuses it."""
        if isinstance(value, str) and info.context is None:
            return " ".join(value.split())
        return value

    def run_dir(self, output_dir: str | os.PathLike) -> Path | None:
        """The seed's run folder (checkpoints, logs, artifacts) under ``output_dir``, the folder it was run with."""
        return Path(output_dir) / self.log_dir if self.log_dir else None


def forbidden_character(text: str) -> str | None:
    """The first character of ``text`` that no result file may hold (see CONTROL), as 'U+XXXX', or None."""
    found = CONTROL.search(text)
    if found:
        return f"U+{ord(found.group()):04X}"
    if not text.isascii():
        for char in text:
            if unicodedata.category(char) in ("Cf", "Cs"):
                return f"U+{ord(char):04X}"
    return None


class Hardware(BaseModel):
    """The keys of ``environment`` that are rendered (environment.hardware_label, compare's rows) or decide something
    (verify's accelerator, the drift check); others pass. Strict: a value of another type is refused, not coerced."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, strict=True)
    accelerator: Literal["cpu", "gpu"] = "cpu"
    device: Line
    device_count: int = Field(ge=1)
    torch_threads: int | None = Field(default=None, ge=1)
    python: StrictStr | None = None
    packages: dict[StrictStr, StrictStr | None] = {}  # {"torch": "2.5.1", "sacrebleu": None (not installed)}
    cuda: StrictStr | None = None
    cudnn: StrictInt | StrictStr | None = None
    machine: StrictStr | None = None

    @field_validator("device")
    @classmethod
    def _no_formula(cls, value: str) -> str:
        if value.startswith(CSV_FORMULA):
            raise ValueError(f"{value[:40]!r} starts with {value[0]!r}: a spreadsheet would take it for a formula")
        return value


class RankPlace(Strict):
    """One process of a distributed run: where it ran and on what (distributed.rank_hardware)."""

    rank: int = Field(ge=0)
    node_rank: int = Field(ge=0)
    local_rank: int = Field(ge=0)
    device: Line
    torch_threads: int = Field(ge=1)
    host: Annotated[str, Field(pattern=r"^[0-9a-f]{8}$")]  # a hash of the host name: tells nodes apart, names none


class Distributed(Strict):
    """How a run of several processes was laid out (running/distributed.py): absent for one process."""

    strategy: Annotated[str, Field(pattern=r"^[a-z_]+$")]  # Lightning's strategy_name: ddp, fsdp, …
    num_nodes: int = Field(ge=1)
    devices_per_node: int = Field(ge=1)
    # the config's data.batch_size is the global batch: this is its share; None where each global batch was cut in W
    # slices (RankSlices: e.g. sentences under a token budget, a batch of no fixed size)
    batch_per_process: int | None = Field(ge=1)
    ranks: list[RankPlace] = Field(min_length=2)


class Aggregate(Strict):
    mean: float
    std: float = Field(ge=0)  # sample standard deviation (ddof=1); 0 for n = 1
    n: int = Field(ge=1)
    ci95: tuple[float, float]  # Student-t 95 % interval of the mean; (mean, mean) for n = 1


class Part(Strict):
    """A result file a ``milestones join`` joined: its name, the sha256 of its bytes and the seeds it held."""

    file: FileName
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED)]] = Field(min_length=1)


class Result(Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    entry: Name
    task: Name
    division: Literal["closed", "open"]
    metric: MetricName
    direction: Literal["min", "max"]
    status: Literal["ok", "failed"]  # failed when any seed failed: such a result is listed, never ranked
    smoke: bool  # fast-dev-run or budget overrides: never enters the leaderboard
    seeds: list[SeedResult] = Field(min_length=1)
    aggregate: Aggregate | None
    time_to_target_s: Seconds | None  # median over seeds that reached the target
    # mean over seeds, in the task's unit (images, sentences, or tokens for text tasks)
    samples_per_s: float | None = Field(gt=0)
    peak_memory_mb: float = Field(ge=0)
    peak_memory_kind: Literal["gpu_max_allocated", "process_rss"]
    wall_time_s: Seconds
    precision: Precision
    deterministic: bool
    world_size: int = Field(ge=1)
    distributed: Distributed | None = None  # the layout of a multi-process run; None for one process
    config: dict[str, Any]  # the resolved config; validate compares it with the registry's
    config_hash: str = Field(pattern=r"^[0-9a-f]{64}$")  # a sha256 (registry.config_hash)
    dataset: dict[Line, Line]
    # rendered (hardware label, compare's version rows): read_result refuses a control character in any of their
    # strings; ``accelerator`` goes into the file name and picks verify's accelerator
    environment: dict[str, Any]
    code: dict[str, StrictStr | StrictBool | None]  # git_commit, git_dirty, commit_from
    wandb: dict[str, Any]
    parts: list[Part] | None = None  # the per-seed files `milestones join` made it from; None: one run made it
    created: str  # ISO 8601, UTC

    @field_validator("created")
    @classmethod
    def _utc_timestamp(cls, value: str) -> str:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"'{value}' is not an ISO 8601 timestamp") from None
        if when.utcoffset() != timedelta(0):
            raise ValueError(f"'{value}' is not in UTC (+00:00)")
        return value

    @field_validator("distributed")
    @classmethod
    def _one_place_per_rank(cls, value: Distributed | None, info: ValidationInfo) -> Distributed | None:
        world = info.data.get("world_size")
        if value is not None and world is not None:
            if sorted(rank.rank for rank in value.ranks) != list(range(world)):
                raise ValueError(f"its ranks are {[rank.rank for rank in value.ranks]}, not 0 … {world - 1} of the "
                                 f"world_size {world}")  # fmt: skip
        return value

    @field_validator("environment")
    @classmethod
    def _rendered_environment(cls, value: dict[str, Any]) -> dict[str, Any]:
        """What the hardware label and the file name read from it: checked here, so a row never fails to render."""
        Hardware.model_validate(value)
        return value

    @field_validator("code")
    @classmethod
    def _commit_form(cls, value: dict[str, str | bool | None]) -> dict[str, str | bool | None]:
        commit, dirty = value.get("git_commit"), value.get("git_dirty")
        if commit is not None and not (isinstance(commit, str) and re.fullmatch(r"[0-9a-f]{7,40}", commit)):
            raise ValueError(f"git_commit {commit!r} is not a hexadecimal commit id")
        if dirty is not None and not isinstance(dirty, bool):
            raise ValueError(f"git_dirty {dirty!r} is not true, false or null")
        return value

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


def write_atomic(data: str | bytes, final: Path, overwrite: bool = False, kill_point: str | None = None) -> Path:
    """Write through a temporary file in the same folder; without ``overwrite`` an existing file is an error.

    The temporary file is hidden (``.<name>.<pid>.tmp``), so nothing that lists results picks it up; one left by a
    process that was killed mid-write (its pid is gone) is removed first. ``kill_point`` names the faults.PHASES point
    reached halfway through the bytes (the fault tests kill a result write there)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    payload = data.encode() if isinstance(data, str) else data
    try:
        with open(tmp, "wb") as f:
            f.write(payload[: len(payload) // 2])
            if kill_point:
                f.flush()
                faults.reached(kill_point)
            f.write(payload[len(payload) // 2 :])
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, final)
        else:
            os.link(tmp, final)  # fails with FileExistsError rather than replacing an earlier result
    finally:
        tmp.unlink(missing_ok=True)
    return final


def remove_stale_temporaries(final: Path) -> None:
    """Remove ``.<name>.<pid>.tmp`` files of ``final`` whose process no longer exists (killed mid-write)."""
    for tmp in final.parent.glob(f".{glob_escape(final.name)}.*.tmp"):
        pid = tmp.name[len(final.name) + 2 : -len(".tmp")]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
        except PermissionError:
            continue  # alive, another user's
        except (ProcessLookupError, OverflowError):  # gone (or a pid no system has)
            tmp.unlink(missing_ok=True)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def write_result(result: Result, results_dir: Path, first: Path | None = None, before_write=None) -> Path:
    """Write ``result`` as ``<results_dir>/<task>/<entry>/<result_filename>`` (or ``first``, a name chosen earlier in
    that folder), atomically and never over another file: a name that is taken gets ``-1``, ``-2``, … ``before_write``
    (path) runs before each attempt (the harness names the file in its run folder and copies the artifacts there)."""
    folder = results_dir / result.task / result.entry
    stem = Path(result_filename(result)).stem
    path = first if first is not None and first.parent == folder else folder / f"{stem}.json"
    for i in range(1, 100):
        if not path.exists():
            if before_write is not None:
                before_write(path)
            try:
                return write_atomic(result.model_dump_json(indent=2) + "\n", path, kill_point="result-write")
            except FileExistsError:  # another run took the name meanwhile
                pass
        path = folder / f"{stem}-{i}.json"
    raise FileExistsError(f"too many results named {stem}* in {folder}")


def read_regular(path: Path, limit: int = MAX_RESULT_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes, else a one-line ResultError.

    O_NOFOLLOW refuses a symbolic link (to /dev/zero, say) instead of following it; O_NONBLOCK makes opening a FIFO
    return at once (fstat then refuses it) rather than wait for a writer forever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ResultError(f"{path}: a symbolic link: a result file must be a regular file") from None
        raise ResultError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode  # before anything else: os.fdopen itself refuses a folder with a traceback
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
            raise ResultError(f"{path}: {kind}, not a regular file: a result file must be a regular file")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)  # at most one byte past the bound, even if the file grows while read
    if len(data) > limit:
        raise ResultError(f"{path}: larger than {limit // 2**20} MiB: not a result file")
    return data


def _unreadable(value: Any, metrics_may_be_nan: bool) -> tuple[str, str] | None:
    """(field, why) for the first thing no result file holds: nesting deeper than MAX_DEPTH, NaN or Infinity (in a
    seed's metrics too unless ``metrics_may_be_nan``), a control, invisible or bidi character (``CONTROL``) in any
    string or key, config included; None when there is none. A key is checked before anything under it, so a field
    path in a message never holds one. Iterative: a deep file cannot exhaust the stack here."""
    stack = [(value, ())]
    while stack:
        item, at = stack.pop()
        field = ".".join(map(str, at)) or "(top level)"
        if len(at) > MAX_DEPTH:
            return field, f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, float) and not math.isfinite(item):
            if not (metrics_may_be_nan and len(at) == 4 and at[0] == "seeds" and at[2] == "metrics"):
                return field, f"{item} is not a finite number (a run records none: a failed seed drops its NaN)"
        elif isinstance(item, str) and (char := forbidden_character(item)):
            return field, f"{ascii(item[:40])} holds a line break, control, invisible or bidi character ({char})"
        elif isinstance(item, dict):
            for key, inner in item.items():
                if char := forbidden_character(key):
                    why = "holds a line break, control, invisible or bidi character"
                    return field, f"key {ascii(key[:40])} {why} ({char})"
                stack.append((inner, (*at, key)))
        elif isinstance(item, list):
            stack += [(inner, (*at, i)) for i, inner in enumerate(item)]
    return None


class _Refused(Exception):
    """What the JSON hooks raise (a repeated key, an over-long integer); read_result makes it a ResultError."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object_pairs_hook: a key given twice in one object is refused (json.loads would keep the last)."""
    found = {}
    for key, value in pairs:
        if key in found:
            raise _Refused(f"key {ascii(key[:40])} appears twice in one object (a reader could take either value)")
        found[key] = value
    return found


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_DIGITS:
        raise _Refused(f"an integer of {len(literal.lstrip('-'))} digits (at most {MAX_DIGITS} are read)")
    return int(literal)


def read_result(path: Path, metrics_may_be_nan: bool = False) -> Result:
    """Parse and validate a result file; any failure is a one-line ResultError naming the file and the field.

    ``metrics_may_be_nan``: let a NaN or Infinity seed metric through (validate reports it with the file's other
    problems); every other reader refuses it here, so no statistic ever sees one."""
    path = Path(path)
    data = read_regular(path)
    try:
        raw = json.loads(data.decode("utf-8"), object_pairs_hook=_unique_keys, parse_int=_bounded_int)
    except UnicodeDecodeError as error:
        byte = error.object[error.start]
        raise ResultError(f"{path}: not UTF-8 text (byte {byte:#04x} at offset {error.start})") from None
    except json.JSONDecodeError as error:
        raise ResultError(f"{path}: not readable JSON ({error})") from None
    except _Refused as error:
        raise ResultError(f"{path}: not a result file: {error}") from None
    except RecursionError:
        raise ResultError(f"{path}: not readable JSON (nested deeper than Python's recursion limit)") from None
    except ValueError as error:  # anything else json or int() refuses: one line all the same
        raise ResultError(f"{path}: not readable JSON ({' '.join(str(error).split())[:200]})") from None
    problem = _unreadable(raw, metrics_may_be_nan)
    if problem:
        raise ResultError(f"{path}: field '{problem[0]}': {problem[1]}")
    try:
        return Result.model_validate(raw, context={"file": str(path)})
    except ValidationError as error:
        first, more = error.errors()[0], len(error.errors()) - 1
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        also = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
        raise ResultError(f"{path}: field '{field}': {first['msg']}{also}") from None


def artifact_path(result_path: Path, seed: int, name: str) -> Path:
    """Where a seed's artifact lives beside its result file: ``<task>/<entry>/<result stem>/seed-<k>/<name>``."""
    return Path(result_path).with_suffix("") / f"seed-{seed}" / name


def artifact_problem(result_path: Path, seed: int, name: str) -> str | None:
    """Why a seed's artifact is not a plain file inside its result's folder, or None: no folder between the result's
    folder (``<task>/<entry>/``) and the artifact may be a symbolic link (``seed-0`` -> /etc would publish
    /etc/passwd), and the resolved artifact must lie inside the resolved result folder; then ``file_problem``."""
    folder = Path(result_path).parent
    artifact = artifact_path(result_path, seed, name)
    here = folder
    for part in artifact.relative_to(folder).parts[:-1]:
        here = here / part
        try:
            info = os.lstat(here)
        except OSError:
            return "is missing"
        if stat.S_ISLNK(info.st_mode):
            return f"is reached through a symbolic link ({here}): an artifact is a file in the result's own folder"
        if not stat.S_ISDIR(info.st_mode):
            return f"is missing ({here} is not a folder)"
    if artifact.is_symlink():
        return file_problem(artifact)  # "is not a regular file"
    try:
        artifact.resolve().relative_to(folder.resolve())
    except ValueError:
        return f"resolves outside {folder}: an artifact is a file in the result's own folder"
    return file_problem(artifact)


def file_problem(path: Path) -> str | None:
    """Why a file published beside the results (an artifact, a leaderboard plot) is not what it should be, or None:
    missing, not a regular file (a link, a FIFO), empty, or a .png that is larger than MAX_IMAGE_SIDE on a side (read
    from its header before a pixel is decoded: a small file can unpack to gigabytes) or does not decode to its end."""
    try:
        info = os.lstat(path)
    except OSError:
        return "is missing"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if info.st_size == 0:
        return "is empty (0 bytes)"
    if path.suffix.lower() == ".png":
        from PIL import Image

        try:
            with warnings.catch_warnings():  # PIL's own DecompressionBombWarning: the bound below is the one kept
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(path)
            with image:
                width, height = image.size
                if max(width, height) > MAX_IMAGE_SIDE:
                    return f"is {width}×{height} pixels, larger than {MAX_IMAGE_SIDE}×{MAX_IMAGE_SIDE}: not decoded"
                image.verify()  # every chunk's checksum, up to IEND
            with Image.open(path) as image:
                image.load()  # and the pixels decode (a truncated stream fails here)
        except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
            return f"is not a complete PNG ({' '.join(str(error).split()) or type(error).__name__})"
    return None


def filename_problem(path: Path, result: Result) -> str | None:
    """Why the file's name does not say what it holds, or None: it must be ``result_filename(result)`` (the time,
    accelerator, precision and config hash), or ``<that stem>-<n>.json``, the name a write takes when that is taken."""
    expected = result_filename(result)
    stem = expected[: -len(".json")]
    if path.name == expected or re.fullmatch(re.escape(stem) + r"-[1-9][0-9]?\.json", path.name):
        return None
    return f"name: the file says it is {expected} (created, accelerator, precision, config hash), not {path.name}"


def duplicates(results: list[tuple[Path, Result]]) -> list[tuple[Path, Path]]:
    """(first, copy) for every two results of one entry on one task with identical per-seed records: one invocation
    makes one result, so the second is a copy of the file or a ``--resume`` of a finished run. Smoke runs are left
    out."""
    seen, found = {}, []
    for path, result in sorted(results, key=lambda pair: str(pair[0])):
        if result.smoke:
            continue  # never on the leaderboard (validate refuses it in leaderboards/results on its own)
        key = (result.task, result.entry, json.dumps([s.model_dump(mode="json") for s in result.seeds], sort_keys=True))
        if key in seen:
            found.append((seen[key], path))
        else:
            seen[key] = path
    return found


def find_results(results_dir: Path) -> list[Path]:
    """Every ``<task>/<entry>/<name>.json``, never a hidden one (a ``.<name>.<pid>.tmp`` write in progress, an editor's
    backup): pathlib's glob, unlike the shell's, matches names that start with a dot."""
    found = Path(results_dir).glob("*/*/*.json")
    return sorted(p for p in found if not any(part.startswith(".") for part in p.parts[-3:]))
