"""AlexNet's paper details that a shape test would not catch: LRN's formula and gradient, the towers, the init, the
plateau schedule's count, and that the open variant is torchvision's network. The input (§2) and the ten-crop test
(§4.1) are the data's and the task's: tests/test_images.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from lightning_modules import alexnet
from lightning_modules.alexnet import AlexNet, LocalResponseNorm
from lightning_modules.alexnet_owt import AlexNetOWT


def test_lrn_is_the_papers_formula_with_its_gradient():
    a = (torch.randn(2, 9, 4, 4, dtype=torch.float64) * 20).requires_grad_()
    lrn = LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)
    direct = a / (2.0 + 1e-4 * torch.stack([(a[:, max(0, i - 2) : i + 3] ** 2).sum(1) for i in range(9)], 1)) ** 0.75
    assert torch.allclose(lrn(a), direct)
    assert torch.allclose(lrn(a), F.local_response_norm(a, 5, alpha=5e-4, beta=0.75, k=2.0))  # PyTorch's α is α/n
    assert torch.autograd.gradcheck(lrn, (a,))


def reference_lrn(a: torch.Tensor, n: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
    """§3.3 written out: b_i = a_i / (k + α Σ_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a_j²)^β, α not divided by n."""
    sums = torch.stack([(a[:, max(0, i - n // 2) : i + n // 2 + 1] ** 2).sum(1) for i in range(a.shape[1])], 1)
    return a / (k + alpha * sums) ** beta


@pytest.mark.parametrize("channels_last", [False, True])
def test_lrn_equals_the_straightforward_formula_in_float32_across_chunks(channels_last, monkeypatch):
    """At the first layer's size, 5 images (in chunks of 3 + 2), activations up to 400: output and gradient to 1e-6."""
    monkeypatch.setattr(alexnet._chunks, "__defaults__", (3 * 96 * 55 * 55,))
    torch.manual_seed(0)
    a = (torch.randn(5, 96, 55, 55) * 100).relu()
    a[0, :, 0, 0] = 400.0  # where α Σ a² is 80 times k
    if channels_last:
        a = a.contiguous(memory_format=torch.channels_last)
    g = torch.randn(a.shape)
    ours, theirs = a.clone().requires_grad_(), a.double().requires_grad_()
    out, expected = LocalResponseNorm(5, 1e-4, 0.75, 2.0)(ours), reference_lrn(theirs)
    out.backward(g)
    expected.backward(g.double())
    assert out.dtype == torch.float32 and out.is_contiguous(memory_format=a_format(a))
    assert (out.double() - expected).abs().max() <= 1e-6 * expected.abs().max()
    assert (ours.grad.double() - theirs.grad).abs().max() <= 1e-6 * theirs.grad.abs().max()


def a_format(a: torch.Tensor) -> torch.memory_format:
    return torch.contiguous_format if a.is_contiguous() else torch.channels_last


def test_lrn_sums_in_float32_under_bf16():
    """bf16 would round k + α Σ a² to multiples of 2⁻⁶: the sums run in float32, the output is bf16."""
    torch.manual_seed(0)
    a = (torch.randn(2, 16, 5, 5) * 30).relu().bfloat16().requires_grad_()
    out = LocalResponseNorm(5, 1e-4, 0.75, 2.0)(a)
    assert out.dtype == torch.bfloat16
    expected = reference_lrn(a.detach().double())
    assert torch.allclose(out.double(), expected, rtol=2**-8, atol=0)
    out.backward(torch.ones_like(out))
    assert a.grad.dtype == torch.bfloat16 and torch.isfinite(a.grad).all()


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
