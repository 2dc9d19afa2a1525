"""The Neocognitron's own equations on tiny inputs (S-cell eqs. 1–2, C-cell eqs. 3–5, reinforcement eq. 6), its
determinism, and the mnist-shifted task's transformed test sets and identity."""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks.tasks import get_task
from benchmarks.tasks.mnist import MNIST_MD5
from benchmarks.tasks.shifted import (
    SHIFTS,
    TRANSFORM,
    VARIANTS,
    draw_offsets,
    elastic_deform,
    make_test_sets,
    ring_offsets,
    shift_images,
)
from lightning_modules.neocognitron import Neocognitron, c_cells, psi, representatives, s_cells


# --- the cells ------------------------------------------------------------------------------------------------------
def test_an_s_cell_follows_eq_1_with_its_v_cell_the_weighted_rms_of_eq_2():
    u = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]])  # (1, 1, 2, 2): one input plane, one position's 2×2 window
    a = torch.tensor([[[[0.1, 0.2], [0.3, 0.4]]]])  # (K=1, 1, 2, 2)
    c = torch.tensor([[0.4, 0.3], [0.2, 0.1]])  # sums to 1
    b, r = torch.tensor([2.0]), 1.5
    u_s, v_c = s_cells(u, a, b, c, r, padding=0)
    v = math.sqrt(0.4 * 0 + 0.3 * 1 + 0.2 * 0.25 + 0.1 * 0.0625)
    excitation = 0.1 * 0 + 0.2 * 1 + 0.3 * 0.5 + 0.4 * 0.25
    expected = r * max((1 + excitation) / (1 + r / (1 + r) * 2.0 * v) - 1, 0.0)
    assert v_c.item() == pytest.approx(v, rel=1e-6)
    assert u_s.item() == pytest.approx(expected, rel=1e-6)


def test_an_s_cell_is_silent_when_inhibition_outweighs_excitation_and_answers_its_own_pattern():
    pattern = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    c = torch.full((2, 2), 0.25)
    b = torch.tensor([100.0])
    a = 100.0 * c[None, None] * pattern  # a and b as after reinforcement on the pattern, grown large
    b = 100.0 * torch.tensor([math.sqrt(0.5)])
    own, _ = s_cells(pattern, a, b, c, r=4.0, padding=0)
    other, _ = s_cells(torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]]), a, b, c, r=4.0, padding=0)
    assert own.item() > 0.9  # r · ((1 + r)/r · cos − 1) → 1 at cos = 1 as a and b grow
    assert other.item() == 0.0  # orthogonal pattern: φ cuts the negative value


def test_a_c_cell_pools_its_own_plane_inhibited_by_the_planes_mean_and_saturates_by_psi():
    u_s = torch.zeros(1, 2, 3, 3)
    u_s[0, 0, 1, 1] = 2.0  # plane 0 answers at the centre; plane 1 is silent
    d = torch.ones(3, 3)
    u_c = c_cells(u_s, d, alpha=0.5, stride=1, padding=0)  # (1, 2, 1, 1)
    v_s = (2.0 + 0.0) / 2  # the V_S-cell: the mean over the two planes of Σ d · u_S
    assert u_c[0, 0].item() == pytest.approx(psi(torch.tensor((1 + 2.0) / (1 + v_s) - 1), 0.5).item())
    assert u_c[0, 1].item() == 0.0
    assert 0 <= psi(torch.tensor(1e6), 0.5).item() < 1  # ψ saturates below 1


# --- self-organisation ----------------------------------------------------------------------------------------------
def test_representatives_are_column_maxima_at_most_one_per_plane():
    u_s = torch.zeros(3, 6, 6)
    u_s[0, 1, 1], u_s[0, 4, 4] = 0.5, 0.9  # plane 0 wins two columns: only its larger is its representative
    u_s[1, 1, 1] = 0.4  # loses its column to plane 0
    plane, position = representatives(u_s, column=3)
    assert plane.tolist() == [0]
    assert position.tolist() == [4 * 6 + 4]
    u_s[2, 4, 1] = 0.7  # plane 2 wins a column of its own
    plane, position = representatives(u_s, column=3)
    assert sorted(zip(plane.tolist(), position.tolist())) == [(0, 28), (2, 25)]
    assert representatives(torch.zeros(2, 4, 4), column=3)[0].numel() == 0  # silence: nobody is reinforced


def test_only_the_representatives_planes_are_reinforced_by_eq_6():
    torch.manual_seed(0)
    model = Neocognitron(planes=(4, 4, 4))
    before = {name: getattr(model, name).clone() for name in ("a1", "b1", "a2", "b2", "a3", "b3")}
    digit = torch.zeros(1, 1, 28, 28)
    digit[0, 0, 8:20, 13:15] = 1.0  # a vertical bar
    u_c0, u_s1, v_c1, _ = model.layers(digit)[0]
    plane, position = representatives(u_s1[0], model.hparams.column[0])
    model.reinforce(digit)
    changed = (model.b1 != before["b1"]).nonzero().flatten().tolist()
    assert changed == sorted(plane.tolist())  # b moved for the representatives' planes and for no other
    unchanged = [k for k in range(4) if k not in changed]
    assert torch.equal(model.a1[unchanged], before["a1"][unchanged])
    k, p = plane[0].item(), position[0].item()
    y, x = divmod(p, 28)
    window = torch.nn.functional.pad(u_c0, (2, 2, 2, 2))[0, :, y : y + 5, x : x + 5]  # the representative's inputs
    q = model.hparams.q[0]
    assert torch.allclose(model.a1[k] - before["a1"][k], q * model.c * window)  # Δa = q · c · u_C (K_prev = 1)
    assert (model.b1[k] - before["b1"][k]).item() == pytest.approx(q * v_c1[0].flatten()[p].item())  # Δb = q · v_C


def test_the_same_seed_organises_the_same_network():
    def organised(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        model = Neocognitron(planes=(4, 4, 6))
        digits = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(1)).round()
        for digit in digits:
            model.reinforce(digit[None])
        return torch.cat([getattr(model, f"{w}{layer}").flatten() for w in "ab" for layer in (1, 2, 3)])

    assert torch.equal(organised(0), organised(0))
    assert not torch.equal(organised(0), organised(1))


# --- mnist-shifted ----------------------------------------------------------------------------------------------------
def test_every_shifted_digit_moves_by_exactly_its_offset_on_the_ring():
    for s in SHIFTS:
        ring = ring_offsets(s)
        assert len(ring) == max(1, 8 * s) and (ring.abs().amax(1) == s).all()
    image = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    image[0, 0, 10, 12] = 255
    moved = shift_images(image, torch.tensor([[3, -2]]))  # right 3, up 2
    assert moved[0, 0, 8, 15] == 255 and moved.sum() == 255
    clipped = shift_images(image, torch.tensor([[20, 0]]))  # out of the frame: clipped, nothing wraps
    assert clipped.sum() == 0
    offsets = draw_offsets(1000, 6)
    assert (offsets.abs().amax(1) == 6).all() and torch.equal(offsets, draw_offsets(1000, 6))  # seeded
    assert len(offsets.unique(dim=0)) > 40  # directions spread over the ring's 48 offsets


def test_the_test_sets_are_deterministic_and_shift_zero_is_the_plain_test_set():
    images = (torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    first, second = make_test_sets(images), make_test_sets(images)
    assert list(first) == list(VARIANTS)
    assert all(torch.equal(first[name], second[name]) for name in VARIANTS)
    assert torch.equal(first["shift0"], images)
    assert first["elastic"].dtype == torch.uint8 and not torch.equal(first["elastic"], images)
    assert torch.equal(elastic_deform(images, alpha=0.0), images)  # no displacement: the image itself


def test_the_tasks_identity_is_the_mnist_files_and_the_transformations_parameters():
    task = get_task("mnist-shifted")
    declared = task.declared_identity()
    assert {key.split("/")[-1]: value for key, value in declared.required.items() if key.startswith("MNIST/")} == {
        name: f"md5:{md5}" for name, md5 in MNIST_MD5.items()
    }
    assert declared.required["mnist-shifted/test-transform"] == TRANSFORM
    assert all(str(s) in TRANSFORM for s in SHIFTS) and "alpha=34" in TRANSFORM and "sigma=4" in TRANSFORM
    assert task.val_key == "val/error" and task.metric.name == "shift_error"
    assert task.extra_metrics == tuple(f"error_{name}" for name in VARIANTS)


def test_the_tasks_plot_draws_error_against_shift_per_row_with_the_deformed_set_apart():
    from types import SimpleNamespace

    task = get_task("mnist-shifted")
    values = ([1.0, 2.0, 4.0, 8.0, 3.0], [3.0, 4.0, 6.0, 10.0, 5.0])  # error_shift0, 2, 4, 6, elastic of two seeds
    seeds = [SimpleNamespace(status="ok", metrics=dict(zip(task.extra_metrics, v))) for v in values]
    rows = [{"entry": "lenet5", "file": "r.json", "provisional": False}]
    ax = task.plot_figure("mnist-shifted", rows, {"r.json": SimpleNamespace(seeds=seeds)}).axes[0]
    shifts = ax.get_lines()[0]
    elastic = next(line for line in ax.get_lines() if line.get_marker() == "s")  # the deformed set's point
    assert list(shifts.get_xdata()) == list(SHIFTS) and list(shifts.get_ydata()) == [2.0, 3.0, 5.0, 9.0]
    assert list(elastic.get_ydata()) == [4.0] and elastic.get_xdata()[0] > SHIFTS[-1]
    assert ax.get_ylabel() == "test error (%)" and "lenet5 (n=2)" in [t.get_text() for t in ax.get_legend().texts]
