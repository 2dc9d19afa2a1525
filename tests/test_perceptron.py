"""The perceptron entries' own rules: the S → A → R machine's fixed A-layer and learning R-layer, and the single-layer
error-correction rule against the textbook update worked by hand."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from lightning_modules.perceptron import Perceptron
from lightning_modules.perceptron_single_layer import SingleLayerPerceptron


def fit(model: L.LightningModule, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int = 10) -> None:
    data = torch.utils.data.TensorDataset(x, y)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=batch_size))


def toy(n: int = 40, side: int = 6, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random binary images with random labels: no structure a linear rule on the pixels could rely on."""
    generator = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 1, side, side, generator=generator) < 0.4).float()
    return x, torch.randint(0, classes, (n,), generator=generator)


def test_association_layer_is_fixed_while_the_values_learn():
    torch.manual_seed(0)
    model = Perceptron(num_classes=3, input_shape=(1, 6, 6), association_units=300)
    assert not any(p.requires_grad for p in model.parameters()), "no Parameter that an optimiser could move"
    connections = model.connections.clone()
    x, y = toy()
    fit(model, x, y, epochs=3)
    assert torch.equal(model.connections, connections)
    assert model.values.abs().sum() > 0


def test_association_units_have_the_configured_origin_points():
    torch.manual_seed(0)
    model = Perceptron(num_classes=10, input_shape=(1, 28, 28), association_units=500, excitatory=4, inhibitory=3)
    c = model.connections  # (D, N_A)
    assert c.shape == (784, 500)
    assert ((c == 1).sum(0) == 4).all() and ((c == -1).sum(0) == 3).all()


def test_same_seed_same_association_layer_another_seed_another():
    def build(seed: int) -> Perceptron:
        L.seed_everything(seed, verbose=False)  # as the harness does before building the model
        return Perceptron(num_classes=10, input_shape=(1, 8, 8), association_units=200)

    assert torch.equal(build(3).connections, build(3).connections)
    assert not torch.equal(build(3).connections, build(4).connections)


def test_response_layer_learns_a_separable_problem():
    """40 random images, 3 random classes: 300 A-units make them separable, so error correction stops making mistakes
    (the convergence theorem) and then classifies every training image correctly."""
    torch.manual_seed(0)
    model = Perceptron(num_classes=3, input_shape=(1, 6, 6), association_units=300)
    x, y = toy()
    assert (model.associate(x).sum(1) > 0).all(), "every image excites some A-unit"
    fit(model, x, y, epochs=30)
    assert torch.equal(model(x).argmax(1), y)
    values = model.values.clone()
    assert model._reinforce_cpu(model.associate(x), y) == 0  # a further pass: no mistake...
    assert torch.equal(model.values, values)  # ...and nothing changes


def test_error_correction_step_by_hand():
    """Two A-units, two responses: the values change only on a wrong response, by ±1 on the active A-units."""
    model = Perceptron(
        num_classes=2, input_shape=(1, 1, 2), association_units=2, excitatory=1, inhibitory=0, threshold=1
    )
    model.connections.copy_(torch.eye(2))  # A-unit i fires when S-point i is on
    x = torch.tensor([[[[1.0, 0.0]]], [[[1.0, 1.0]]], [[[0.0, 1.0]]]])
    y = torch.tensor([1, 0, 1])
    # 1st: values 0, tie → response 0, wrong: R1 gains on A0, R0 loses on A0    → [[-1, 0], [1, 0]]
    # 2nd: totals (-1, 1) → response 1, wrong: R0 gains on A0, A1, R1 loses     → [[0, 1], [0, -1]]
    # 3rd: totals (1, -1) → response 0, wrong: R1 gains on A1, R0 loses on A1   → [[0, 0], [0, 0]]
    # and the first example again: tie → response 0, wrong                       → [[-1, 0], [1, 0]]
    mistakes = model.training_step((x, y), 0)
    assert mistakes == 1.0 and torch.equal(model.values, torch.zeros(2, 2, dtype=torch.float64))
    model.training_step((x[:1], y[:1]), 0)
    assert torch.equal(model.values, torch.tensor([[-1.0, 0.0], [1.0, 0.0]], dtype=torch.float64))
    model.training_step((x[1:2], y[1:2]), 0)
    assert torch.equal(model.values, torch.tensor([[0.0, 1.0], [0.0, -1.0]], dtype=torch.float64))


def test_the_torch_and_numpy_paths_agree():
    torch.manual_seed(0)
    cpu = Perceptron(num_classes=3, input_shape=(1, 6, 6), association_units=100)
    generic = Perceptron(num_classes=3, input_shape=(1, 6, 6), association_units=100)
    generic.connections.copy_(cpu.connections)
    x, y = toy()
    active = cpu.associate(x)
    for _ in range(3):
        assert cpu._reinforce_cpu(active, y) == float(generic._reinforce(active, y))
    assert torch.equal(cpu.values, generic.values)


def textbook(weight: np.ndarray, inputs: np.ndarray, labels: np.ndarray, lr: float) -> np.ndarray:
    """Rosenblatt's rule as textbooks print it, one example at a time: w_k ← w_k + η (t_k − y_k) x̃, where x̃ is x with
    a constant 1 appended (the bias), t_k = ±1 says whether the example is of class k and y_k = sign(w_k · x̃) (±1)."""
    weight = weight.copy()
    for x, label in zip(inputs, labels):
        x_tilde = np.append(x, 1.0)
        for k in range(len(weight)):
            t = 1.0 if k == label else -1.0
            y = 1.0 if weight[k] @ x_tilde > 0 else -1.0
            weight[k] = weight[k] + lr * (t - y) * x_tilde
    return weight


@pytest.mark.parametrize("path", ["_online_updates_cpu", "_online_updates"])
def test_single_layer_rule_is_the_textbook_update(path):
    model = SingleLayerPerceptron(num_classes=3, input_shape=(1, 1, 2), lr=0.5)
    start = np.array([[0.5, -1.0, 0.0], [0.0, 1.0, -0.5], [1.0, 1.0, -2.0]], dtype=np.float32)
    model.weight.copy_(torch.from_numpy(start))
    x = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 1.0]]], [[[1.0, 1.0]]], [[[0.5, 0.25]]]])
    y = torch.tensor([0, 2, 1, 2])
    expected = textbook(start.astype(np.float64), x.flatten(1).numpy(), y.numpy(), lr=0.5)
    if path == "_online_updates_cpu":
        model.training_step((x, y), 0)
    else:  # the device path, run here on the CPU
        from lightning_modules.base import one_hot

        model._online_updates(model._augment(x), one_hot(y, 3, low=-1.0, high=1.0))
    assert not np.array_equal(expected, start), "the example makes mistakes, so the rule has something to do"
    np.testing.assert_allclose(model.weight.numpy(), expected, rtol=0, atol=1e-6)
