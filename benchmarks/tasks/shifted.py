"""MNIST with shifted and elastically deformed test digits: tolerance to shift and deformation (issue 20).

The claim under test is the Neocognitron's (Fukushima 1980): recognition "unaffected by shift in position" and
tolerant of deformation. Training and validation are exactly those of ``mnist`` (55,000 / 5,000, split seed 0, the
best validation error selects the checkpoint); the test is the 10,000 MNIST test digits served five times:

- ``shift0``, ``shift2``, ``shift4``, ``shift6``: every digit moved by exactly s pixels, s = 0, 2, 4, 6. Each digit's
  offset (dx, dy) is drawn uniformly from the 8·s integer offsets with max(|dx|, |dy|) = s (the square ring of
  chessboard radius s: the four axis directions, the four diagonals and everything between), with a fixed seed.
  The frame stays 28×28, vacated pixels are 0 and what leaves the frame is clipped. Why not a larger canvas: every
  model would then see another input shape than on ``mnist`` (the MLP's 784 inputs, LeNet-5's 32×32 padding), so the
  rows would not be the same networks as their ``mnist`` rows. MNIST centres each digit's centre of mass in the 28×28
  frame (its 20×20 box inside), so large shifts clip some strokes: of the test set's ink (sum of grey values),
  ``clipped_ink`` measured 0.07 % lost at 2 px, 1.0 % at 4 px and 5.6 % at 6 px.
- ``elastic``: Simard, Steinkraus & Platt (2003), §2: per digit a displacement field of independent U(−1, 1) values
  per pixel and axis, convolved with a Gaussian of σ = 4 px (normalised, truncated at 4σ, zero outside the frame),
  scaled by α = 34 (the paper's values for MNIST), and the image resampled at (x + Δx, y + Δy) by bilinear
  interpolation (zero outside), in float64, rounded back to bytes. Fixed seed.

The ranked number is ``shift_error``: the mean test error over the four shifts (0, 2, 4, 6 px), i.e. the area under
the error-vs-shift curve per pixel of shift. It ranks a model by accuracy and tolerance together; the error at the
largest shift alone would rank mostly by how a model handles the 2 px of clipping at 6 px. Each shift's error and the
deformed error are recorded beside it (``extra_metrics``), and the leaderboard's plot for the task draws error against
shift for every row (``plot_png``).

The transformed sets are a pure function of the MNIST test files and the parameters below (code): they are part of
the task's declared identity (``TRANSFORM``) beside the four files' md5s.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from benchmarks.tasks.base import DataIdentity, Metric, Task
from benchmarks.tasks.interfaces import CLASS_SCORES
from benchmarks.tasks.mnist import PROTOCOL as MNIST_PROTOCOL
from benchmarks.tasks.mnist import MNISTData

SHIFTS = (0, 2, 4, 6)  # pixels (chessboard distance)
SHIFT_SEED = 20  # the seed of each digit's direction (issue 20); shift s uses SHIFT_SEED + s
ELASTIC_ALPHA = 34.0  # Simard et al. 2003's α for MNIST (pixels)
ELASTIC_SIGMA = 4.0  # Simard et al. 2003's σ for MNIST (pixels)
ELASTIC_SEED = 2003
VARIANTS = tuple(f"shift{s}" for s in SHIFTS) + ("elastic",)
TRANSFORM = (
    f"test sets v1: shifts {','.join(map(str, SHIFTS))} px, offset uniform on the ring max(|dx|,|dy|)=s "
    f"(torch.Generator seed {SHIFT_SEED}+s, zero fill, clipped to 28x28); elastic Simard 2003 alpha={ELASTIC_ALPHA:g} "
    f"sigma={ELASTIC_SIGMA:g} (U(-1,1) field, Gaussian truncated at 4 sigma, zero padding, bilinear, float64, "
    f"rounded to uint8, torch.Generator seed {ELASTIC_SEED})"
)


# --- the transformations -------------------------------------------------------------------------------------------
def ring_offsets(s: int) -> torch.Tensor:
    """The 8·s integer offsets (dx, dy) with max(|dx|, |dy|) = s, in a fixed order; [(0, 0)] for s = 0."""
    if s == 0:
        return torch.zeros(1, 2, dtype=torch.long)
    span = torch.arange(-s, s + 1)
    grid = torch.stack(torch.meshgrid(span, span, indexing="xy"), -1).reshape(-1, 2)  # (4s²+4s+1, 2) as (dx, dy)
    return grid[grid.abs().amax(1) == s]  # (8s, 2)


def draw_offsets(n: int, s: int, seed: int = SHIFT_SEED) -> torch.Tensor:
    """Each of ``n`` digits' offset (dx, dy) for a shift of ``s`` px: uniform over ``ring_offsets(s)``, seeded."""
    ring = ring_offsets(s)
    pick = torch.randint(len(ring), (n,), generator=torch.Generator().manual_seed(seed + s))
    return ring[pick]  # (n, 2)


def shift_images(images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Move each image (N, C, H, W) by its (dx, dy) — right and down are positive — filling with 0 and clipping."""
    n, _, h, w = images.shape
    pad = int(offsets.abs().max()) if n else 0
    padded = F.pad(images, (pad, pad, pad, pad))  # zeros around: what enters the frame is blank
    out = torch.empty_like(images)
    for dx, dy in offsets.unique(dim=0).tolist():
        chosen = ((offsets[:, 0] == dx) & (offsets[:, 1] == dy)).nonzero().squeeze(1)
        # out[y, x] = in[y − dy, x − dx]: the window of the padded image that starts dy, dx before the original
        out[chosen] = padded[chosen, :, pad - dy : pad - dy + h, pad - dx : pad - dx + w]
    return out


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian of standard deviation ``sigma``, truncated at 4σ (float64)."""
    radius = int(4 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def elastic_deform(
    images: torch.Tensor, alpha: float = ELASTIC_ALPHA, sigma: float = ELASTIC_SIGMA, seed: int = ELASTIC_SEED
) -> torch.Tensor:
    """Simard et al. (2003) §2 elastic distortion of uint8 images (N, 1, H, W), deterministic for a seed."""
    n, c, h, w = images.shape
    generator = torch.Generator().manual_seed(seed)
    field = torch.rand((n, 2, h, w), generator=generator, dtype=torch.float64) * 2 - 1  # (N, 2, H, W) U(−1, 1)
    kernel = gaussian_kernel(sigma)
    k = len(kernel)
    smooth = field.reshape(n * 2, 1, h, w)  # a separable Gaussian: along x, then along y, zero outside the frame
    smooth = F.conv2d(smooth, kernel.view(1, 1, 1, k), padding=(0, k // 2))
    smooth = F.conv2d(smooth, kernel.view(1, 1, k, 1), padding=(k // 2, 0))
    dx, dy = (alpha * smooth.reshape(n, 2, h, w)).unbind(1)  # (N, H, W) displacements in pixels
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    # grid_sample's coordinates: −1 and +1 are the centres of the first and last pixels (align_corners=True)
    grid = torch.stack([2 * (xs + dx) / (w - 1) - 1, 2 * (ys + dy) / (h - 1) - 1], dim=-1)  # (N, H, W, 2)
    warped = F.grid_sample(images.double(), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return warped.round().clamp(0, 255).to(torch.uint8)


def make_test_sets(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The task's test images (N, 1, 28, 28) uint8 → {variant: transformed images}, in ``VARIANTS``' order."""
    variants = {f"shift{s}": shift_images(images, draw_offsets(len(images), s)) for s in SHIFTS}
    variants["elastic"] = elastic_deform(images)
    return variants


def clipped_ink(images: torch.Tensor, s: int) -> float:
    """The fraction of the test set's ink (sum of grey values) that a shift of ``s`` px moves out of the frame."""
    moved = shift_images(images, draw_offsets(len(images), s))
    return 1.0 - moved.double().sum().item() / images.double().sum().item()


# --- the data ------------------------------------------------------------------------------------------------------
class ShiftedMNISTData(MNISTData):
    """MNIST's files, split and loaders; the test loader serves ``test_split``: "test" (the plain test set) or one of
    ``VARIANTS``, built once from the test images in ``setup``."""

    test_split = "test"

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if "elastic" not in self.splits:
            images, labels = self.splits["test"]
            for name, transformed in make_test_sets(images.cpu()).items():
                self.splits[name] = (transformed.to(images.device), labels)

    def test_dataloader(self):
        return self._batches(self.test_split, train=False)

    @classmethod
    def declared_identity(cls) -> DataIdentity:
        files = super().declared_identity().required
        return DataIdentity(required={**files, "mnist-shifted/test-transform": TRANSFORM})

    def identity(self) -> dict[str, str]:
        return super().identity() | {"mnist-shifted/test-transform": TRANSFORM}


# --- the task ------------------------------------------------------------------------------------------------------
SHIFT_ERROR = Metric("shift_error", "min", 0.0, 100.0, unit="%")
EXTRA = tuple(f"error_{name}" for name in VARIANTS)


@dataclass(frozen=True)
class ShiftedTask(Task):
    """``mnist``'s training and selection; the test is run once per test set (``VARIANTS``) through the model's own
    test step (its ``test/error``), and ``shift_error`` is the mean over the shifts."""

    @property
    def val_key(self) -> str:
        return "val/error"  # selection and time-to-target as on mnist: the unshifted validation error

    def evaluate(self, trainer: L.Trainer, model: L.LightningModule, datamodule, ckpt_path, artifacts: Path):
        metrics = {}
        for name in VARIANTS:
            datamodule.test_split = name
            tested = super().evaluate(trainer, model, datamodule, ckpt_path, artifacts)
            metrics[f"error_{name}"] = tested["error"]
        datamodule.test_split = "test"
        metrics["shift_error"] = sum(metrics[f"error_shift{s}"] for s in SHIFTS) / len(SHIFTS)
        metrics["error"] = metrics["error_shift0"]  # the plain MNIST test error (shift 0 is the untouched set)
        for logger in trainer.loggers:
            logger.log_metrics({f"test/{key}": value for key, value in metrics.items()}, step=trainer.global_step)
            logger.save()
        return metrics

    def plot_png(self, name: str, rows: list[dict], results: list, relative) -> bytes:
        """The task's leaderboard plot (``leaderboard.build`` calls it for a task that has one), as PNG bytes."""
        buffer = io.BytesIO()
        files = {relative(path): result for path, result in results}
        self.plot_figure(name, rows, files).savefig(buffer, format="png", metadata={"Software": None})
        return buffer.getvalue()

    def plot_figure(self, name: str, rows: list[dict], files: dict):
        """Test error against shift, one line per row (mean ± std over its ok seeds; the best 12 rows), and the
        elastically deformed set's error as a separate point on the right. ``files``: a row's file → its result."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 5.5), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        positions = [*SHIFTS, SHIFTS[-1] + 2.5]  # the deformed set stands apart from the shift axis
        lows = []
        for row in rows[:12]:
            result = files.get(row["file"])
            ok = [seed for seed in result.seeds if seed.status == "ok"] if result is not None else []
            if not ok:
                continue
            stats = []
            for key in EXTRA:
                values = [seed.metrics[key] for seed in ok if key in seed.metrics]
                mean = sum(values) / len(values) if values else math.nan
                spread = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0
                stats.append((mean, spread))
            label = f"{row['entry']} (n={len(ok)})".replace("$", r"\$") + (" provisional" if row["provisional"] else "")
            means, spreads = zip(*stats)
            line = ax.errorbar(SHIFTS, means[: len(SHIFTS)], yerr=spreads[: len(SHIFTS)], marker="o", capsize=3,
                               label=label)  # fmt: skip
            ax.errorbar(positions[-1:], means[-1:], yerr=spreads[-1:], marker="s", capsize=3,
                        color=line[0].get_color())  # fmt: skip
            lows += [m for m in means if m > 0]
        if lows and max(lows) / min(lows) > 10:
            ax.set_yscale("log")
        ax.set_xticks(positions, [f"{s} px" for s in SHIFTS] + [f"elastic\nα={ELASTIC_ALPHA:g}, σ={ELASTIC_SIGMA:g}"])
        ax.axvline((SHIFTS[-1] + positions[-1]) / 2, color="grey", linewidth=0.5)
        ax.set_xlabel("shift of every test digit (chessboard distance, direction drawn per digit)")
        ax.set_ylabel("test error (%)")
        ax.set_title(f"{name}: test error against shift (mean ± std over seeds); ranked by the mean over the shifts")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        return fig


TASKS = [
    ShiftedTask(
        name="mnist-shifted",
        description="MNIST test digits shifted by 0, 2, 4, 6 px and elastically deformed (α 34, σ 4); trained as mnist",
        metric=SHIFT_ERROR,
        target=2.0,  # validation error (unshifted), for time-to-target, as on mnist
        min_seeds=3,
        interface=CLASS_SCORES,
        make_datamodule=ShiftedMNISTData,
        model_inputs={"num_classes": 10, "input_shape": (1, 28, 28)},
        protocol=MNIST_PROTOCOL.replace("test error %", "test error % at shifts 0/2/4/6 px (mean ranked) + elastic"),
        extra_metrics=EXTRA,
    )
]
