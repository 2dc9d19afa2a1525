"""``milestones join``: one result file from the result files ("parts") of seeds run as separate jobs.

A benchmark's seeds are independent, so they can run as separate jobs (``milestones bench <entry> --seeds 3 --part``
on another GPU, node or SLURM array task), each writing an ordinary result file that holds only its seeds. A join
reads the parts, refuses unless they are one run in all but the seed (same entry and task, config, commit, class of
machine and software, data, W&B settings) and hold every expected seed exactly once, then writes one result file,
atomically and never over another one, its artifacts copied beside it first. A refusal writes nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, TypeAdapter, ValidationError

from benchmarks.core.environment import NUMERIC_PACKAGES
from benchmarks.core.paths import RESULTS_DIR, output_dir
from benchmarks.core.results import (
    FileName,
    Part,
    Result,
    ResultError,
    aggregate,
    artifact_path,
    artifact_problem,
    read_regular,
    read_result,
    write_result,
)
from benchmarks.judging.validate import expand
from benchmarks.running.registry import get_entry


class JoinError(ValueError):
    """Parts that cannot be joined; the message is one line naming the files and what to do."""


def environment_class(result: Result) -> dict:
    """What must be equal for seeds run apart to count as one run: the kind of machine and the numeric software
    (not the host, its CPU count or its threads), the precision and run options, and a multi-process layout (all of it
    but ``ranks``, the per-process places, which differ from job to job)."""
    env = result.environment
    packages = env.get("packages", {})
    distributed = getattr(result, "distributed", None)  # a field newer results have; None for one process
    if isinstance(distributed, BaseModel):
        distributed = distributed.model_dump(mode="json", exclude={"ranks"})
    return {
        **{key: env.get(key) for key in ("accelerator", "device", "device_count", "python", "cuda", "cudnn")},
        **{f"packages.{name}": packages.get(name) for name in NUMERIC_PACKAGES},
        "precision": result.precision,
        "deterministic": result.deterministic,
        "world_size": result.world_size,
        "smoke": result.smoke,
        "distributed": distributed,
    }


def what_is_run(r: Result) -> dict:
    return {"entry": r.entry, "task": r.task, "division": r.division, "metric": r.metric, "direction": r.direction}


def recipe(r: Result) -> dict:
    return r.config | {"config_hash": r.config_hash}


def commit(r: Result) -> dict:
    return {key: r.code.get(key) for key in ("git_commit", "git_dirty")}


def wandb_settings(r: Result) -> dict:
    return {key: r.wandb.get(key) for key in ("mode", "project")}


# (what, the fields compared, what to do): every part must give the fields of the part holding the lowest seed
AGREEMENT: list[tuple[str, Callable[[Result], dict], str]] = [
    ("entry and task", what_is_run, "join the parts of one entry on one task"),
    ("config", recipe, "run every part with the same options from the same registry config"),
    ("code", commit, "run every part from the same commit (and a clean tree)"),
    ("environment class", environment_class, "run every part on the same kind of machine, software and precision"),
    ("dataset", lambda r: dict(r.dataset), "run every part on the same data"),
    ("W&B settings", wandb_settings, "run every part with the same --wandb and --wandb-project"),
    ("memory measure", lambda r: {"peak_memory_kind": r.peak_memory_kind}, "run every part on the same accelerator"),
]


def read_parts(paths: list[Path]) -> list[tuple[Path, Result, str]]:
    """(path, result, sha256 of its bytes) for every part file given or below a folder given, each file once. The
    hash and the result come from two reads of one file: a result file is never rewritten (write_result)."""
    # expand's folder is where it looks when given nothing: never here, where nothing given finds nothing
    found = expand([str(p) for p in paths], RESULTS_DIR) if paths else []
    files = {path.resolve(): path for path in found}
    if not files:
        raise JoinError(f"no parts found in {', '.join(map(str, paths)) or 'nothing'}: give the part files or the "
                        "folder `milestones bench --part` wrote them to (<output>/parts/<task>/<entry>/)")  # fmt: skip
    parts = []
    for path in files.values():
        try:
            TypeAdapter(FileName).validate_python(path.name)
            parts.append((path, read_result(path), hashlib.sha256(read_regular(path)).hexdigest()))
        except ValidationError:
            why = "rename it (letters, digits, '.', '_', '-')"
            raise JoinError(f"{path}: the name is not a result file's: {why}") from None
        except ResultError as error:
            raise JoinError(f"{error}: not a part that can be joined; remove it from the parts") from None
    return sorted(parts, key=lambda part: min(s.seed for s in part[1].seeds))


def check_agreement(parts: list[tuple[Path, Result, str]]) -> None:
    first_path, first, _ = parts[0]
    for what, fields, todo in AGREEMENT:
        expected = fields(first)
        for path, result, _ in parts[1:]:
            found = fields(result)
            if found != expected:
                differ = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
                raise JoinError(f"{first_path} and {path} differ in {what} ({', '.join(differ)}): {todo}; "
                                "nothing was written")  # fmt: skip


def check_seeds(parts: list[tuple[Path, Result, str]], expected: list[int]) -> None:
    where: dict[int, Path] = {}
    for path, result, _ in parts:
        for seed in result.seeds:
            if seed.seed in where:
                raise JoinError(f"seed {seed.seed} is in both {where[seed.seed]} and {path}: keep one part per seed "
                                "(remove the other, e.g. an earlier attempt); nothing was written")  # fmt: skip
            where[seed.seed] = path
    missing = sorted(set(expected) - set(where))
    if missing:
        raise JoinError(f"seed(s) {missing} missing: expected {sorted(expected)}, the parts "
                        f"{', '.join(str(p) for p, _, _ in parts)} hold {sorted(where)}: run them (milestones bench "
                        f"{parts[0][1].entry} --seeds {','.join(map(str, missing))} --part, with the options the other "
                        "parts ran with) or name the seeds to join with --seeds; nothing was written")  # fmt: skip
    unexpected = sorted(set(where) - set(expected))
    if unexpected:
        files = ", ".join(sorted({str(where[s]) for s in unexpected}))
        raise JoinError(f"seed(s) {unexpected} in {files} not expected ({sorted(expected)}): remove that part or name "
                        "its seeds with --seeds; nothing was written")  # fmt: skip


def check_artifacts(parts: list[tuple[Path, Result, str]]) -> None:
    """Every artifact a part lists is beside it (a plain file, no symbolic link on the way), before anything is
    written."""
    for path, result, _ in parts:
        for seed in result.seeds:
            for name in seed.artifacts:
                problem = artifact_problem(path, seed.seed, name)
                if problem:
                    raise JoinError(f"{artifact_path(path, seed.seed, name)} {problem}: copy the part with its "
                                    "artifacts folder; nothing was written")  # fmt: skip


def joined_result(parts: list[tuple[Path, Result, str]]) -> Result:
    """The result of all the parts' seeds. Every field the parts share (entry, config, code, dataset, environment,
    W&B, distributed layout, …) comes from the part holding the lowest seed; the statistics are re-derived as the
    harness derives them; ``wall_time_s`` is the SUM of the parts' wall times: the compute spent, not the elapsed
    time (the parts may have run side by side)."""
    first = parts[0][1]
    seeds = sorted((s for _, result, _ in parts for s in result.seeds), key=lambda s: s.seed)
    ok = [s for s in seeds if s.status == "ok"]
    reached = [s.time_to_target_s for s in ok if s.time_to_target_s is not None]
    throughputs = [s.samples_per_s for s in ok if s.samples_per_s]
    joined = first.model_dump() | {
        "status": "ok" if len(ok) == len(seeds) else "failed",
        "seeds": [s.model_dump() for s in seeds],
        "aggregate": aggregate([s.metrics[first.metric] for s in ok if first.metric in s.metrics]),
        "time_to_target_s": statistics.median(reached) if reached else None,
        "samples_per_s": statistics.fmean(throughputs) if throughputs else None,
        "peak_memory_mb": max(result.peak_memory_mb for _, result, _ in parts),
        "wall_time_s": sum(result.wall_time_s for _, result, _ in parts),  # compute spent, see the docstring
        "parts": [Part(file=p.name, sha256=sha, seeds=[s.seed for s in result.seeds]) for p, result, sha in parts],
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    }
    return Result.model_validate(joined)


def copy_artifacts(parts: list[tuple[Path, Result, str]], target: Path) -> None:
    """Each part's artifacts beside the joined result, as the harness publishes them: through a temporary file and a
    rename, so a kill leaves no partial artifact."""
    for path, result, _ in parts:
        for seed in result.seeds:
            for name in seed.artifacts:
                destination = artifact_path(target, seed.seed, name)
                destination.parent.mkdir(parents=True, exist_ok=True)
                tmp = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
                shutil.copyfile(artifact_path(path, seed.seed, name), tmp)
                os.replace(tmp, destination)


def check_not_joined(result: Result, results_dir: Path) -> None:
    """Refuse to join the same parts twice: a second result of the same runs would count them twice."""
    mine = {part.sha256 for part in result.parts}
    for path in sorted((results_dir / result.task / result.entry).glob("*.json")):
        try:
            earlier = read_result(path)
        except ResultError:
            continue  # not this check's business: validate reports it
        if earlier.parts and {part.sha256 for part in earlier.parts} == mine:
            raise JoinError(f"these parts were joined already, into {path}: nothing was written")


def join_parts(paths: list[Path], seeds: list[int] | None = None, results_dir: Path | None = None) -> Path:
    """Join the part files (or every result file below the folders) in ``paths`` into one result file under
    ``results_dir`` (default as bench's: leaderboards/results, or <output>/smoke-results for smoke parts) and return
    its path. ``seeds``: the seeds expected, default 0 … n−1 of the entry's count. ``wall_time_s`` of the joined
    result is the sum of the parts' (compute spent, not elapsed time). Raises JoinError, having written nothing,
    unless the parts agree and hold each expected seed once."""
    parts = read_parts([Path(p) for p in paths])
    check_agreement(parts)
    first = parts[0][1]
    expected = seeds if seeds is not None else list(range(get_entry(first.entry).config.seeds))
    check_seeds(parts, expected)
    check_artifacts(parts)
    result = joined_result(parts)
    if results_dir is None:
        results_dir = output_dir() / "smoke-results" if result.smoke else RESULTS_DIR
    check_not_joined(result, Path(results_dir))
    return write_result(result, Path(results_dir), before_write=lambda target: copy_artifacts(parts, target))
