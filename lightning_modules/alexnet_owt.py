"""AlexNet, "one weird trick" variant (open division): one tower, no LRN, as torchvision ships it.

A. Krizhevsky, "One weird trick for parallelizing convolutional neural networks", arXiv:1404.5997 (2014): the
single-GPU column of 64, 192, 384, 256, 256 kernel maps without response normalisation; torchvision's
``models.alexnet`` is this network. Everything else — the classifier head, dropout, overlapping pooling, the data
augmentation and the SGD recipe with its plateau schedule — is kept identical to ``alexnet`` so that the measured
difference between the two rows is the feature extractor (towers, widths, LRN) and its initialisation. Inputs are
standardised per channel and the layers keep PyTorch's default initialisation, as torchvision's model expects.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from lightning_modules.alexnet import IMAGENET_MEAN_RGB, AlexNet

IMAGENET_STD_RGB = (58.40, 57.12, 57.38)  # per-channel std of the ILSVRC-2012 training set, 0-255 scale


class AlexNetOWT(AlexNet):
    def __init__(
        self,
        num_classes: int = 1000,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        lr_factor: float = 0.1,
        lr_patience: int = 2,
        dropout: float = 0.5,
        crop_size: int = 224,
        test_crops: Literal[1, 10] = 1,
        mean_rgb: tuple[float, float, float] = IMAGENET_MEAN_RGB,
        std_rgb: tuple[float, float, float] = IMAGENET_STD_RGB,
    ) -> None:
        self.std_rgb = std_rgb
        super().__init__(num_classes, lr, momentum, weight_decay, lr_factor, lr_patience, dropout, crop_size,
                         test_crops, mean_rgb)  # fmt: skip
        self.save_hyperparameters()

    def make_features(self) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(),  # (B, 64, 55, 55)
            nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 64, 27, 27)
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(),  # (B, 192, 27, 27)
            nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 192, 13, 13)
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(),  # (B, 384, 13, 13)
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),  # (B, 256, 13, 13)
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(),  # (B, 256, 13, 13)
            nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 256, 6, 6)
        )  # fmt: skip

    def reset_parameters(self) -> None:
        """PyTorch's default initialisation (Kaiming-uniform, a = √5), which torchvision's AlexNet keeps."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.reset_parameters()

    def normalise(self, x):
        mean = self.mean_rgb / 255.0
        std = x.new_tensor(self.std_rgb).view(1, 3, 1, 1) / 255.0
        return (x - mean) / std
