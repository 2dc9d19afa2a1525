"""Neural style transfer (``lightning_modules/gatys.py``, task ``style-fig2``): the papers' losses by hand, the
normalisation, torchvision's VGG-19 layout, L-BFGS on the task's generated example, seeds, and one-line errors for bad
inputs and missing weights. No data and no downloads."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from benchmarks.tasks import get_task
from benchmarks.tasks.files import DataError
from benchmarks.tasks.style import (
    EVAL_NET,
    STYLE_FILES,
    VGG19_FILE,
    StyleFig2Data,
    check_file,
    load_suite_network,
    read_image,
    vgg19_weights,
)
from lightning_modules.gatys import (
    NeuralStyle,
    content_loss,
    extract,
    gram,
    normalise_activations,
    style_layer_loss,
    style_transfer_losses,
    torchvision_vgg19_state,
    vgg_features,
)

TINY = (4, 4, 4, 4, 4)  # filters per block: the example's networks, small enough for a test


def test_gram_content_and_style_losses_are_the_papers_formulas_by_hand():
    f = torch.tensor([[[[1.0, 2.0], [0.0, 1.0]], [[3.0, 0.0], [1.0, 1.0]]]])  # (1, N=2, 2, 2): M = 4 positions
    g = f.flatten(2)[0] @ f.flatten(2)[0].T  # F Fᵀ = [[6, 4], [4, 11]]
    assert g.tolist() == [[6.0, 4.0], [4.0, 11.0]]
    assert torch.allclose(gram(f)[0], g / 4)
    s = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]], [[2.0, 2.0], [0.0, 1.0]]]])  # a painting of the same size
    a = s.flatten(2)[0] @ s.flatten(2)[0].T
    paper = ((g - a) ** 2).sum() / (4 * 2**2 * 4**2)  # E_l = 1/(4 N² M²) Σ (G − A)²
    assert torch.allclose(style_layer_loss(f, gram(s)), paper)
    p = torch.zeros_like(f)
    assert float(content_loss(f, p)) == 0.5 * float((f**2).sum())  # ½ Σ (F − P)²


def test_the_total_is_alpha_content_plus_beta_times_the_weighted_style_layers():
    torch.manual_seed(0)
    net = vgg_features(TINY)
    image, content, style = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), torch.rand(1, 3, 40, 24)
    layers = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
    maps, cmaps, smaps = (extract(net, x, ["conv4_2", *layers]) for x in (image, content, style))
    grams = [gram(smaps[name]) for name in layers]
    losses = style_transfer_losses(net, image, cmaps["conv4_2"], grams, alpha=2.0, beta=7.0)
    content = 0.5 * ((maps["conv4_2"] - cmaps["conv4_2"]) ** 2).sum()
    style = sum(0.2 * style_layer_loss(maps[name], a) for name, a in zip(layers, grams))
    assert torch.allclose(losses["content"], content) and torch.allclose(losses["style"], style)
    assert torch.allclose(losses["total"], 2.0 * content + 7.0 * style)


def test_normalisation_makes_every_filters_mean_activation_one_and_keeps_the_function():
    torch.manual_seed(0)
    net = vgg_features((3, 5, 4, 6, 3), pooling="avg")
    images = torch.rand(6, 3, 32, 32)
    names = [name for name in net._modules if name.startswith("conv")]
    before = extract(net, images, names)
    means = normalise_activations(net, images, chunk=4, pooling=None)  # measured as it is: exactly one after
    after = extract(net, images, names)
    for name in names:
        mean = after[name].mean((0, 2, 3))
        alive = before[name].mean((0, 2, 3)) > 0
        assert torch.allclose(mean[alive], torch.ones(int(alive.sum())), atol=1e-4), name
        scale = torch.where(before[name].mean((0, 2, 3)) > 0, before[name].mean((0, 2, 3)), torch.ones(1))
        assert torch.allclose(after[name] * scale.view(1, -1, 1, 1), before[name], rtol=1e-4, atol=1e-5), name
    assert len(means) == sum(getattr(net, name).out_channels for name in names)
    torch.manual_seed(0)
    net, twin = vgg_features((3, 5, 4, 6, 3), pooling="avg"), vgg_features((3, 5, 4, 6, 3), pooling="max")
    twin.load_state_dict(net.state_dict())
    normalise_activations(net, images)  # by default measured as trained: with max pooling
    normalise_activations(twin, images, pooling=None)
    assert all(torch.allclose(a, b) for a, b in zip(net.state_dict().values(), twin.state_dict().values()))
    assert isinstance(net.pool1, torch.nn.AvgPool2d)  # and the network keeps its average pooling


def test_torchvision_vgg19_state_maps_onto_the_named_layers():
    """torchvision's ``features.<i>`` indices → conv1_1 … conv5_1: with max pooling the same ReLU outputs."""
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.vgg19().features.eval()
    net = vgg_features(pooling="max")
    net.load_state_dict(torchvision_vgg19_state({f"features.{k}": v for k, v in reference.state_dict().items()}))
    x = torch.rand(1, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference[:30]((x - mean) / std)  # 30: relu5_1 is index 29
        assert torch.allclose(extract(net, x, ["conv5_1"])["conv5_1"], expected, atol=1e-5)
        expected_42 = reference[:23]((x - mean) / std)  # relu4_2 is index 22
        assert torch.allclose(extract(net, x, ["conv4_2"])["conv4_2"], expected_42, atol=1e-5)


def example(tmp_path, seed: int = 0) -> StyleFig2Data:
    datamodule = get_task("style-fig2").example_datamodule(tmp_path / "example", 6, seed=seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def fit(datamodule, epochs: int = 2, iterations: int = 5) -> NeuralStyle:
    torch.manual_seed(0)
    model = NeuralStyle(network="suite", widths=TINY, iterations_per_epoch=iterations)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        deterministic=True)  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    return model


def test_lbfgs_lowers_every_pairs_loss_from_white_noise_and_the_seed_repeats(tmp_path):
    datamodule = example(tmp_path)
    start = NeuralStyle(network="suite", widths=TINY)
    start.prepare(datamodule.shapes(), datamodule.seed)
    model = fit(datamodule)
    for i, (content, style) in enumerate(datamodule.pairs):
        noise = start.images[i].detach()
        before, after = model.losses(noise, content, style), model.losses(model.synthesised(i), content, style)
        assert float(after["total"]) < 0.5 * float(before["total"]), i
    assert not torch.equal(model.synthesised(0), start.synthesised(0))
    again = fit(example(tmp_path))  # the same seed: the same images, bit for bit
    assert all(torch.equal(a, b) for a, b in zip(model.images, again.images))
    other = NeuralStyle(network="suite", widths=TINY)
    other.prepare(datamodule.shapes(), 1)
    assert not torch.equal(other.images[0], start.images[0])


def test_the_task_measures_and_writes_the_grid_and_states_its_budget(tmp_path):
    from PIL import Image

    from benchmarks.tasks.style import measure

    task = get_task("style-fig2")
    datamodule = example(tmp_path)
    model = fit(datamodule, epochs=1, iterations=3)
    metrics = task.evaluate(None, model, datamodule, None, tmp_path / "artifacts")
    assert 0 < metrics["loss"] < math.inf and metrics["total_loss"] > 0 and metrics["own_total_loss"] > 0
    assert metrics["feature_weights"].startswith("untrained") and metrics["pairs"].startswith("0: tubingen.jpg")
    assert measure(model, datamodule) == {k: metrics[k] for k in ("content_loss", "style_loss", "total_loss", "loss")}
    # the photograph returned unchanged: content loss 0, so its relative loss is its style term over the noise's total
    photo = model.losses(datamodule.pairs[0][0], *datamodule.pairs[0])
    assert float(photo["content"]) == 0 and 0 < metrics["loss_real"] < math.inf  # untrained nets: any size
    grid = Image.open(tmp_path / "artifacts" / task.shown_artifact)
    assert grid.size[1] == 6 * (192 + 4) + 4
    config = {"trainer": {"max_epochs": 10}, "model": {"init_args": {"iterations_per_epoch": 50}}}
    assert task.budget(config).startswith("up to 500 L-BFGS iterations per pair")
    assert datamodule.identity()["example/networks"] == "untrained"
    declared = task.declared_identity().required
    assert {f"style/{name}": f"sha256:{digest}" for name, digest in STYLE_FILES.items()}.items() <= declared.items()


def one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message
    return message


def test_a_style_file_with_a_wrong_checksum_is_refused_naming_it(tmp_path):
    datamodule = example(tmp_path)
    path = datamodule.style_dir() / "starry_night.jpg"
    path.write_bytes(path.read_bytes()[:-10])  # truncated
    fresh = type(datamodule)(datamodule.data_dir, 1, download=False)
    with pytest.raises(DataError) as info:
        fresh.prepare_data()
    assert one_line(info.value).startswith(f"{path}: sha256 ") and "the file was not used" in str(info.value)


def test_a_missing_style_file_offline_says_where_to_put_it(tmp_path):
    datamodule = example(tmp_path)
    (datamodule.style_dir() / "the_scream.jpg").unlink()
    fresh = type(datamodule)(datamodule.data_dir, 1, download=False)
    with pytest.raises(DataError) as info:
        fresh.prepare_data()
    message = one_line(info.value)
    assert message.startswith(f"{datamodule.style_dir() / 'the_scream.jpg'} is missing and downloading is off")
    assert "MILESTONES_DATA" in message and "tubingen.jpg" in message
    with pytest.raises(DataError, match="is missing"):  # the real task's files, in an empty data folder (CI's)
        StyleFig2Data(tmp_path / "empty", 1, download=False).prepare_data()


def test_a_file_that_is_not_an_image_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "tubingen.jpg"
    bad.write_bytes(b"<html>not a jpeg</html>")
    with pytest.raises(DataError) as info:
        read_image(bad)
    assert one_line(info.value).startswith(f"{bad}: not a readable image")
    # through the data module: a pinned checksum that matches a file that does not decode
    datamodule = example(tmp_path)
    path = datamodule.style_dir() / "tubingen.jpg"
    path.write_bytes(b"GIF89a broken")
    from benchmarks.core.checksums import sha256_file

    pinned = type("Pinned", (type(datamodule),), {"style_files": {**datamodule.style_files,
                                                                    "tubingen.jpg": sha256_file(path)}})  # fmt: skip
    with pytest.raises(DataError) as info:
        pinned(datamodule.data_dir, 1, download=False).setup("fit")
    assert one_line(info.value).startswith(f"{path}: not a readable image")
    assert check_file(path, sha256_file(path), "x") == path


def test_vgg19_weights_offline_is_one_line_saying_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(DataError) as info:
        vgg19_weights(tmp_path / "data", download=False)
    message = one_line(info.value)
    assert message.startswith("VGG-19's ImageNet weights are missing and downloading is off: put vgg19-dcbb9e9d.pth")
    assert str(tmp_path / "data") in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message and "gatys-style-suite" in message
    wrong = tmp_path / "data" / VGG19_FILE
    wrong.parent.mkdir(parents=True)
    wrong.write_bytes(b"not the weights")
    with pytest.raises(DataError) as info:
        vgg19_weights(tmp_path / "data", download=False)
    assert one_line(info.value).startswith(f"{wrong}: sha256 ") and "does not start with dcbb9e9d" in str(info.value)


def test_vgg19_download_failure_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(DataError) as info:
        vgg19_weights(None, download=True)
    assert one_line(info.value).startswith("VGG-19's ImageNet weights could not be downloaded (network unreachable)")


def test_the_suite_network_must_exist_and_match_its_checksum(tmp_path):
    with pytest.raises(DataError, match="has not been made yet"):
        load_suite_network(EVAL_NET[0], "")
    with pytest.raises(DataError, match="is missing"):
        load_suite_network("absent.pt", "0" * 64, tmp_path)
    torch.save({"state_dict": {"features.conv1_1.bias": torch.zeros(2), "head.bias": torch.zeros(1)}},
               tmp_path / "net.pt")  # fmt: skip
    with pytest.raises(DataError) as info:
        load_suite_network("net.pt", "0" * 64, tmp_path)
    assert one_line(info.value).startswith(f"{tmp_path / 'net.pt'}: sha256 ")
    from benchmarks.core.checksums import sha256_file

    assert list(load_suite_network("net.pt", sha256_file(tmp_path / "net.pt"), tmp_path)) == ["conv1_1.bias"]


def test_a_real_run_never_falls_back_to_an_untrained_network(tmp_path, monkeypatch):
    """Only the generated example's class provides no weights; the real data module gives the committed style-vgg or
    torchvision's VGG-19, and raises where it has none."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    datamodule = StyleFig2Data(tmp_path, 1, download=False)
    with pytest.raises(DataError):
        datamodule.feature_state("vgg19")
    state = datamodule.feature_state("suite")  # the committed file, after its checksum
    assert datamodule.weights_note == f"{EVAL_NET[0]} sha256:{EVAL_NET[1]}" and len(EVAL_NET[1]) == 64
    assert [state[f"conv{b}_1.weight"].shape[0] for b in range(1, 6)] == [16, 32, 64, 128, 128]
    with pytest.raises(ValueError, match="'vgg19' or 'suite'"):
        datamodule.feature_state("resnet")


def test_a_resumed_run_ends_with_exactly_the_images_of_an_uninterrupted_one(tmp_path):
    """The images, the networks' weights and every L-BFGS state (its history) are in the checkpoint, which loads with
    ``weights_only=True``: 2 epochs + 1 resumed equal 3 epochs, bit for bit."""

    def run(epochs: int, ckpt=None, save=None) -> NeuralStyle:
        L.seed_everything(0, verbose=False)
        model = NeuralStyle(network="suite", widths=TINY, iterations_per_epoch=4)
        trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            deterministic=True)  # fmt: skip
        trainer.fit(model, datamodule=example(tmp_path), ckpt_path=ckpt)
        if save:
            trainer.save_checkpoint(save)
        return model

    whole = run(3)
    run(2, save=tmp_path / "two.ckpt")
    state = torch.load(tmp_path / "two.ckpt", weights_only=True)
    lbfgs = state["optimizer_states"][0]["state"][0]  # ≤ 4 iterations and ≤ 5 evaluations (torch's 1.25×) an epoch
    assert len(state["optimizer_states"]) == 6 and 0 < lbfgs["n_iter"] <= 8 and lbfgs["func_evals"] <= 10
    resumed = run(3, ckpt=tmp_path / "two.ckpt")
    assert all(torch.equal(a, b) for a, b in zip(whole.images, resumed.images))


def test_an_exported_style_vgg_loads_as_the_evaluation_network_and_a_wrong_shape_is_one_line(tmp_path, monkeypatch):
    """``milestones feature-net imagenette-224re`` saves {class_path, hparams, state_dict} of StyleVGG: its feature
    layers are the evaluation network (its widths from the file) and the open entry's network."""
    from benchmarks.core.checksums import sha256_file
    from lightning_modules.gatys import StyleVGG, same_shapes

    torch.manual_seed(0)
    classifier = StyleVGG(widths=TINY)
    saved = {"class_path": "lightning_modules.gatys.StyleVGG", "hparams": dict(classifier.hparams),
             "state_dict": classifier.state_dict()}  # fmt: skip
    torch.save(saved, tmp_path / "net.pt")
    state = load_suite_network("net.pt", sha256_file(tmp_path / "net.pt"), tmp_path)
    datamodule = example(tmp_path)
    monkeypatch.setattr(type(datamodule), "evaluation_state", lambda self: state)
    net = datamodule.evaluation_network()
    assert [getattr(net, f"conv{b}_1").out_channels for b in range(1, 6)] == list(TINY)
    ratio = classifier.features.conv1_1.weight / net.conv1_1.weight  # the same filters, each scaled by its mean
    assert torch.allclose(ratio, ratio.flatten(1)[:, :1].view(-1, 1, 1, 1).expand_as(ratio), rtol=1e-4)
    with pytest.raises(ValueError) as info:
        same_shapes(vgg_features().state_dict(), state, "the suite network", (64, 128, 256, 512, 512))
    assert one_line(info.value) == ("the suite network's conv1_1.weight: (4, 3, 3, 3), where widths "
                                    "[64, 128, 256, 512, 512] build (64, 3, 3, 3)")  # fmt: skip


def test_the_ratio_sweep_scores_as_the_task_does_and_draws_a_row_per_pair(tmp_path):
    """benchmarks/tools/style_ratios.py, the evidence for EVALUATION_BETA: its photograph scores are the task's
    loss_real pair by pair, an optimised image scores below the white noise, and its picture has a row per pair."""
    import json

    from PIL import Image

    from benchmarks.tasks.style import photograph_loss
    from benchmarks.tools import style_ratios

    datamodule = example(tmp_path)
    found, _ = style_ratios.sweep(datamodule, list(range(len(datamodule.pairs))), [], iterations=0)
    photographs = [pair["photograph"]["score"] for pair in found.values()]
    assert sum(photographs) / len(photographs) == pytest.approx(photograph_loss(datamodule), rel=1e-6)
    style_ratios.main(["--example-data", "--out-dir", str(tmp_path / "out"), "--pairs", "0,3", "--ratios", "1e-5",
                       "--iterations", "5"])  # fmt: skip
    record = json.loads((tmp_path / "out" / "ratios.json").read_text())
    assert [set(pair) for pair in record["pairs"].values()] == [{"photograph", "1e-05"}] * 2
    assert all(0 < pair["1e-05"]["score"] < 1 for pair in record["pairs"].values())  # better than the noise
    width, height = Image.open(tmp_path / "out" / "ratios.png").size
    assert height == 2 * (160 + 4) + 4 and width > 3 * 160


def test_the_ratio_sweep_names_a_pair_the_task_does_not_have(tmp_path):
    from benchmarks.tools import style_ratios

    with pytest.raises(SystemExit, match="no pair 6: style-fig2 has pairs 0-5"):
        style_ratios.sweep(example(tmp_path), [1, 6], [1e-5], iterations=1)
