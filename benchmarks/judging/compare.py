"""``milestones compare <entry-or-result> ...``: results side by side, one column each, from the result files.

An argument is a result file, or an entry name (all of its committed results; ``--task`` narrows them). The first
column is the reference: every other column gets a one-sided Welch t-test p-value for "better than the first" when
both have at least two seeds. Below the table, the recorded environment of each result is compared with this machine's
(environment.DRIFT_FIELDS), so a reader sees why numbers could move.

``--wandb`` adds the W&B runs that each result file names (one per seed): their state, test metrics from the run
summary and URL, fetched through the W&B public API. That needs W&B online; offline runs are uploaded first with
``wandb sync runs/wandb/wandb/offline-run-*``, which keeps their ids, so the ids in the result files find them.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.core import paths
from benchmarks.core.environment import drift, environment, hardware_label
from benchmarks.core.results import Result, find_results, read_result
from benchmarks.core.stats import median_range, welch_p_better
from benchmarks.running.harness import BenchError, resolve_wandb
from benchmarks.running.registry import get_entry, review


def resolve_targets(targets: list[str], task: str | None = None, results_dir=None) -> list[tuple[Path, Result]]:
    """Result files named directly, or every result of a named entry (on ``task`` when given), in argument order."""
    results_dir = Path(results_dir) if results_dir else paths.RESULTS_DIR
    chosen = []
    for target in targets:
        if target.endswith(".json") or os.sep in target:
            chosen.append(Path(target))
            continue
        get_entry(target)  # an unknown name is an error listing close matches
        found = [p for p in find_results(results_dir) if p.parent.name == target]
        found = [p for p in found if task is None or p.parent.parent.name == task]
        if not found:
            where = f" on task {task}" if task else ""
            raise BenchError(f"entry '{target}' has no result files{where} in {results_dir}; "
                             f"run `milestones bench {target}`")  # fmt: skip
        chosen += found
    return [(path, read_result(path)) for path in chosen]


def _packages(result: Result) -> dict:
    """The recorded package versions; the schema makes ``packages`` a mapping, and anything else shows as none."""
    packages = result.environment.get("packages")
    return packages if isinstance(packages, dict) else {}


def _ttt(result: Result) -> str:
    summary = median_range([s.time_to_target_s for s in result.seeds if s.time_to_target_s is not None])
    reached = sum(s.time_to_target_s is not None for s in result.seeds)
    if summary is None:
        return f"— (0/{len(result.seeds)})"
    median, low, high = summary
    return f"{median:.1f} s [{low:.1f}–{high:.1f}] ({reached}/{len(result.seeds)})"


def table(results: list[tuple[Path, Result]]) -> list[str]:
    """Field rows × result columns."""
    reference = results[0][1].metric_values()
    rows: dict[str, list[str]] = {}

    def add(field: str, values: list[str]) -> None:
        rows[field] = values

    add("file", [path.name for path, _ in results])
    add("entry / task", [f"{r.entry} / {r.task}" for _, r in results])
    add("division", [review(r.entry, r.config | {"division": r.division})["division"] for _, r in results])
    add("status", [r.status + (" (smoke)" if r.smoke else "") for _, r in results])
    add("metric", [f"{r.metric} ({'lower' if r.direction == 'min' else 'higher'} is better)" for _, r in results])
    add("mean ± std (n)", [f"{a.mean:.3f} ± {a.std:.3f} ({a.n})" if (a := r.aggregate) else "—" for _, r in results])
    add("95 % CI", [f"[{a.ci95[0]:.3f}, {a.ci95[1]:.3f}]" if (a := r.aggregate) else "—" for _, r in results])
    p_values = ["reference"]
    for _, r in results[1:]:
        p = welch_p_better(r.metric_values(), reference, r.direction)
        p_values.append("— (n < 2)" if p is None else f"{p:.3g}")
    add("p (better than 1st)", p_values)
    add("per-seed", [", ".join(f"{v:.3f}" for v in r.metric_values()) for _, r in results])
    add("time-to-target", [_ttt(r) for _, r in results])
    add("throughput", [f"{r.samples_per_s:,.0f} samples/s" if r.samples_per_s else "—" for _, r in results])
    add("train time / seed", [f"{sum(s.train_time_s for s in r.seeds) / len(r.seeds):.1f} s" for _, r in results])
    add("hardware", [hardware_label(r.environment, r.world_size) for _, r in results])
    add("precision", [r.precision + ("" if r.deterministic else ", non-deterministic") for _, r in results])
    add("peak memory", [f"{r.peak_memory_mb:,.0f} MB" for _, r in results])
    for name in ("torch", "lightning", "torchmetrics"):
        add(name, [str(_packages(r).get(name)) for _, r in results])
    add("CUDA", [str(r.environment.get("cuda") or "—") for _, r in results])
    add("python", [str(r.environment.get("python")) for _, r in results])
    add("config hash", [r.config_hash[:12] for _, r in results])
    add("commit", [str(r.code.get("git_commit"))[:10] for _, r in results])
    add("date", [r.created[:10] for _, r in results])
    add("W&B group", [str(r.wandb.get("group")) for _, r in results])

    label_width = max(map(len, rows))
    widths = [max(len(rows[f][i]) for f in rows) for i in range(len(results))]
    header = " " * label_width + "  " + "  ".join(f"[{i + 1}]".ljust(w) for i, w in enumerate(widths))
    lines = [header]
    for field, values in rows.items():
        lines.append(field.ljust(label_width) + "  " + "  ".join(v.ljust(w) for v, w in zip(values, widths)))
    return lines


def drift_lines(results: list[tuple[Path, Result]]) -> list[str]:
    """Per result, which recorded versions and hardware differ from this machine."""
    here = {accel: environment(accel) for accel in ("cpu", "gpu")}
    lines = []
    for i, (_, r) in enumerate(results, 1):
        moved = drift(r.environment, here[r.environment.get("accelerator", "cpu")])
        text = "; ".join(f"{name} {old} → {new}" for name, old, new in moved) if moved else "none"
        lines.append(f"[{i}] differs from this machine (recorded → here): {text}")
    return lines


def wandb_lines(results: list[tuple[Path, Result]], api=None) -> list[str]:
    """The W&B run of every seed: state, test metrics from its summary, URL. ``api``: a wandb.Api (or a fake)."""
    if api is None:
        if resolve_wandb("auto") != "online":
            raise BenchError("--wandb needs W&B online (`wandb login` or WANDB_API_KEY); upload offline runs with "
                             "`wandb sync runs/wandb/wandb/offline-run-*` (it keeps the ids results name)")  # fmt: skip
        import wandb

        api = wandb.Api()
    lines = []
    for i, (_, r) in enumerate(results, 1):
        for seed in r.seeds:
            if not seed.wandb_run:
                lines.append(f"[{i}] seed {seed.seed}: no W&B run recorded (run with --wandb off)")
                continue
            try:
                run = api.run(seed.wandb_run)
            except Exception as error:  # the public API raises CommError/ValueError for unknown or unsynced runs
                lines.append(f"[{i}] seed {seed.seed}: {seed.wandb_run} not found on W&B ({type(error).__name__}); "
                             "if it was an offline run, `wandb sync` it first")  # fmt: skip
                continue
            summary = {k: v for k, v in dict(run.summary).items() if k.startswith("test/")}
            shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(summary.items()) if isinstance(v, (int, float)))
            lines.append(f"[{i}] seed {seed.seed}: {seed.wandb_run} ({run.state}) {shown} {run.url}")
    return lines


def compare(targets: list[str], task: str | None = None, use_wandb: bool = False, results_dir=None, api=None) -> str:
    results = resolve_targets(targets, task, results_dir)
    lines = table(results) + [""] + drift_lines(results)
    if use_wandb:
        lines += ["", "W&B runs:"] + wandb_lines(results, api)
    return "\n".join(lines)
