"""AlexNet's paper details that a shape test would not catch: LRN's formula and gradient, the towers, the init,
ten-crop testing, and that the open variant is torchvision's network."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision

from lightning_modules.alexnet import AlexNet, LocalResponseNorm, ten_crop
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


def test_ten_crop_views_and_averaged_prediction():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    views = ten_crop(x, 4)
    assert len(views) == 10 and all(v.shape == (2, 3, 4, 4) for v in views)
    assert torch.equal(views[0], x[..., :4, :4]) and torch.equal(views[4], x[..., 1:5, 1:5])
    assert torch.equal(views[5], views[0].flip(-1))
    model = AlexNet(num_classes=10, test_crops=10).eval()
    images = torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        expected = torch.stack([model(v).softmax(-1) for v in ten_crop(images, 224)]).mean(0)
        assert torch.allclose(model.predict(images, crops=10), expected, atol=1e-6)
        centre = model.predict(images, crops=1)
        assert torch.allclose(centre, model(images[..., 16:240, 16:240]).softmax(-1))


def test_the_open_variant_is_torchvisions_alexnet():
    ours = [tuple(p.shape) for p in AlexNetOWT(num_classes=10).parameters()]
    theirs = [tuple(p.shape) for p in torchvision.models.alexnet(num_classes=10).parameters()]
    assert ours == theirs
    assert not any(isinstance(m, LocalResponseNorm) for m in AlexNetOWT(num_classes=10).modules())


def test_swapping_in_torchs_lrn_keeps_the_function():
    from benchmarks.perf.train_step import swap_lrn

    model = AlexNet(num_classes=10).eval()
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        ours = model(x)
        swap_lrn(model)
        assert sum(isinstance(m, torch.nn.LocalResponseNorm) for m in model.modules()) == 2
        assert torch.allclose(model(x), ours, atol=1e-5)
