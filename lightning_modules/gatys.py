"""Neural style transfer (Gatys, Ecker & Bethge 2015/2016): an image optimised by L-BFGS to match the content of a
photograph and the style of a painting in the features of a fixed convolutional network.

L. A. Gatys, A. S. Ecker and M. Bethge, "A Neural Algorithm of Artistic Style", arXiv:1508.06576 (2015), and "Image
Style Transfer Using Convolutional Neural Networks", CVPR 2016. What this module implements, as the papers state it:

- the feature space of VGG-19's 16 convolutional and 5 pooling layers, without the fully connected layers, with
  average pooling in place of max pooling (it "improves the gradient flow"); here the layers up to conv5_1, the last
  one the losses read;
- the network "normalized by scaling the weights such that the mean activation of each convolutional filter over
  images and positions is equal to one" (ReLU networks keep their function under that scaling);
  ``normalise_activations`` does it, measuring with the max pooling the network was trained with, on the images the
  task provides (the papers do not name theirs);
- content: L_content = ½ Σ (F − P)² on conv4_2, F the synthesised image's features, P the photograph's;
- style: E_l = 1/(4 N_l² M_l²) Σ (G − A)² with Gram matrices G = F Fᵀ of layers conv1_1, conv2_1, conv3_1, conv4_1,
  conv5_1, weighted w_l = 1/5 each; written here as 1/(4 N_l²) Σ (Ĝ − Â)² with Ĝ = F Fᵀ / M_l, which is the same
  number when the painting and the synthesised image have the same size (style-fig2 makes them so, as the CVPR
  paper does) and keeps the painting's Gram matrix on the
  same scale when they do not (M_l: positions, N_l: filters);
- L_total = α L_content + β L_style with α/β = 1e-3, the arXiv version's ratio for Fig. 2 B–D (the Shipwreck, the
  Starry Night, the Scream; 1e-4 for E–F). Checked against quotations of the papers, not a copy of their text: the CVPR
  version's Fig. 3 states other ratios for the same three (1e-3, 8e-4, 5e-3), which ``alpha``/``beta`` can set;
- gradient descent on a white-noise image, by L-BFGS (the CVPR paper: "we found [it] to work best for image
  synthesis").

Not stated by the papers, and chosen here: the noise (i.i.d. uniform in [0, 1] per pixel and channel, drawn from a
generator seeded by the run's seed and the pair's index), the L-BFGS settings (history 100, strong-Wolfe line search,
no early stop), the pixel scale (RGB in [0, 1], normalised by torchvision's ImageNet mean and std before the network;
the image is unconstrained during the optimisation and clipped to [0, 1] when read out).

The model holds one synthesised image per (content, style) pair as a parameter, with one L-BFGS optimiser each
(Lightning's manual optimisation); an epoch runs ``iterations_per_epoch`` L-BFGS iterations on every pair (fewer when
the line search has used torch's limit of 1.25 loss evaluations per iteration first; its history carries over), so the
harness's epochs are chunks of the budget and its validation after each one is the loss curve. The feature network is
built here untrained in VGG-19's shape (or the suite's smaller one); its weights come from the task's data module
(``feature_state``: torchvision's ImageNet VGG-19, or the suite's committed network) when fit starts. ``StyleVGG`` is
that smaller VGG-shaped classifier, trained by the suite on Imagenette (``style-vgg``) for the open entry.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.base import Classifier

VGG19_WIDTHS = (64, 128, 256, 512, 512)
CONVS_PER_BLOCK = (2, 2, 4, 4, 1)  # VGG-19's blocks, up to conv5_1 (the last layer the losses read)
CONTENT_LAYER = "conv4_2"
STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's, for pixels in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg_features(widths: Sequence[int] = VGG19_WIDTHS, pooling: str = "avg", blocks=CONVS_PER_BLOCK) -> nn.Sequential:
    """VGG-19's convolutional layers up to conv5_1 with VGG's names (conv1_1, relu1_1, ..., pool1, ...): 3×3
    convolutions, padding 1, ReLU, 2×2 pooling of stride 2 (average or max) after blocks 1–4; He-initialised
    (normal, fan-in, zero biases) until trained weights are loaded."""
    if pooling not in ("avg", "max"):
        raise ValueError(f"pooling {pooling!r}: 'avg' or 'max'")
    layers: dict[str, nn.Module] = {}
    channels = 3
    for block, (width, convs) in enumerate(zip(widths, blocks), start=1):
        for i in range(1, convs + 1):
            layers[f"conv{block}_{i}"] = conv = nn.Conv2d(channels, width, 3, padding=1)
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")  # He et al. 2015: untrained, it stays alive
            nn.init.zeros_(conv.bias)
            layers[f"relu{block}_{i}"] = nn.ReLU()
            channels = width
        if block < len(blocks):
            layers[f"pool{block}"] = nn.AvgPool2d(2, 2) if pooling == "avg" else nn.MaxPool2d(2, 2)
    return nn.Sequential(OrderedDict(layers))


def torchvision_vgg19_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's ``vgg19`` state dict (``features.<index>.weight``) → ``vgg_features``' names, conv1_1 … conv5_1."""
    names = [f"conv{block}_{i}" for block, convs in enumerate(CONVS_PER_BLOCK, start=1) for i in range(1, convs + 1)]
    indices = sorted({int(key.split(".")[1]) for key in state if key.startswith("features.")})[: len(names)]
    return {f"{name}.{kind}": state[f"features.{index}.{kind}"] for name, index in zip(names, indices)
            for kind in ("weight", "bias")}  # fmt: skip


def extract(features: nn.Sequential, images: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """The ReLU outputs of the named conv layers (the papers' feature maps) for images (B, 3, H, W) in [0, 1]."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x, out, wanted = (images - mean) / std, {}, {name.replace("conv", "relu"): name for name in layers}
    last = max(list(features._modules).index(r) for r in wanted)
    for i, (name, module) in enumerate(features.named_children()):
        x = module(x)
        if name in wanted:
            out[wanted[name]] = x
        if i == last:
            break
    return out


@torch.no_grad()
def normalise_activations(features: nn.Sequential, images: torch.Tensor, chunk: int = 8,
                          pooling: str | None = "max") -> torch.Tensor:  # fmt: skip
    """Scale the weights so that every filter's mean ReLU activation over ``images`` and positions is one (Gatys et al.:
    the network's function is unchanged up to that scale). Each conv's output filter c is divided by its mean m_c in
    the original network and the next conv's input channel c multiplied by it, so the next layer's pre-activation is
    the original one and its own mean is its original mean: one pass gives every scale. A filter that never fires
    (m_c = 0) is left as it is. The means are those of the network as it was trained (``pooling="max"``: its pooling
    layers are max pooling while they are measured; the papers normalise VGG-19, then synthesise with average
    pooling); ``pooling=None`` measures the network as it is. Returns the means, in conv order."""
    if pooling is not None:  # a twin that shares the conv layers (scaled in place) with other pooling layers
        pool = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}[pooling]
        features = nn.Sequential(OrderedDict((name, pool(2, 2) if name.startswith("pool") else module)
                                             for name, module in features.named_children()))  # fmt: skip
    names = [name for name in features._modules if name.startswith("conv")]
    convs = [getattr(features, name) for name in names]
    sums = [torch.zeros(conv.out_channels, dtype=torch.float64) for conv in convs]
    positions = [0] * len(convs)
    for batch in images.split(chunk):
        maps = extract(features, batch.to(convs[0].weight), names)
        for i, name in enumerate(names):
            sums[i] += maps[name].double().sum((0, 2, 3)).cpu()
            positions[i] += maps[name][:, 0].numel()
        del maps
    means = []
    for i, conv in enumerate(convs):
        mean = (sums[i] / positions[i]).float().to(conv.weight.device)
        scale = torch.where(mean > 0, mean, torch.ones_like(mean))
        conv.weight.div_(scale.view(-1, 1, 1, 1))
        conv.bias.div_(scale)
        if i + 1 < len(convs):
            convs[i + 1].weight.mul_(scale.view(1, -1, 1, 1))
        means.append(mean)
    return torch.cat(means)


def gram(features: torch.Tensor) -> torch.Tensor:
    """(B, N, H, W) feature maps → (B, N, N) Gram matrices F Fᵀ / M, M = H·W positions."""
    flat = features.flatten(2)
    return flat @ flat.transpose(1, 2) / flat.shape[-1]


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """½ Σ (F − P)² (Gatys et al., Eq. 1), summed over the batch."""
    return 0.5 * (features - target).square().sum()


def style_layer_loss(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """E_l = 1/(4 N² M²) Σ (G − A)² (Eq. 4), as 1/(4 N²) Σ (Ĝ − Â)² with Ĝ = G / M, summed over the batch."""
    n = features.shape[1]
    return (gram(features) - target_gram).square().sum() / (4 * n * n)


def style_transfer_losses(features: nn.Sequential, image: torch.Tensor, content_target: torch.Tensor,
                          style_grams: Sequence[torch.Tensor], *, content_layer: str = CONTENT_LAYER,
                          style_layers: Sequence[str] = STYLE_LAYERS, style_weights: Sequence[float] | None = None,
                          alpha: float = 1.0, beta: float = 1e3) -> dict[str, torch.Tensor]:  # fmt: skip
    """The papers' losses of ``image`` (B, 3, H, W) against the photograph's content features and the painting's
    Gram matrices (one per style layer): {'content', 'style', 'total'}, total = α content + β style."""
    weights = style_weights if style_weights is not None else [1.0 / len(style_layers)] * len(style_layers)
    maps = extract(features, image, [content_layer, *style_layers])
    content = content_loss(maps[content_layer], content_target)
    style = sum(w * style_layer_loss(maps[name], a) for w, name, a in zip(weights, style_layers, style_grams))
    return {"content": content, "style": style, "total": alpha * content + beta * style}


@torch.no_grad()
def targets(features: nn.Sequential, content: torch.Tensor, style: torch.Tensor, content_layer: str = CONTENT_LAYER,
            style_layers: Sequence[str] = STYLE_LAYERS) -> tuple[torch.Tensor, list[torch.Tensor]]:  # fmt: skip
    """The photograph's content features P and the painting's Gram matrices A (images (1, 3, H, W) in [0, 1])."""
    p = extract(features, content, [content_layer])[content_layer]
    maps = extract(features, style, style_layers)
    return p, [gram(maps[name]) for name in style_layers]


def same_shapes(own: dict[str, torch.Tensor], given: dict[str, torch.Tensor], what: str, widths) -> None:
    """``given`` has exactly ``own``'s tensors and shapes, or one line naming the first that differs."""
    for key, tensor in own.items():
        found = tuple(given[key].shape) if key in given else "absent"
        if found != tuple(tensor.shape):
            raise ValueError(f"{what}'s {key}: {found}, where widths {list(widths)} build {tuple(tensor.shape)}")
    extra = sorted(set(given) - set(own))
    if extra:
        raise ValueError(f"{what} has {extra[0]}, which widths {list(widths)} do not build")


def white_noise(shape: tuple[int, int], seed: int, index: int) -> torch.Tensor:
    """The starting image of pair ``index``: (3, H, W) i.i.d. uniform in [0, 1], a function of (seed, index)."""
    generator = torch.Generator().manual_seed(1_000_003 * seed + index)
    return torch.rand(3, *shape, generator=generator)


class NeuralStyle(L.LightningModule):
    """One synthesised image per (content, style) pair, each optimised by its own L-BFGS in a fixed feature network
    (``network``: VGG-19's shape, or the suite's ``StyleVGG`` widths); see the module's docstring."""

    tests_final_weights = True  # the images fit ends with are the result (no checkpoint is selected)
    # the harness's refusal of --devices N reads: "<entry> <this>, so N devices have nothing to share"
    single_process_reason = "optimises one image per pair with its own L-BFGS (full-batch, no data to split)"

    def __init__(
        self,
        network: str = "vgg19",  # which weights the data module provides: "vgg19" (torchvision, ImageNet) or "suite"
        widths: tuple[int, ...] = VGG19_WIDTHS,  # filters per block: VGG-19's, or the suite network's
        content_layer: str = CONTENT_LAYER,
        style_layers: tuple[str, ...] = STYLE_LAYERS,
        style_weights: tuple[float, ...] = (0.2, 0.2, 0.2, 0.2, 0.2),
        alpha: float = 1.0,
        beta: float = 1e3,  # α/β = 1e-3, arXiv Fig. 2 B–D
        pooling: str = "avg",
        normalise: bool = True,  # the papers' mean-activation normalisation of the network
        iterations_per_epoch: int = 50,  # L-BFGS iterations on every pair per epoch (≤ 1.25× as many evaluations)
        history_size: int = 100,
        line_search: str | None = "strong_wolfe",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if len(style_weights) != len(style_layers):
            raise ValueError(f"{len(style_weights)} style weights for {len(style_layers)} style layers")
        self.net = vgg_features(widths, pooling).requires_grad_(False)
        self.register_buffer("weights_loaded", torch.tensor(False))  # True once the data module's weights are in
        self.images = nn.ParameterList()
        self.automatic_optimization = False
        self._targets: dict[int, tuple] = {}

    # --- the StyleTransfer interface --------------------------------------------------------------------------------
    def prepare(self, shapes: list[tuple[int, int]], seed: int) -> None:
        """One white-noise image per pair, (3, H, W) each, seeded by (seed, pair index)."""
        device = self.net.conv1_1.weight.device
        self.images = nn.ParameterList(nn.Parameter(white_noise(tuple(s), seed, i).to(device))
                                       for i, s in enumerate(shapes))  # fmt: skip
        self._targets.clear()

    def synthesised(self, index: int) -> torch.Tensor:
        """Pair ``index``'s image as it stands, clipped to [0, 1]: (3, H, W), detached."""
        return self.images[index].detach().clamp(0, 1)

    def losses(self, image: torch.Tensor, content: torch.Tensor, style: torch.Tensor) -> dict[str, torch.Tensor]:
        """The papers' losses of ``image`` (3, H, W) for a pair, in this model's own network."""
        p, grams = targets(self.net, content[None], style[None], self.hparams.content_layer, self.hparams.style_layers)
        return self._losses(image[None], (p, grams))

    def _losses(self, image: torch.Tensor, target) -> dict[str, torch.Tensor]:
        hp = self.hparams
        return style_transfer_losses(self.net, image, *target, content_layer=hp.content_layer,
                                     style_layers=hp.style_layers, style_weights=hp.style_weights, alpha=hp.alpha,
                                     beta=hp.beta)  # fmt: skip

    # --- setting up -------------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if stage != "fit" or datamodule is None:
            return  # the registry's example step: the images were prepared on its batch, the network is untrained
        if not bool(self.weights_loaded):
            state = datamodule.feature_state(self.hparams.network)  # None only for the generated example's data
            if state is not None:
                same_shapes(self.net.state_dict(), state, f"the {self.hparams.network} network", self.hparams.widths)
                self.net.load_state_dict(state)
            if self.hparams.normalise:
                normalise_activations(self.net, datamodule.normalisation_images().to(self.net.conv1_1.weight))
            self.weights_loaded.fill_(True)
        if len(self.images) == 0:
            self.prepare(datamodule.shapes(), datamodule.seed)

    def configure_optimizers(self):
        if len(self.images) == 0:
            raise RuntimeError("NeuralStyle has no images to optimise: prepare() them (the data module's shapes)")
        hp = self.hparams
        return [torch.optim.LBFGS([image], lr=1.0, max_iter=hp.iterations_per_epoch, history_size=hp.history_size,
                                  tolerance_grad=0.0, tolerance_change=0.0, line_search_fn=hp.line_search)
                for image in self.images]  # fmt: skip

    # --- training ---------------------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        indices, contents, styles = batch
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        totals = []
        for index, content, style in zip(indices.tolist(), contents, styles):
            if index not in self._targets:  # the photograph's features and the painting's Gram matrices, once
                self._targets[index] = targets(self.net, content[None].to(self.device), style[None].to(self.device),
                                               self.hparams.content_layer, self.hparams.style_layers)  # fmt: skip
            image, optimizer, target = self.images[index], optimizers[index], self._targets[index]
            last = {}

            def closure(image=image, optimizer=optimizer, target=target, last=last):
                optimizer.zero_grad()
                losses = self._losses(image[None], target)
                self.manual_backward(losses["total"])
                last.update({k: v.detach() for k, v in losses.items()})
                return losses["total"]

            optimizer.step(closure=closure)
            totals.append(last["total"])
        loss = torch.stack(totals).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(totals))
        return loss

    def validation_step(self, batch, batch_idx):
        pass  # the task measures the images in its own evaluation network (benchmarks/tasks/style.py)

    def test_step(self, batch, batch_idx):
        pass


class StyleVGG(Classifier):
    """A small VGG-19-shaped classifier (Simonyan & Zisserman 2014's layer plan, fewer filters) that the suite trains on
    Imagenette to stand in for VGG-19 where its ImageNet weights cannot be had: conv1_1 … conv5_1 (3×3, ReLU, max
    pooling as VGG trains), then global average pooling and one linear layer. Its feature layers have VGG-19's names,
    so Gatys et al.'s losses read the same layers of it; for synthesis ``NeuralStyle`` rebuilds them with average
    pooling, as the papers do with VGG-19."""

    def __init__(
        self,
        num_classes: int = 10,
        widths: tuple[int, ...] = (16, 32, 64, 128, 128),
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        lr_drop_epochs: tuple[int, ...] = (),
    ) -> None:
        super().__init__(num_classes)
        self.save_hyperparameters()
        self.features = vgg_features(widths, pooling="max")
        self.head = nn.Linear(widths[-1], num_classes)  # the convolutions are He-initialised by vgg_features

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images).mean((2, 3))  # (B, widths[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(hp.lr_drop_epochs), 0.1)
        return [optimizer], [schedule]
