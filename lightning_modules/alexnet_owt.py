"""AlexNet as torchvision ships it (open division): one tower, no LRN, torchvision's widths and initialisation.

A. Krizhevsky, "One weird trick for parallelizing convolutional neural networks", arXiv:1404.5997 (2014), trains "a
minor variation" of the 2012 network whose "main difference is that it consists of one tower instead of two"; its
footnote gives the single column 64, 192, 384, 384, 256 kernel maps; nothing in its description of the model removes the
response normalisation. Krizhevsky's own one-GPU configuration in cuda-convnet2 (``layers/layers-imagenet-1gpu.cfg``)
has 64, 192, 384, **256**, 256 maps and keeps LRN after conv1 and conv2. torchvision's ``models.alexnet`` comes from
that file by way of Soumith Chintala's ``alexnetowt.lua`` (imagenet-multiGPU.torch), which dropped the LRN layers: 64,
192, 384, 256, 256 and no LRN are torchvision's (pytorch/vision PRs #463 and #704 discuss the 384/256 mismatch with the
paper; its pre-trained weights keep it). ``make_features`` below is torchvision's feature extractor, layer for layer.

What differs from ``alexnet`` (the 2012 network in this suite), so the two rows measure more than the feature
extractor:
- the features: one tower, 64-192-384-256-256 kernel maps, no LRN (torchvision's);
- the initialisation: PyTorch's default (Kaiming-uniform, a = √5, as torchvision's model keeps), not N(0, 0.01) with
  biases of 1;
- the learning rate: 0.01, torchvision's reference recipe for AlexNet and the 2012 paper's, at which this network
  trains on 10 classes; ``alexnet`` runs at 0.001 (``leaderboards/perf/alexnet-lr-probe.md``);
- the input: torchvision's per-channel normalisation (``normalisation: imagenet-channel`` in the config: pixels in
  [0, 1] minus (0.485, 0.456, 0.406), divided by (0.229, 0.224, 0.225)), where ``alexnet`` subtracts the training
  set's mean image (2012, §2).
The same as ``alexnet``: the classifier module (FC6 → ReLU → dropout → FC7 → ReLU → dropout → FC8, the 2012 paper's
placement; torchvision's puts each dropout *before* FC6 and FC7, so its first dropout acts on the pool5 features),
SGD with momentum 0.9, weight decay 5e-4, batch 128 and the plateau schedule, the augmentation (random 224 crops of
256-px images, flips, PCA lighting), the budget and the task's ten-crop test. torchvision's ``AdaptiveAvgPool2d(6)``
is the identity for 224 inputs and is left out.
"""

from __future__ import annotations

from torch import nn

from lightning_modules.alexnet import AlexNet


class AlexNetOWT(AlexNet):
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
