"""Hubel & Wiesel's experiment, on a network: oriented gratings and bars, and the tuning measures physiologists use.

Stimuli fill the network's whole input, in the task's pixel scale [0, 1], grey (the same on every colour channel):

- sinusoidal gratings 0.5 + 0.5·cos(2π f (x cos θ + y sin θ) + φ) at ``ORIENTATIONS`` × ``FREQUENCIES`` × ``PHASES``
  (θ = 0°: vertical bars; f in cycles per input pixel; φ steps through one cycle, as a drifting grating does);
- bars: a light and a dark bar of half the preferred period on the mid-grey screen, at every orientation and at
  ``PHASES`` positions across one period (Hubel & Wiesel 1959 swept slits and bars across the receptive field);
- a blank mid-grey screen: its response is the unit's spontaneous rate.

A unit's response to a stimulus is its output at the centre of its map, minus its response to the blank, rectified
(a firing rate above the spontaneous one; a unit cannot fire below zero). From the responses r(f, θ, φ):

- preferred frequency and orientation: the (f, θ) whose best phase gives the largest response;
- tuning curve T(θ): the best-phase response at the preferred frequency;
- OSI = (T(θ_pref) − T(θ_pref + 90°)) / (T(θ_pref) + T(θ_pref + 90°)); a unit is *orientation selective* when
  OSI ≥ 1/3, i.e. it answers its preferred orientation at least twice as strongly as the orthogonal one;
- tuning width: the half-width at half-height of T(θ) around θ_pref (linear interpolation; 90° = never halves);
- F1/F0 over the phases of the preferred grating: the first-harmonic amplitude of the response over one drift cycle
  over its mean. Skottun et al. (1991, Vision Res. 31:1079) class a cell as *simple* when F1/F0 > 1 (its response
  follows the grating's phase) and *complex* otherwise (phase invariant). A half-wave rectified sinusoid gives π/2.
"""

from __future__ import annotations

import math

import torch

ORIENTATIONS = 16  # 0°, 11.25°, … 168.75°
FREQUENCIES = (0.03, 0.045, 0.0625, 0.09, 0.125, 0.18, 0.25, 0.35)  # cycles per input pixel (Nyquist: 0.5)
PHASES = 8
SELECTIVE_OSI = 1 / 3
SIMPLE_F1_F0 = 1.0
RESPONSIVE = 1e-6  # a unit whose best response above its blank is smaller than this never fired: left out


def angles() -> torch.Tensor:
    return torch.arange(ORIENTATIONS, dtype=torch.float64) * (math.pi / ORIENTATIONS)  # (O,) radians


def _coordinates(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates relative to the centre, (H, W) each: every stimulus is centred on the middle pixel."""
    y = torch.arange(height, dtype=torch.float64) - (height - 1) / 2
    x = torch.arange(width, dtype=torch.float64) - (width - 1) / 2
    return torch.meshgrid(y, x, indexing="ij")


def gratings(shape: tuple[int, int, int]) -> torch.Tensor:
    """Every grating for an input of ``shape`` (C, H, W): (F, O, P, C, H, W) float32 in [0, 1]."""
    channels, height, width = shape
    y, x = _coordinates(height, width)
    theta = angles()[:, None, None]  # (O, 1, 1)
    along = x * torch.cos(theta) + y * torch.sin(theta)  # (O, H, W): position along each wave vector
    frequency = torch.tensor(FREQUENCIES, dtype=torch.float64)[:, None, None, None, None]  # (F, 1, 1, 1, 1)
    phase = (torch.arange(PHASES, dtype=torch.float64) * (2 * math.pi / PHASES))[None, None, :, None, None]
    images = 0.5 + 0.5 * torch.cos(2 * math.pi * frequency * along[None, :, None] + phase)  # (F, O, P, H, W)
    return images.float()[:, :, :, None].expand(-1, -1, -1, channels, -1, -1)


def bars(shape: tuple[int, int, int], frequency: float) -> torch.Tensor:
    """Light and dark bars half a period of ``frequency`` wide, centred at ``PHASES`` offsets across one period, at
    every orientation: (2, O, P, C, H, W), polarity first (light, dark)."""
    channels, height, width = shape
    y, x = _coordinates(height, width)
    theta = angles()[:, None, None]
    along = x * torch.cos(theta) + y * torch.sin(theta)  # (O, H, W)
    period = 1.0 / frequency
    offsets = (torch.arange(PHASES, dtype=torch.float64) / PHASES - 0.5) * period  # (P,)
    inside = (along[:, None] - offsets[None, :, None, None]).abs() <= period / 4  # (O, P, H, W)
    light = torch.where(inside, 1.0, 0.5)
    dark = torch.where(inside, 0.0, 0.5)
    return torch.stack([light, dark]).float()[:, :, :, None].expand(-1, -1, -1, channels, -1, -1)


def blank(shape: tuple[int, int, int]) -> torch.Tensor:
    return torch.full((1, *shape), 0.5)


def half_width(curve: torch.Tensor, preferred: int) -> float:
    """Half-width at half-height (degrees) of one circular tuning curve (O,) around index ``preferred``: the mean of
    the distances at which it first falls to half its peak on either side, linearly interpolated; 90 when it never
    does (an untuned unit)."""
    step = 180.0 / len(curve)
    peak = float(curve[preferred])
    if peak <= 0:
        return 90.0  # a unit that never fired has no tuning
    half = peak / 2
    sides = []
    for direction in (1, -1):
        width = 90.0
        previous = peak
        for k in range(1, len(curve) // 2 + 1):
            value = float(curve[(preferred + direction * k) % len(curve)])
            if value <= half:
                width = step * (k - 1 + (previous - half) / (previous - value))
                break
            previous = value
        sides.append(min(width, 90.0))
    return sum(sides) / 2


def f1_over_f0(cycle: torch.Tensor) -> torch.Tensor:
    """(N, P) responses over one drift cycle → (N,) F1/F0 (0 where the mean response is 0)."""
    f0 = cycle.mean(-1)
    k = torch.arange(cycle.shape[-1], dtype=torch.float64)
    harmonic = torch.exp(-2j * math.pi * k / cycle.shape[-1])
    f1 = 2 * (cycle.double() * harmonic).sum(-1).abs() / cycle.shape[-1]
    return torch.where(f0 > 0, f1 / f0.clamp_min(1e-30), torch.zeros_like(f1)).float()


def tuning(responses: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rectified responses (N units, F, O, P) → per-unit measures, each (N,): ``responsive`` (bool), preferred
    ``frequency`` (cycles/pixel) and ``orientation`` (degrees), ``osi``, ``width`` (degrees), ``f1_f0``, and the
    tuning ``curve`` (N, O) at the preferred frequency."""
    n, _, orientations, _ = responses.shape
    peak = responses.amax(-1)  # (N, F, O): the best phase
    best = peak.reshape(n, -1).argmax(1)
    f_index, o_index = best // orientations, best % orientations
    units = torch.arange(n)
    curve = peak[units, f_index]  # (N, O)
    preferred = curve[units, o_index]
    orthogonal = curve[units, (o_index + orientations // 2) % orientations]
    total = preferred + orthogonal
    osi = torch.where(total > 0, (preferred - orthogonal) / total.clamp_min(1e-30), torch.zeros_like(total))
    widths = torch.tensor([half_width(curve[i], int(o_index[i])) for i in range(n)])
    return {
        "responsive": preferred > RESPONSIVE,
        "frequency": torch.tensor(FREQUENCIES)[f_index],
        "orientation": o_index.float() * (180.0 / orientations),
        "osi": osi,
        "width": widths,
        "f1_f0": f1_over_f0(responses[units, f_index, o_index]),  # (N, P) → (N,)
        "curve": curve,
        "frequency_index": f_index,
    }


def bar_tuning(responses: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rectified responses to bars (N, 2, O, P) → the bar tuning curve (N, O) (best polarity and position) and its
    OSI (N,), around the bar orientation with the largest response."""
    curve = responses.amax(dim=(1, 3))  # (N, O)
    n, orientations = curve.shape
    o_index = curve.argmax(1)
    units = torch.arange(n)
    preferred = curve[units, o_index]
    orthogonal = curve[units, (o_index + orientations // 2) % orientations]
    total = preferred + orthogonal
    osi = torch.where(total > 0, (preferred - orthogonal) / total.clamp_min(1e-30), torch.zeros_like(total))
    return {"curve": curve, "osi": osi}
