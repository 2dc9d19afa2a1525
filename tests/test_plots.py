"""The leaderboard's plots: every bar, reference marker and label on its own row, provisional rows marked, the axis
named by the split the task reports, the real data's value of the ranked measure drawn where a task records one."""

from __future__ import annotations

import pytest

from benchmarks.judging import leaderboard
from benchmarks.tasks import all_tasks


def row(entry: str, mean: float, paper: float | None = None, provisional: bool = False, metric: str = "error") -> dict:
    return {"entry": entry, "precision": "32-true", "hardware": "CPU: AMD EPYC (2 cores)", "mean": mean, "std": 0.1,
            "paper_value": paper, "paper_task": None, "paper_metric": None, "provisional": provisional,
            "metric": metric}  # fmt: skip


def placed(fig) -> tuple[dict, dict, dict]:
    """y → bar length, y → reference marker x, y → tick label, read from the drawn Axes."""
    ax = fig.axes[0]
    bars = {round(p.get_y() + p.get_height() / 2, 6): p.get_width() for p in ax.patches}
    markers = {round(y, 6): x for c in ax.collections if c.get_offsets().size for x, y in c.get_offsets()}
    ticks = {round(t, 6): label.get_text() for t, label in zip(ax.get_yticks(), ax.get_yticklabels())}
    return bars, markers, ticks


def test_rows_with_the_same_label_keep_their_own_bar_and_reference():
    # two perceptron results on the same precision and hardware: the same label, two rows (issue 14)
    rows = [row("lenet5", 1.1, paper=0.95), row("perceptron", 4.0, paper=12.0), row("perceptron", 5.0),
            row("adaline", 15.0, paper=14.0)]  # fmt: skip
    bars, markers, ticks = placed(leaderboard.plot_figure("mnist", rows))
    assert len(bars) == len(rows), "every row is its own bar, even under a label another row has"
    for rank, r in enumerate(rows):
        y = len(rows) - 1 - rank  # rank 1 on top
        assert bars[y] == pytest.approx(r["mean"]) and ticks[y].startswith(r["entry"] + " (")
        assert markers.get(y) == (pytest.approx(r["paper_value"]) if r["paper_value"] is not None else None)


def test_provisional_rows_are_hatched_and_labelled():
    rows = [row("lenet5", 1.1), row("mlp", 3.0, provisional=True)]
    fig = leaderboard.plot_figure("mnist", rows)
    bars = {round(p.get_y() + p.get_height() / 2): p for p in fig.axes[0].patches}
    _, _, ticks = placed(fig)
    assert bars[0].get_hatch() and not bars[1].get_hatch()
    assert ticks[0].endswith("(provisional)") and "provisional" not in ticks[1]
    assert any("provisional" in t.get_text() for t in fig.legends[0].get_texts())


def test_title_says_reference_only_when_a_marker_is_drawn_and_axis_names_the_reported_split():
    ax = leaderboard.plot_figure("mnist", [row("lenet5", 1.1)]).axes[0]
    assert ax.get_title() == "mnist: test error" and ax.get_xlabel() == "test error (%)"
    ax = leaderboard.plot_figure("mnist", [row("lenet5", 1.1, paper=0.95)]).axes[0]
    assert ax.get_title() == "mnist: test error, reproduced vs reference"
    assert all_tasks()["shakespeare-char"].reported_split == "validation"  # its test_dataloader is the validation one
    ax = leaderboard.plot_figure("shakespeare-char", [row("gpt-char", 1.9, metric="loss")]).axes[0]
    assert ax.get_xlabel() == "validation loss (nats/char)" and ax.get_title() == "shakespeare-char: validation loss"


def test_generative_plots_draw_the_real_data_value_of_the_ranked_measure():
    ax = leaderboard.plot_figure("mnist-gen", [row("gan", 280.0, metric="fd")], real=2.8).axes[0]
    (line,) = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert set(line.get_xdata()) == {2.8} and ax.get_xlim()[0] < 2.8  # on the axis, not clipped
    results = leaderboard.load_results()  # the committed results: fd_real for fd, nothing where no *_real is recorded
    ranked, _ = leaderboard.collect(results)
    tasks = all_tasks()
    real = leaderboard.real_reference(ranked["mnist-gen"], results, tasks["mnist-gen"])
    assert real is not None and f"fd_real {real:.4g}" in leaderboard.references(ranked["mnist-gen"], results,
                                                                                 tasks["mnist-gen"])  # fmt: skip
    assert leaderboard.real_reference(ranked["mnist"], results, tasks["mnist"]) is None


def test_an_agents_task_plots_its_learning_curve_mean_and_range_of_the_seeds():
    """A played task (tasks/interaction.py) draws the validation metric over the units gathered: one line per row at
    the seeds' mean, x = (epoch + 1) × steps_per_epoch, and the band of their range."""
    from types import SimpleNamespace

    from benchmarks.judging import curves

    task = all_tasks()["cartpole"]
    seeds = [SimpleNamespace(val_history=[{"epoch": e, "val/return": v} for e, v in enumerate(values)])
             for values in ([10.0, 200.0, 500.0], [30.0, 100.0, 400.0])]  # fmt: skip
    result = SimpleNamespace(seeds=seeds, config={"trainer": {"max_epochs": 3},
                                                  "data": {"init_args": {"steps_per_epoch": 1000}}})  # fmt: skip
    xs, means, lows, highs = curves.curve_points(result, task)
    assert xs == [1000, 2000, 3000] and means == [20.0, 150.0, 450.0] and lows == [10, 100, 400]
    rows = [dict(row("dqn-cartpole", 450.0, paper=488.69, metric="return"), n=2, paper_kind="implementation",
                 file="r.json")]  # fmt: skip
    ax = curves.curve_figure("cartpole", rows, {"r.json": result}, task).axes[0]
    line = ax.get_lines()[0]
    assert list(line.get_xdata()) == xs and list(line.get_ydata()) == means
    assert {488.69, task.target} <= {round(float(ln.get_ydata()[0]), 2) for ln in ax.get_lines()[1:]}
    assert "validation return" in ax.get_ylabel() and "environment steps" in ax.get_xlabel()
