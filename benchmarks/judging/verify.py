"""``milestones verify <result.json>``: re-run a result from what its file records and say whether it holds.

0. Gate. The file's entry must be registered and list its task, and the model class it records must be exactly the
   registered entry's ``class_path``; otherwise verify stops with one line (exit 2), ``--run-anyway`` or not. Nothing
   a result file names is imported, executed or resolved as a module before this: ``--run-anyway`` may override a
   differing recipe (init_args, data, trainer), never which code runs.
1. Pre-flight. The file must parse; its config must hash to its ``config_hash`` and its run (registry.RUN_FIELDS)
   equal the registry's entry today;
   its commit must be in this repository's history, made from a clean tree, and the code the entry runs (its model
   class, its bases and the lightning_modules definitions they use; provenance.model_changes) must not have changed
   since. Any failure refuses the verify with the reasons, unless ``--run-anyway``, which runs
   it nevertheless and says so in the verdict. Smoke results record no complete budget and are refused too.
2. Re-run. The entry is rebuilt from the file's own resolved config (not from today's YAML), with its seeds (or the
   ``--seeds`` subset), precision, determinism setting and, on CPU, its torch thread count. The re-run's result file
   goes to ``<output>/verify-results``, never to the leaderboard.
3. Compare. On the same hardware and software (no drift in environment.DRIFT_FIELDS) a deterministic result must match
   exactly: every test metric of every seed, its status and its selected epoch. Otherwise the re-run's mean must lie
   within stats.verify_tolerance (same_seeds) of the recorded mean over the same seeds (a ``--seeds 0`` re-run is
   compared with seed 0's record, not with the mean of all the recorded seeds). A side-by-side table per seed, the
   drift, and the verdict with what it rests on are printed; the exit status is 0 on a match, 1 on a mismatch, 2 when
   refused.
"""

from __future__ import annotations

import contextlib
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.core import paths, provenance
from benchmarks.core.environment import drift, environment
from benchmarks.core.results import Result, ResultError, SeedResult, read_result
from benchmarks.core.stats import verify_tolerance
from benchmarks.running.distributed import first_process
from benchmarks.running.harness import BenchError, BenchOptions, resolve_accelerator, run_benchmark
from benchmarks.running.registry import ConfigError, config_hash, entry_from_resolved, get_entry, run_differences
from benchmarks.tasks import UnknownNameError


@dataclass
class VerifyOptions:
    seeds: list[int] | None = None  # a subset of the recorded seeds (default: all of them)
    run_anyway: bool = False
    accelerator: str | None = None  # default: the recorded one
    data_dir: str | None = None
    output_dir: str | None = None
    wandb: str = "off"
    download: bool = True
    progress: str = "auto"
    skip_over_minutes: float | None = None  # skip (exit 0, saying so) when the recorded seeds took longer than this


def gate(result: Result, path: Path):
    """The registered entry a result may be re-run as, or a ResultError (one line, exit 2, even with --run-anyway):
    the entry must be registered and list the task, and the recorded model class must be the registered one. Only
    dictionary look-ups and a string comparison happen here; nothing the file names is imported."""
    try:
        entry = get_entry(result.entry)
        entry.task(result.task)
    except (UnknownNameError, ConfigError) as error:
        raise ResultError(f"{path}: cannot be verified, even with --run-anyway: {error}") from None
    model = result.config.get("model")
    recorded = model.get("class_path") if isinstance(model, dict) else None
    if recorded != entry.config.model.class_path:
        raise ResultError(f"{path}: cannot be verified, even with --run-anyway: config.model.class_path {recorded!r} "
                          f"is not the class of entry '{entry.name}' ({entry.config.model.class_path!r} in "
                          f"{entry.path.name}); verify runs only the registered code")  # fmt: skip
    return entry


def preflight(result: Result, accelerator: str | None) -> tuple[list[str], list[str]]:
    """(reasons to refuse, notes) for re-running ``result`` against this checkout."""
    refusals, notes = [], []
    if result.smoke:
        refusals.append("a smoke run (fast-dev-run or a budget override) records no complete budget")
    if config_hash(result.config) != result.config_hash:
        refusals.append("the file's config does not hash to its config_hash: it was edited after the run")
    try:
        entry = get_entry(result.entry)
        registry = entry.resolved_config(entry.task(result.task))
    except (UnknownNameError, ConfigError) as error:
        refusals.append(f"not in the registry today: {error}")
    else:
        diff = run_differences(result.config, registry)
        if diff:
            refusals.append(f"the recorded run differs from the registry's ({entry.path.name}; recorded ≠ registry: "
                            f"{'; '.join(diff[:5])})")  # fmt: skip
    commit, dirty = result.code.get("git_commit"), result.code.get("git_dirty")
    if not commit:
        refusals.append("code.git_commit is missing: the code that made it is unknown")
    elif not provenance.history_available():
        notes.append("no full git history here (not a git checkout, or a shallow clone): code version not checked")
    elif not provenance.commit_known(commit):
        refusals.append(f"commit {commit[:10]} is not in this repository's history (fetch it, or it is another fork's)")
    else:
        try:  # parsed, never imported: the recorded class_path and commit are checked for their form first
            changed = provenance.model_changes(str(result.config.get("model", {}).get("class_path")), commit)
        except ValueError as error:
            changed, refusals = [], [*refusals, str(error)]
        if changed:
            refusals.append(f"the code the entry runs changed since {commit[:10]}: {', '.join(changed[:8])}"
                            + (f" and {len(changed) - 8} more" if len(changed) > 8 else ""))  # fmt: skip
        harness = provenance.changed_since(commit, provenance.HARNESS_CODE)
        if harness:
            notes.append(f"harness code changed since {commit[:10]} (may move numbers): {', '.join(harness)}")
    if dirty:
        refusals.append("made from a tree with uncommitted changes (code.git_dirty): the code that made it is unknown")
    elif dirty is None and commit:
        source = result.code.get("commit_from", "recorded")
        notes.append(f"commit {commit[:10]} was {source} without a clean-tree check")
    layout = result.distributed
    if layout is not None and layout.num_nodes > 1:
        refusals.append(f"made on {layout.num_nodes} nodes: verify re-runs on this machine only; re-run it with the "
                        "launcher it used (README, Scale out) and `milestones compare` the two results")  # fmt: skip
    recorded_accel = result.environment.get("accelerator", "cpu")
    if layout is not None and recorded_accel == "gpu" and torch.cuda.device_count() < layout.devices_per_node:
        refusals.append(f"made on {layout.devices_per_node} GPUs and this machine has {torch.cuda.device_count()}: "
                        "re-run it where there are as many (a DDP run re-runs with its own layout)")  # fmt: skip
    if accelerator is None and recorded_accel == "gpu" and resolve_accelerator("auto") != "gpu":
        refusals.append("recorded on a GPU and this machine has none: add --accelerator cpu to compare within the "
                        "tolerance instead of exactly")  # fmt: skip
    return refusals, notes


def rerun_options(result: Result, opts: VerifyOptions) -> BenchOptions:
    recorded = [s.seed for s in result.seeds]
    seeds = opts.seeds if opts.seeds is not None else recorded
    extra = sorted(set(seeds) - set(recorded))
    if extra:
        raise BenchError(f"--seeds {extra} were not in the result (its seeds: {recorded})")
    accelerator = resolve_accelerator(opts.accelerator or result.environment.get("accelerator", "cpu"))
    threads = result.environment.get("torch_threads") if accelerator == "cpu" else None
    layout = result.distributed  # a DDP run re-runs as one: its processes on this machine (Lightning starts them)
    if layout is not None:
        threads = None  # Lightning gives each process its share of the cores, as it did; the ranks record it
    output = paths.output_dir(opts.output_dir)
    return BenchOptions(
        task=result.task,
        seeds=seeds,
        precision=result.precision,
        accelerator=accelerator,
        data_dir=opts.data_dir,
        output_dir=str(output / "verify"),
        results_dir=str(output / "verify-results"),
        wandb=opts.wandb,
        deterministic=result.deterministic,
        threads=threads,
        download=opts.download,
        progress=opts.progress,
        devices=layout.devices_per_node if layout else 1,
        strategy=layout.strategy if layout and layout.strategy in ("ddp", "fsdp") else "auto",
    )


def seeds_equal(a: SeedResult, b: SeedResult) -> bool:
    return a.status == b.status and a.metrics == b.metrics and a.selected_epoch == b.selected_epoch


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


def comparison(recorded: Result, rerun: Result) -> tuple[bool, str, str, list[str]]:
    """(holds, mode, what the verdict rests on, report lines): without drift, exact per-seed equality; otherwise the
    re-run's mean within stats.verify_tolerance(same_seeds=True) of the recorded mean over the same seeds (never all
    the recorded ones)."""
    metric = recorded.metric
    by_seed = {s.seed: s for s in recorded.seeds}
    moved = drift(recorded.environment, rerun.environment)
    exact = not moved and recorded.deterministic and rerun.deterministic
    lines = [f"{'seed':>6}  {'recorded ' + metric:>18}  {'re-run ' + metric:>18}  {'Δ':>10}  {'status':<16}match"]
    all_equal = True
    for new in rerun.seeds:
        old = by_seed[new.seed]
        a, b = old.metrics.get(metric), new.metrics.get(metric)
        delta = b - a if a is not None and b is not None else None
        equal = seeds_equal(old, new)
        all_equal &= equal
        status = old.status if old.status == new.status else f"{old.status}→{new.status}"
        mark = ("yes" if equal else "NO") if exact else ("=" if equal else "≈")
        lines.append(f"{new.seed:>6}  {_num(a):>18}  {_num(b):>18}  {_num(delta):>10}  {status:<16}{mark}")
    seeds = [s.seed for s in rerun.seeds]
    same = recorded.model_copy(update={"seeds": [by_seed[seed] for seed in seeds]})
    old_values, new_values = same.metric_values(), rerun.metric_values()
    old_mean = statistics.fmean(old_values) if old_values else None
    new_mean = statistics.fmean(new_values) if new_values else None
    delta = new_mean - old_mean if old_values and new_values else None
    lines.append(f"{'mean':>6}  {_num(old_mean):>18}  {_num(new_mean):>18}  {_num(delta):>10}  over seeds {seeds}")
    if moved:
        lines.append("environment drift (recorded → here): "
                     + "; ".join(f"{name} {old} → {new}" for name, old, new in moved))  # fmt: skip
    if exact:
        basis = f"same hardware and software, deterministic: every test metric, status and epoch of seeds {seeds} equal"
        return all_equal, "exact", basis, lines
    if len(old_values) != len(seeds) or len(new_values) != len(seeds):
        return False, "within tolerance", f"a seed of {seeds} failed on one side: no mean to compare", lines
    tol, why = verify_tolerance(recorded.metric_values(), len(seeds), same_seeds=True)
    lines.append(f"tolerance on the mean: {why}")
    basis = (f"the re-run's mean {metric} over seeds {seeds} within ±{tol:.4g} of the recorded mean over the same "
             f"seeds (|Δ| {abs(new_mean - old_mean):.4g})")  # fmt: skip
    return abs(new_mean - old_mean) <= tol, "within tolerance", basis, lines


def verify(path: Path | str, opts: VerifyOptions) -> int:
    if not first_process():  # the other processes of a DDP re-run start this same command: rank 0 speaks
        with contextlib.redirect_stdout(open(os.devnull, "w")):
            return _verify(Path(path), opts)
    return _verify(Path(path), opts)


def _verify(path: Path, opts: VerifyOptions) -> int:
    result = read_result(path)
    registered = gate(result, path)  # before anything else looks at what the file names
    refusals, notes = preflight(result, opts.accelerator)
    commit = str(result.code.get("git_commit"))[:10]
    print(f"verify {path}: {result.entry} on {result.task}, seeds {[s.seed for s in result.seeds]}, "
          f"{result.precision}, recorded on {result.environment.get('device')} at {commit}", flush=True)  # fmt: skip
    for note in notes:
        print(f"  note: {note}")
    for reason in refusals:
        print(f"  {'RUNNING ANYWAY despite' if opts.run_anyway else 'refused'}: {reason}")
    if refusals and not opts.run_anyway:
        print("verify refused (add --run-anyway to re-run it nevertheless; the verdict will say so)")
        return 2
    options = rerun_options(result, opts)
    minutes = sum(s.wall_time_s for s in result.seeds if s.seed in options.seeds) / 60
    if opts.skip_over_minutes is not None and minutes > opts.skip_over_minutes:
        print(f"verdict: SKIPPED — the chosen seeds took {minutes:.0f} min where recorded (limit "
              f"{opts.skip_over_minutes:g}); run it without --skip-over-minutes")  # fmt: skip
        return 0
    entry = entry_from_resolved(result.config, path, registered)
    rerun, rerun_path = run_benchmark(entry, options)
    holds, mode, basis, lines = comparison(result, rerun)
    print(f"\nrecorded: {path}\nre-run:   {rerun_path} ({environment(options.accelerator)['device']})")
    print("\n".join(lines))
    forced = " — RUN ANYWAY: " + "; ".join(refusals) if refusals else ""
    print(f"\nverdict: {'MATCH' if holds else 'MISMATCH'} ({mode}), resting on {basis}{forced}")
    return 0 if holds else 1
