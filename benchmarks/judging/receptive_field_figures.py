"""The pictures beside a receptive-field probe: the first layer's filters (trained beside the control), and the
tuning measures (aligned orientation tuning curves, OSI and F1/F0 distributions, preferred orientations)."""

from __future__ import annotations

import io
import math

import torch

TRAINED, CONTROL, POOLED = "#4c72b0", "#8c8c8c", "#dd8452"


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def mosaic(weights: torch.Tensor, columns: int = 16) -> torch.Tensor:
    """(N, C, k, k) filters → one (rows·(k+1), columns·(k+1), 3) image; each filter scaled to its own ±max (grey 0.5
    is zero), colour when C = 3, grey otherwise (the mean over input channels)."""
    n, channels, k, _ = weights.shape
    w = weights if channels == 3 else weights.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    scale = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    w = 0.5 + 0.5 * w / scale  # (N, 3, k, k) in [0, 1]
    columns = min(columns, n)
    rows = math.ceil(n / columns)
    canvas = torch.ones(rows * (k + 1), columns * (k + 1), 3)
    for i in range(n):
        r, c = divmod(i, columns)
        canvas[r * (k + 1) : r * (k + 1) + k, c * (k + 1) : c * (k + 1) + k] = w[i].permute(1, 2, 0)
    return canvas


def filters_png(record: dict, trained: torch.Tensor | None, control: torch.Tensor | None) -> bytes:
    from matplotlib.figure import Figure

    shown = next((w for w in (trained, control) if w is not None), None)
    n = shown.shape[0] if shown is not None else 1
    rows = math.ceil(n / min(16, n))
    fig = Figure(figsize=(10, 1.0 + 2 * (0.5 + 10 * rows / min(16, n))), dpi=100, layout="constrained")
    seed = record["seeds"][0]["seed"]
    name = f"{record['entry']} on {record['task']}"
    panels = [(trained, f"trained (seed {seed})"), (control, f"untrained control (seed {seed})")]
    for i, (weights, title) in enumerate(panels):
        ax = fig.add_subplot(2, 1, i + 1)
        ax.set_axis_off()
        if weights is None:
            ax.text(0.5, 0.5, "the first stage is not a convolution: no filters to draw", ha="center")
            continue
        ax.imshow(mosaic(weights.float()).numpy(), interpolation="nearest")
        ax.set_title(f"{title}: {weights.shape[0]} first-layer filters {tuple(weights.shape[1:])}, each scaled to "
                     "its own ±max (grey = 0)", fontsize=9)  # fmt: skip
    fig.suptitle(f"{name}: first-layer receptive fields", fontsize=11)
    return _png(fig)


def aligned(units: dict) -> list[list[float]]:
    """Each responsive unit's tuning curve, peak-normalised and rotated so its preferred orientation is in the middle
    (index O/2, i.e. 0° relative), closed at both ends (−90° … +90°)."""
    curves = []
    for responsive, curve, orientation in zip(units["responsive"], units["curve"], units["orientation"]):
        if not responsive:
            continue
        n = len(curve)
        peak = max(curve)
        shift = round(orientation / (180 / n)) - n // 2
        rolled = [curve[(i + shift) % n] / peak for i in range(n)]
        curves.append(rolled + rolled[:1])
    return curves


def tuning_png(record: dict) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 8), dpi=100, layout="constrained")
    axes = fig.subplots(2, 2)
    seeds = record["seeds"]
    n = record["stimuli"]["orientations"]
    xs = [-90 + 180 * i / n for i in range(n + 1)]

    ax = axes[0, 0]
    for side, colour in (("control", CONTROL), ("trained", TRAINED)):
        curves = [c for seed in seeds for c in aligned(seed[side]["units"]["s"])]
        for curve in curves:
            ax.plot(xs, curve, color=colour, alpha=0.15, linewidth=0.8)
        if curves:
            median = [sorted(column)[len(column) // 2] for column in zip(*curves)]
            ax.plot(xs, median, color=colour, linewidth=2.5, label=f"{side}: median of {len(curves)} units")
    ax.set(xlabel="grating orientation relative to the preferred (°)", ylabel="response / peak",
           title="S stage: orientation tuning at the preferred frequency")  # fmt: skip
    ax.legend(fontsize=8)

    def values(side: str, stage: str, key: str) -> list[float]:
        out = []
        for seed in seeds:
            units = seed[side]["units"][stage]
            if units is not None:
                out += [v for v, live in zip(units[key], units["responsive"]) if live]
        return out

    ax = axes[0, 1]
    bins = [i / 20 for i in range(21)]
    ax.hist([values("trained", "s", "osi"), values("control", "s", "osi")], bins=bins, color=[TRAINED, CONTROL],
            label=["trained", "untrained control"])  # fmt: skip
    ax.axvline(record["stimuli"]["selective_osi"], color="k", linestyle=":", label="selective: OSI ≥ 1/3")
    ax.set(xlabel="orientation selectivity index (pref − orth) / (pref + orth)", ylabel="units",
           title="S stage: orientation selectivity")  # fmt: skip
    ax.legend(fontsize=8)

    ax = axes[1, 0]
    groups = [("trained", "s", TRAINED, "trained S"), ("control", "s", CONTROL, "control S")]
    if seeds[0]["trained"]["units"]["c"] is not None:
        groups += [("trained", "c", POOLED, f"trained C ({seeds[0]['stages']['c']})")]
    bins = [i / 10 for i in range(21)]
    data = [values(side, stage, "f1_f0") for side, stage, _, _ in groups]
    ax.hist(data, bins=bins, color=[c for *_, c, _ in groups], label=[label for *_, label in groups])
    ax.axvline(1.0, color="k", linestyle=":", label="F1/F0 = 1 (simple above, complex below)")
    ax.set(xlabel="F1/F0 of the response to the preferred grating drifting through one cycle", ylabel="units",
           title="simple vs complex (Skottun et al. 1991)")  # fmt: skip
    ax.legend(fontsize=8)

    ax = axes[1, 1]
    step = 180 / n
    edges = [i * step - step / 2 for i in range(n + 1)]
    ax.hist([values("trained", "s", "orientation"), values("control", "s", "orientation")], bins=edges,
            color=[TRAINED, CONTROL], label=["trained", "untrained control"])  # fmt: skip
    ax.set(xlabel="preferred orientation (°; 0 = vertical bars)", ylabel="units",
           title="S stage: preferred orientations")  # fmt: skip
    ax.legend(fontsize=8)

    count = len(seeds)
    fig.suptitle(f"{record['entry']} on {record['task']}: gratings shown to the first layer ({count} seed"
                 f"{'s' * (count != 1)}, each beside its untrained control)", fontsize=11)  # fmt: skip
    return _png(fig)
