"""AlexNet's paper details that a shape test would not catch: LRN's formula and gradient, the towers, the init, the
plateau schedule's count, and that the open variant is torchvision's network. The input (§2) and the ten-crop test
(§4.1) are the data's and the task's: tests/test_images.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from lightning_modules.alexnet import AlexNet, LocalResponseNorm
from lightning_modules.alexnet_owt import AlexNetOWT


def test_lrn_is_the_papers_formula_with_its_gradient():
    a = (torch.randn(2, 9, 4, 4, dtype=torch.float64) * 20).requires_grad_()
    lrn = LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)
    direct = a / (2.0 + 1e-4 * torch.stack([(a[:, max(0, i - 2) : i + 3] ** 2).sum(1) for i in range(9)], 1)) ** 0.75
    assert torch.allclose(lrn(a), direct)
    assert torch.allclose(lrn(a), F.local_response_norm(a, 5, alpha=5e-4, beta=0.75, k=2.0))  # PyTorch's α is α/n
    assert torch.autograd.gradcheck(lrn, (a,))


def test_architecture_towers_and_size():
    model = AlexNet(num_classes=1000)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2], "conv2, conv4, conv5 see only their own tower"
    assert sum(p.numel() for p in model.parameters()) == 60_965_224  # the paper's "60 million parameters"
    assert model(torch.rand(2, 3, 224, 224)).shape == (2, 1000)


def test_initialisation_follows_section_5():
    torch.manual_seed(0)
    layers = [m for m in AlexNet(num_classes=10).modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert all(abs(layer.weight.std().item() - 0.01) < 0.002 and abs(layer.weight.mean().item()) < 0.002
               for layer in layers)  # fmt: skip
    biases = [layer.bias.unique().tolist() for layer in layers]
    assert biases == [[0.0], [1.0], [0.0], [1.0], [1.0], [1.0], [1.0], [0.0]]  # 1 in conv2, conv4, conv5, FC6, FC7


def test_the_plateau_schedule_divides_on_the_third_epoch_without_a_new_best():
    """PyTorch's patience 2: two bad epochs keep the rate, the third divides it (what the recipe text says)."""
    model = AlexNet(num_classes=10, lr=0.001)
    config = model.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    rates = []
    for error in (50.0, 49.0, 49.5, 49.2, 49.0, 49.1):  # a new best at epoch 1; then bad, bad, bad(=), bad
        scheduler.step(error)
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[:4] == [0.001] * 4 and rates[4] == rates[5] == pytest.approx(0.0001)


def test_the_model_takes_normalised_crops_and_holds_no_data_code():
    """The §2 mean image and the §4.1 ten crops live in the data module and the task: forward is the network."""
    model = AlexNet(num_classes=10).eval()
    x = torch.randn(2, 3, 224, 224) * 60  # raw 0-255 pixels minus a mean: what the data module feeds it
    with torch.no_grad():
        assert torch.equal(model(x), model.classifier(model.features(x)))
    assert not any(hasattr(model, name) for name in ("normalise", "predict", "mean_rgb", "test_crops"))


def test_the_open_variant_is_torchvisions_alexnet():
    ours = [tuple(p.shape) for p in AlexNetOWT(num_classes=10).parameters()]
    theirs = [tuple(p.shape) for p in torchvision.models.alexnet(num_classes=10).parameters()]
    assert ours == theirs
    assert not any(isinstance(m, LocalResponseNorm) for m in AlexNetOWT(num_classes=10).modules())
    features = [repr(m).replace("inplace=True", "") for m in AlexNetOWT(num_classes=10).features]
    assert features == [repr(m).replace("inplace=True", "") for m in torchvision.models.alexnet().features]
    convs = [m.out_channels for m in AlexNetOWT(num_classes=10).features if isinstance(m, torch.nn.Conv2d)]
    assert convs == [64, 192, 384, 256, 256], "torchvision's widths; the 2014 paper's footnote has 384 in conv4"
    assert AlexNetOWT().hparams.lr == 0.01 and AlexNet().hparams.lr == 0.01  # the alexnet entry sets 0.001


def test_swapping_in_torchs_lrn_keeps_the_function():
    from benchmarks.perf.train_step import swap_lrn

    model = AlexNet(num_classes=10).eval()
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        ours = model(x)
        swap_lrn(model)
        assert sum(isinstance(m, torch.nn.LocalResponseNorm) for m in model.modules()) == 2
        assert torch.allclose(model(x), ours, atol=1e-5)
