"""The CIFAR ResNet of He et al. 2015 §4.2 (lightning_modules/resnet.py): Table 6's parameter counts, option A
shortcuts without parameters, the plain control without shortcuts, shapes, and §4.2's augmentation."""

from __future__ import annotations

import pytest
import torch

from lightning_modules.resnet import Block, OptionA, ResNetCIFAR


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("depth, millions", [(20, 0.27), (56, 0.85)])
def test_parameter_counts_are_table_6s_and_the_plain_net_has_the_same(depth, millions):
    resnet, plain = ResNetCIFAR(depth=depth), ResNetCIFAR(depth=depth, shortcuts=False)
    assert round(parameters(resnet) / 1e6, 2) == millions
    assert parameters(plain) == parameters(resnet)  # option A adds no parameter
    convs = [m for m in resnet.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) + 1 == depth  # 6n + 1 convs and the fully connected layer: 6n + 2 weighted layers


def test_the_plain_net_has_no_shortcut_and_the_resnet_one_per_block():
    plain, resnet = ResNetCIFAR(depth=8, shortcuts=False), ResNetCIFAR(depth=8)
    assert all(block.shortcut is None for block in plain.modules() if isinstance(block, Block))
    blocks = [block for block in resnet.modules() if isinstance(block, Block)]
    assert len(blocks) == 3 and all(isinstance(block.shortcut, OptionA) for block in blocks)


def test_option_a_is_the_identity_or_subsampled_with_zero_channels():
    x = torch.randn(2, 16, 32, 32)
    assert torch.equal(OptionA(16, 16, 1)(x), x) and not list(OptionA(16, 32, 2).parameters())
    y = OptionA(16, 32, 2)(x)
    assert y.shape == (2, 32, 16, 16)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2]) and not y[:, 16:].any()


def test_shapes_and_a_depth_that_is_not_6n_plus_2_is_refused():
    model = ResNetCIFAR(depth=8).eval()
    assert model(torch.rand(3, 3, 32, 32)).shape == (3, 10)
    with pytest.raises(ValueError, match="6n \\+ 2"):
        ResNetCIFAR(depth=21)


def test_channels_last_is_a_layout_only():
    torch.manual_seed(0)
    a = ResNetCIFAR(depth=8, channels_last=True).eval()
    b = ResNetCIFAR(depth=8, channels_last=False).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(a(x), b(x), rtol=1e-4, atol=1e-5)


def test_augmentation_is_a_random_window_of_the_padded_image_maybe_mirrored_and_seeded_by_torch():
    model = ResNetCIFAR(depth=8)
    x = torch.rand(16, 3, 32, 32)
    torch.manual_seed(1)
    a = model.augment(x)
    torch.manual_seed(1)
    assert torch.equal(model.augment(x), a)  # torch's global RNG: Lightning's seed and the RNG checkpoints cover it
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for image, out in zip(padded, a):
        windows = [image[:, i : i + 32, j : j + 32] for i in range(9) for j in range(9)]
        assert any(torch.equal(out, w) or torch.equal(out, w.flip(-1)) for w in windows)
    assert not all(torch.equal(out, image) for out, image in zip(a, x))  # not the identity


def test_the_mean_image_is_the_training_splits_and_is_subtracted_in_forward():
    """on_train_start sets the per-pixel mean from the training loader (here without a trainer's reduction)."""
    from types import SimpleNamespace

    model = ResNetCIFAR(depth=8)
    batches = [(torch.full((2, 3, 32, 32), 0.25), None), (torch.full((6, 3, 32, 32), 0.75), None)]
    strategy = SimpleNamespace(reduce=lambda tensor, reduce_op: tensor)
    model.trainer = SimpleNamespace(train_dataloader=batches, strategy=strategy)
    model.on_train_start()
    torch.testing.assert_close(model.pixel_mean, torch.full((3, 32, 32), 0.625))
    assert "pixel_mean" in model.state_dict()  # the tested checkpoint carries it
