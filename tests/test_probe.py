"""The receptive-field probe (benchmarks/judging/receptive_fields.py, gratings.py): stimuli, tuning measures on units
whose answer is known, the stages found in a network's own forward pass, the command line, the probe file and the
leaderboard's table."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from benchmarks.judging import gratings as g
from benchmarks.judging import receptive_fields as rf
from benchmarks.judging.receptive_field_table import render_probes


def test_a_grating_at_zero_degrees_has_vertical_bars_and_spans_the_whole_scale():
    images = g.gratings((1, 9, 9))  # (F, O, P, C, H, W)
    assert images.shape == (len(g.FREQUENCIES), g.ORIENTATIONS, g.PHASES, 1, 9, 9)
    assert 0.0 <= images.min() and images.max() <= 1.0
    vertical = images[0, 0, 0, 0]
    assert torch.allclose(vertical, vertical[:1].expand_as(vertical))  # the same in every row: vertical bars
    horizontal = images[0, g.ORIENTATIONS // 2, 0, 0]
    assert torch.allclose(horizontal, horizontal[:, :1].expand_as(horizontal))


def test_f1_over_f0_is_pi_over_2_for_a_half_wave_rectified_sinusoid_and_0_for_a_constant():
    phase = torch.arange(64) * (2 * math.pi / 64)
    rectified = torch.cos(phase).clamp_min(0)
    assert g.f1_over_f0(rectified[None]).item() == pytest.approx(math.pi / 2, rel=1e-3)
    assert g.f1_over_f0(torch.ones(1, 8)).item() == pytest.approx(0.0, abs=1e-6)


def test_half_width_of_a_triangle_is_where_it_halves():
    curve = torch.tensor([max(0.0, 1 - abs(i - 8) / 4) for i in range(16)])  # peak at 8, zero 4 steps away
    assert g.half_width(curve, 8) == pytest.approx(2 * 180 / 16)  # halves 2 steps (22.5°) away on both sides
    assert g.half_width(torch.ones(16), 3) == 90.0  # never halves: untuned


class Oriented(nn.Module):
    """One unit with a vertical-bar filter, rectified, then 2×2 max-pooling; and one unit that sums luminance."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 5, padding=2)
        with torch.no_grad():
            x = torch.arange(5.0) - 2
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = torch.cos(2 * math.pi * 0.18 * x)[None, :].expand(5, 5)  # vertical bars
            self.conv.weight[1, 0] = 1.0 / 25  # the local mean luminance: no orientation
            self.conv.bias.zero_()
        self.act, self.pool = nn.ReLU(), nn.MaxPool2d(2)
        self.head = nn.Linear(2 * 8 * 8, 3)

    def forward(self, x):
        return self.head(self.pool(self.act(self.conv(x))).flatten(1))


def test_a_vertical_filter_prefers_vertical_bars_and_a_luminance_unit_prefers_none():
    model = Oriented()
    s, c, names = rf.stage_maps(model, torch.rand(2, 1, 16, 16))
    assert names == ("act", "pool") and s.shape == (2, 2, 16, 16) and c.shape == (2, 2, 8, 8)
    units = rf.measure(model, (1, 16, 16))["s"]
    assert units["responsive"] == [True, True]
    assert units["orientation"][0] == 0.0 and units["osi"][0] > 0.9
    assert units["osi"][1] < g.SELECTIVE_OSI and units["frequency"][1] == g.FREQUENCIES[0]  # the coarsest grating
    assert units["f1_f0"][0] > 1.0  # it follows the grating's phase: simple


def test_a_network_with_no_convolution_is_refused_with_what_to_do():
    with pytest.raises(rf.ProbeError, match="probe_stages"):
        rf.stage_maps(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), torch.rand(1, 1, 2, 2))


def test_the_probe_of_a_feature_net_is_deterministic_and_its_table_renders(tmp_path):
    networks = rf.from_feature_net("mnist")
    first = rf.write_probe(networks, "feature-net", "test", out_dir=tmp_path / "a")
    second = rf.write_probe(rf.from_feature_net("mnist"), "feature-net", "test", out_dir=tmp_path / "b")
    a, b = (json.loads(p.read_text()) for p in (first, second))
    assert a["seeds"] == b["seeds"] and a["mean"] == b["mean"]
    assert a["seeds"][0]["stages"] == {"s": "features.1", "c": "features.2"}
    for name in a["figures"]:
        assert (first.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = render_probes(rf.read_probes(tmp_path / "a"), str)
    assert any(line.startswith("| lenet5-modern on mnist | feature-net | 1 |") for line in lines)


def test_a_result_without_its_checkpoints_says_how_to_rebuild_them(tmp_path):
    from benchmarks.core import paths

    result = next(iter(sorted((paths.RESULTS_DIR / "mnist" / "lenet5").glob("*.json"))))
    done = subprocess.run([sys.executable, "-m", "benchmarks.cli", "probe", "--result", str(result), "--seeds", "0",
                           "--output-dir", str(tmp_path)], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "milestones verify" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_validate_finds_a_hand_edited_probe_figure(tmp_path):
    path = rf.write_probe(rf.from_feature_net("mnist"), "feature-net", "test", out_dir=tmp_path)
    assert rf.probe_problems(tmp_path) == []
    record = json.loads(path.read_text())
    record["seeds"][0]["trained"]["summary"]["s"]["median_osi"] = 0.99
    record["mean"]["trained"]["s"]["median_osi"] = 0.99
    path.write_text(json.dumps(record))
    assert rf.probe_problems(tmp_path) == [f"{path}: seed 0 trained s: summary differs from its units"]


def test_the_s_stage_stops_at_the_next_convolution_and_a_model_may_give_its_maps_itself():
    stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3))
    _, c, names = rf.stage_maps(stem.eval(), torch.rand(2, 3, 8, 8))
    assert names == ("2", None) and c is None  # ResNet's stem: no pooling before the next convolution

    class Functional(nn.Module):  # stages computed from buffers, as the Neocognitron's S- and C-cells are
        def __init__(self):
            super().__init__()
            self.register_buffer("a1", torch.randn(3, 1, 5, 5))

        def probe_maps(self, x):
            s = torch.nn.functional.conv2d(x, self.a1, padding=2).relu()
            return s, torch.nn.functional.max_pool2d(s, 2)

    model = Functional()
    s, c, names = rf.stage_maps(model, torch.rand(2, 1, 8, 8))
    assert s.shape == (2, 3, 8, 8) and c.shape == (2, 3, 4, 4) and names == ("probe_maps: S", "probe_maps: C")
    assert torch.equal(rf.first_filters(model, (1, 8, 8)), model.a1)
