"""The plot of a task whose metric is played (an environment, a game): the validation metric over training, one line
per leaderboard row (the mean over its seeds, the band their range), against the units of interaction gathered
(environment steps, self-play games). The bar chart of the other tasks shows where a run ended; for an agent the
reader also needs how it got there: whether it was still improving, and how unstable it was between evaluations.

A task with ``curve_keys`` (epoch-level training metrics in each history row, e.g. ``train/error``) gets the same
plot with those drawn dashed beside the validation metric (solid), against its ``curve_unit`` (iterations): the
training/test error curves of He et al. 2015's Fig. 6, where the degradation problem shows as a deeper plain net's
higher training error."""

from __future__ import annotations

import io
import math
from pathlib import Path

CURVE_ROWS = 8  # the best rows drawn (more lines than this cannot be told apart); the table lists them all


def curve_points(result, task, key: str | None = None) -> tuple[list[float], list[float], list[float], list[float]]:
    """(units gathered, mean, min, max over seeds) of the validation metric (or ``key``, one of the task's
    ``curve_keys``) at each epoch the seeds share."""
    key = key or task.val_key
    per_epoch: dict[int, list[float]] = {}
    for seed in result.seeds:
        for row in seed.val_history:
            value = row.get(key)
            if value is not None and math.isfinite(value):
                per_epoch.setdefault(int(row["epoch"]), []).append(float(value))
    units = task.units_per_epoch(result.config)
    epochs = sorted(e for e, values in per_epoch.items() if len(values) == len(result.seeds))
    xs = [(e + 1) * units for e in epochs]
    means = [sum(per_epoch[e]) / len(per_epoch[e]) for e in epochs]
    return xs, means, [min(per_epoch[e]) for e in epochs], [max(per_epoch[e]) for e in epochs]


def curve_figure(name: str, rows: list[dict], results: dict[str, object], task):
    """``rows``: the task's leaderboard rows, best first; ``results``: each row's Result by its ``file``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    shown = rows[:CURVE_ROWS]
    extra = tuple(getattr(task, "curve_keys", ()))  # drawn dashed, in the row's colour
    for row in shown:
        xs, means, lows, highs = curve_points(results[row["file"]], task)
        if not xs:
            continue
        label = f"{row['entry']} ({row['precision']}, n={row['n']})".replace("$", r"\$")
        label += " (provisional)" * row["provisional"] + (f": {task.val_key}" if extra else "")
        (line,) = ax.plot(xs, means, marker="o", markersize=3, label=label)
        if len(results[row["file"]].seeds) > 1:
            ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.2, linewidth=0)
        for key in extra:
            kx, kmeans, klows, khighs = curve_points(results[row["file"]], task, key)
            if kx:
                ax.plot(kx, kmeans, linestyle="--", color=line.get_color(), label=f"{row['entry']}: {key}")
                if len(results[row["file"]].seeds) > 1:
                    ax.fill_between(kx, klows, khighs, color=line.get_color(), alpha=0.1, linewidth=0)
        if row["paper_value"] is not None and not row["paper_task"] and not row["paper_metric"]:
            ax.axhline(row["paper_value"], color=line.get_color(), linestyle=":", linewidth=1,
                       label=f"{row['entry']}: reference {row['paper_value']:g} ({row['paper_kind']})")  # fmt: skip
    ax.axhline(task.target, color="#55a868", linestyle=":" if extra else "--", linewidth=1,
               label=f"target {task.target:g}")  # fmt: skip
    unit = getattr(task, "curve_unit", None)
    ax.set_xlabel(unit or f"{task.make_datamodule.unit} gathered in training")
    metric = task.metric.name + (f" ({task.metric.unit})" if task.metric.unit else "")
    ax.set_ylabel(f"{'training (dashed) and ' * bool(extra)}validation {metric}")
    more = f" (the best {len(shown)} of {len(rows)} rows)" if len(rows) > len(shown) else ""
    what = f"validation {task.metric.name}" + (f" (solid), {', '.join(extra)} (dashed)" if extra else "")
    title = f"{name}: {what} over training; mean of the seeds, band = their range{more}"
    ax.set_title(title, **({"fontsize": 10} if extra else {}))  # the agents' plots keep the default size
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    return fig


def curve_png(name: str, rows: list[dict], results: list[tuple[Path, object]], task, relative) -> bytes:
    by_file = {relative(path): result for path, result in results}
    buffer = io.BytesIO()
    curve_figure(name, rows, by_file, task).savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
