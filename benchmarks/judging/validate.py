"""``milestones validate [paths]``: what CI runs on a pull request that adds or changes result files.

Every check is on the files alone (nothing is re-run, nothing in a file is executed, imported or unpickled); each
failure is one line ``<file>: <field>: <what is wrong>``. The checks, in order:

- place: the file lies under leaderboards/results/<task>/<entry>/ and its task and entry fields agree with the folders;
- schema: it parses against results.Result (unknown fields, wrong types and missing fields are refused);
- entry and task: the entry is registered and lists the task; the result is not a smoke run;
- config: the recorded config hashes to ``config_hash``, and its run-deciding fields (registry.RUN_FIELDS: model, data,
  trainer, task) equal the entry's resolved config in the registry at this commit (so the YAML and the model's
  defaults are what produced it); the review fields (division, reference, deviations) are the registry's today, and a
  reclassification is a note;
- seeds: seeds 0 … n−1, each once, all reported, failed ones included (no best-of-N: a submission that drops or
  swaps seeds shows a gap); fewer than the task's minimum (a compute-bound run, e.g. AlexNet on a CPU) is a note, not
  a problem, and the leaderboard marks the row provisional;
- schema also fixes forms: read_result reads only a bounded regular UTF-8 file without NaN or Infinity (a NaN seed
  metric is read here so that it is reported with the file's other problems), names are names, numbers are in range;
- duplicates: no two results of one entry on one task hold identical per-seed records (one invocation, one result);
- name: the file name is what the result holds (results.result_filename: time, accelerator, precision, config hash),
  or that stem with a ``-<n>`` suffix (the name a write takes when the first is taken);
- artifacts: each one a seed lists is beside the result, reached through no symbolic link and inside the result's
  folder, a non-empty regular file, and a .png of at most 4096×4096 pixels that decodes completely;
- metrics: every seed's metrics are finite and inside the metric's range, ok seeds carry the task's metric, and the
  status, aggregate (mean, std, n, 95 % CI), median time-to-target and mean throughput re-derive from the per-seed
  values — a hand-edited number shows up here, or, if the per-seed values were edited too, in the leaderboard check;
- dataset: the recorded checksums are those the task's code declares (never read from the data folder);
- code: a commit is recorded, the tree was clean, and the commit is in this repository's history (skipped, with a
  note, in a shallow clone);
- probes (with no paths given): each receptive-field probe file's summaries and means re-derive from its per-unit
  values, its pictures are whole PNGs, and the weights it names are still the committed files;
- leaderboard: the committed tables equal a rebuild from all result files.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from benchmarks.core import paths, provenance
from benchmarks.core.results import (
    Result,
    ResultError,
    aggregate,
    artifact_path,
    artifact_problem,
    duplicates,
    filename_problem,
    find_results,
    forbidden_character,
    read_result,
)
from benchmarks.judging import leaderboard
from benchmarks.running.registry import ConfigError, config_hash, get_entry, run_differences
from benchmarks.tasks import UnknownNameError, get_task

REL_TOL = 1e-9  # re-derived statistics must agree to rounding


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)


def check_place(path: Path, results_dir: Path) -> list[str]:
    try:
        parts = path.resolve().relative_to(results_dir.resolve()).parts
    except ValueError:
        return [f"path: not under {results_dir}: result files live in leaderboards/results/<task>/<entry>/"]
    if len(parts) != 3 or not parts[2].endswith(".json"):
        return ["path: expected leaderboards/results/<task>/<entry>/<name>.json"]
    return []


def check_entry(result: Result, path: Path):
    """(problems, entry or None, task or None)."""
    try:
        entry = get_entry(result.entry)
    except UnknownNameError as error:
        return [f"entry: {error}"], None, None
    try:
        return [], entry, entry.task(result.task)
    except (UnknownNameError, ConfigError) as error:
        return [f"task: {error}"], entry, None


def check_config(result: Result, entry, task) -> list[str]:
    problems = []
    if config_hash(result.config) != result.config_hash:
        problems.append("config_hash: the recorded config does not hash to it (the file was edited after the run)")
    diff = run_differences(result.config, entry.resolved_config(task))
    if diff:
        problems.append(f"config: the run differs from the registry's ({entry.path.name} at this commit): recorded ≠ "
                        f"registry: {'; '.join(diff[:5])}")  # fmt: skip
    return problems


def review_notes(result: Result, entry) -> list[str]:
    """The division is the registry's review of a recipe, not part of the run: a reclassification is a note."""
    if result.division != entry.config.division:
        return [f"division: recorded '{result.division}', the registry now says '{entry.config.division}' (the "
                "leaderboard shows the registry's, with its deviations)"]  # fmt: skip
    return []


def check_seeds(result: Result, entry, task) -> list[str]:
    seeds = [s.seed for s in result.seeds]
    problems = []
    if len(set(seeds)) != len(seeds):
        problems.append(f"seeds: {seeds} repeats a seed")
    missing = sorted(set(range(len(seeds))) - set(seeds))
    if missing:
        problems.append(f"seeds: {sorted(seeds)} is not 0…{len(seeds) - 1}: seed(s) {missing} missing — report every "
                        "seed run, from 0 (a best-of-N selection leaves gaps)")  # fmt: skip
    return problems


def seed_count_note(result: Result, task) -> list[str]:
    """Fewer seeds than the task's minimum is allowed (a compute-bound run) and shown as *provisional*; said here."""
    n = len(result.seeds)
    if n >= task.min_seeds:
        return []
    return [f"seeds: {n} of the {task.min_seeds} the protocol asks for: the leaderboard marks the row provisional"]


def check_metrics(result: Result, task) -> list[str]:
    metric, problems = task.metric, []
    if result.metric != metric.name or result.direction != metric.direction:
        problems.append(f"metric: '{result.metric}' ({result.direction}), the task's is '{metric.name}' "
                        f"({metric.direction})")  # fmt: skip
    for i, seed in enumerate(result.seeds):
        for name, value in seed.metrics.items():
            if not math.isfinite(value):
                problems.append(f"seeds[{i}].metrics.{name}: {value} is not finite")
        value = seed.metrics.get(metric.name)
        if seed.status == "ok" and value is None:
            problems.append(f"seeds[{i}].metrics.{metric.name}: missing on an ok seed")
        elif value is not None and math.isfinite(value) and not metric.valid(value):
            problems.append(f"seeds[{i}].metrics.{metric.name}: {value} outside [{metric.low}, {metric.high}]")
        if seed.status == "failed" and not seed.failure:
            problems.append(f"seeds[{i}].failure: a failed seed must say why")
    ok = [s for s in result.seeds if s.status == "ok"]
    if (result.status == "ok") != (len(ok) == len(result.seeds)):
        problems.append(f"status: '{result.status}' but {len(ok)} of {len(result.seeds)} seeds are ok")
    values = [s.metrics[metric.name] for s in ok if metric.name in s.metrics]
    if any(not math.isfinite(v) for v in values):
        return problems
    derived, recorded = aggregate(values), result.aggregate
    if (derived is None) != (recorded is None):
        problems.append(f"aggregate: recorded {recorded}, the per-seed values give {derived}")
    elif derived is not None:
        for field in ("mean", "std", "n"):
            if not _close(getattr(recorded, field), getattr(derived, field)):
                problems.append(f"aggregate.{field}: {getattr(recorded, field)} recorded, {getattr(derived, field)} "
                                "from the per-seed values (hand-edited?)")  # fmt: skip
        if not all(_close(a, b) for a, b in zip(recorded.ci95, derived.ci95)):
            problems.append(
                f"aggregate.ci95: {list(recorded.ci95)} recorded, {list(derived.ci95)} from the per-seed values"
            )
    reached = [s.time_to_target_s for s in ok if s.time_to_target_s is not None]
    if not _close(result.time_to_target_s, statistics.median(reached) if reached else None):
        problems.append(f"time_to_target_s: {result.time_to_target_s} recorded, the per-seed median is "
                        f"{statistics.median(reached) if reached else None}")  # fmt: skip
    speeds = [s.samples_per_s for s in ok if s.samples_per_s]
    if not _close(result.samples_per_s, statistics.fmean(speeds) if speeds else None):
        problems.append(f"samples_per_s: {result.samples_per_s} recorded, the per-seed mean differs")
    return problems


def check_dataset(result: Result, task) -> list[str]:
    """The recorded checksums against the task's declared identity (``Task.declared_identity()``): code, never the data
    folder, so the answer is the same on a machine with the data and on one without; no cache, no tokenizer."""
    return task.declared_identity().problems(result.dataset, task.name)


def check_artifacts(result: Result, path: Path) -> list[str]:
    problems = []
    for i, seed in enumerate(result.seeds):
        for name in seed.artifacts:
            artifact = artifact_path(path, seed.seed, name)
            problem = artifact_problem(path, seed.seed, name)
            if problem == "is missing":
                problems.append(f"seeds[{i}].artifacts: {artifact} is missing (commit it with the result)")
            elif problem:
                problems.append(f"seeds[{i}].artifacts: {artifact} {problem}")
    return problems


def commit_history(results: list[Result]) -> dict[str, str] | None:
    """``provenance.commit_states`` of every commit the results name, looked up together (a few git calls per tree,
    not per file); None when there is no full history to look them up in (a shallow clone, a copied checkout)."""
    if not provenance.history_available():
        return None
    return provenance.commit_states({r.code["git_commit"] for r in results if r.code.get("git_commit")})


def check_code(result: Result, history: dict[str, str] | None | bool = True) -> tuple[list[str], list[str]]:
    """(problems, notes). ``history``: ``commit_history`` of the results checked together (True: look this one up)."""
    commit, dirty = result.code.get("git_commit"), result.code.get("git_dirty")
    if not commit:
        return ["code.git_commit: missing: the code that made the result is unknown"], []
    problems = ["code.git_dirty: made from a tree with uncommitted changes; commit first, then run"] if dirty else []
    if history is True:
        history = commit_history([result])
    if history is None:
        return problems, [f"code.git_commit: {commit[:10]} not checked (no full git history here)"]
    state = history.get(commit) or provenance.commit_states([commit])[commit]
    if state == "unknown":
        problems.append(f"code.git_commit: {commit[:10]} is not in this repository's history")
    elif state != "ancestor":
        problems.append(f"code.git_commit: {commit[:10]} is not an ancestor of HEAD (made on another branch?)")
    return problems, []


def read_leniently(path: Path) -> Result | ResultError:
    """The file as validate reads it (a NaN metric is let through, to be reported with the rest), or why it cannot."""
    try:
        return read_result(path, metrics_may_be_nan=True)
    except ResultError as error:
        return error


def validate_file(path: Path, results_dir: Path, read: Result | ResultError | None = None,
                  history: dict[str, str] | None | bool = True) -> tuple[list[str], list[str]]:  # fmt: skip
    """(problems, notes) for one result file, each line prefixed with the file. ``read``: the file already read
    (``read_leniently``); ``history``: the commits of the files checked with it (``check_code``)."""
    problems = check_place(path, results_dir)
    result = read_leniently(path) if read is None else read
    if isinstance(result, ResultError):
        return [str(result), *(f"{path}: {p}" for p in problems)], []
    parts = path.resolve().parts
    if not problems and (parts[-3], parts[-2]) != (result.task, result.entry):
        problems.append(f"path: folder {parts[-3]}/{parts[-2]} but the file says {result.task}/{result.entry}")
    named = filename_problem(path, result)
    if named:
        problems.append(named)
    if result.smoke:
        problems.append("smoke: a smoke run (fast-dev-run or a budget override) never enters leaderboards/results")
    found, entry, task = check_entry(result, path)
    problems += found
    notes = []
    if task is not None:
        problems += check_config(result, entry, task)
        notes += review_notes(result, entry)
        problems += check_seeds(result, entry, task)
        notes += seed_count_note(result, task)
        problems += check_metrics(result, task)
        problems += check_dataset(result, task)
    elif result.task:
        try:
            task = get_task(result.task)
            problems += check_seeds(result, None, task) + check_metrics(result, task)
        except UnknownNameError:
            pass
    problems += check_artifacts(result, path)
    code_problems, code_notes = check_code(result, history)
    notes += code_notes
    problems += code_problems
    return [f"{path}: {p}" for p in problems], [f"{path}: {n}" for n in notes]


def is_artifact(path: Path) -> bool:
    """``<task>/<entry>/<result stem>/seed-<k>/<name>`` beside ``<result stem>.json``."""
    seed_folder = path.parent
    return seed_folder.name.startswith("seed-") and seed_folder.parent.with_suffix(".json").is_file()


def expand(targets: list[str] | None, results_dir: Path) -> list[Path]:
    """The files to check: every result, or those named and the .json files under the folders named. A hidden file
    under a folder (a ``.<name>.<pid>.tmp`` write in progress, an editor's backup) is never a result, nor is a file
    among a result's artifacts (``<result stem>/seed-<k>/``, checked with its result)."""
    if not targets:
        return find_results(results_dir)
    files = []
    for target in map(Path, targets):
        if target.is_dir():
            found = target.rglob("*.json")
            files += sorted(p for p in found if not any(part.startswith(".") for part in p.relative_to(target).parts)
                            and not is_artifact(p))  # fmt: skip
        else:
            files.append(target)
    return files


def strictly_readable(result: Result | ResultError) -> bool:
    """True for a file every other reader takes too (``read_result`` without NaN metrics): parsed, and all finite."""
    return isinstance(result, Result) and all(
        math.isfinite(value) for seed in result.seeds for value in seed.metrics.values()
    )


def check_duplicates(paths: list[Path], parsed: dict[Path, Result] | None = None) -> list[str]:
    """A line for each checked file whose per-seed records another result of the same entry and task repeats (it is
    compared with every result in its folder), naming both files. ``parsed``: files already read (and strictly
    readable), by resolved path; the others are read here."""
    parsed = parsed or {}
    checked = {path.resolve(): path for path in paths}
    folder_files = (p for folder in {path.parent for path in paths} for p in folder.glob("*.json"))
    candidates = checked | {p.resolve(): p for p in folder_files if not p.name.startswith(".")}
    results = []
    for resolved, path in candidates.items():
        if resolved in parsed:
            results.append((path, parsed[resolved]))
            continue
        try:
            results.append((path, read_result(path)))
        except ResultError:
            continue  # validate_file reports it
    problems = []
    for first, copy in duplicates(results):
        named, other = (copy, first) if copy.resolve() in checked else (first, copy)
        if named.resolve() in checked:
            problems.append(f"{named}: seeds: the same per-seed records as {other}: one invocation makes one result "
                            "(a copy, or a --resume of a finished run); keep one")  # fmt: skip
    return problems


def validate(targets: list[str] | None = None, results_dir=None, leaderboard_dir=None) -> tuple[list[str], list[str]]:
    """(problems, notes) over the given files (default: every result file), plus the leaderboard rebuild check."""
    results_dir = Path(results_dir) if results_dir else paths.RESULTS_DIR
    problems, notes = [], []
    files = expand(targets, results_dir)
    read = {path: read_leniently(path) for path in files}  # each file parsed once, for every check below
    history = commit_history([r for r in read.values() if isinstance(r, Result)])
    for path in files:
        found, noted = validate_file(path, results_dir, read[path], history)
        problems += found
        notes += noted
    # what the duplicate and leaderboard checks read strictly, by resolved path (a strictly readable file is a regular
    # file, never a link: its content is the resolved file's)
    parsed = {path.resolve(): result for path, result in read.items() if strictly_readable(result)}
    problems += check_duplicates(files, parsed)
    if targets is None:  # the whole tree: the receptive-field probe files beside the results too
        from benchmarks.judging.receptive_fields import probe_problems

        problems += probe_problems(leaderboard.probes_dir(results_dir) / "receptive-fields")
    try:
        problems += leaderboard.check(results_dir, leaderboard_dir, parsed)
    except ResultError as error:
        problems.append(f"leaderboard: cannot be rebuilt: {error}")
    return [printable(line) for line in problems], [printable(line) for line in notes]


def printable(line: str) -> str:
    """``line`` with every character results.CONTROL or category Cf/Cs would refuse written as its escape (``\\x1b``):
    a file's own name (a pull request chooses it) reaches the terminal only as text."""
    return "".join(ascii(char)[1:-1] if forbidden_character(char) else char for char in line)
