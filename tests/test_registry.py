"""Parametrised over the registry: a new entry (one model file + one YAML) is tested here with no test edit."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from benchmarks.harness import run_benchmark
from benchmarks.registry import ConfigError, all_entries, config_hash, get_entry, load_entry
from benchmarks.tasks import UnknownNameError, all_tasks, get_task

ENTRIES = sorted(all_entries())
ENTRY_TASKS = [(name, task) for name in ENTRIES for task in all_entries()[name].config.tasks]  # every entry × task


def test_registry_is_not_empty_and_names_match_files():
    assert {"mcculloch-pitts", "perceptron", "mlp", "lenet5", "lenet5-modern"} <= set(ENTRIES)
    for name, entry in all_entries().items():
        assert entry.path.stem == name == entry.config.entry


@pytest.mark.parametrize("name", ENTRIES)
def test_config_opens_with_what_it_achieves_and_the_command(name):
    text = get_entry(name).path.read_text()
    assert text.startswith("#"), "a config opens with what it achieves"
    assert f"bench-{name}" in text or f"bench {name}" in text, "a config names the command that runs it"


@pytest.mark.parametrize("name", ENTRIES)
def test_model_docstring_cites_the_paper(name):
    entry = get_entry(name)
    doc = inspect_doc(entry.model_class())
    assert str(entry.config.paper.year) in doc
    first_author_surname = entry.config.paper.authors.split(",")[0].split()[-1]
    assert first_author_surname in doc


def inspect_doc(cls) -> str:
    import sys

    return (sys.modules[cls.__module__].__doc__ or "") + (cls.__doc__ or "")


@pytest.fixture(scope="module")
def example_batches():
    """The tasks' example batches, made once per (task, data arguments) for the whole module."""
    made = {}

    def get(task, init_args: dict):
        key = (task.name, tuple(sorted(init_args.items())))
        if key not in made:
            made[key] = task.example_batch(6, **init_args)
        return made[key]

    return get


class Once:
    """A loader of one batch (a bare list would be taken for several loaders)."""

    def __init__(self, batch) -> None:
        self.batch = batch

    def __iter__(self):
        yield self.batch

    def __len__(self) -> int:
        return 1


class StepRecord(L.Callback):
    """What one training step did: its loss and whether every gradient it stepped with was finite."""

    def __init__(self) -> None:
        self.losses, self.finite_grads = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss) if loss is not None else math.nan)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self.finite_grads.append(all(torch.isfinite(g).all() for g in grads))


@pytest.mark.parametrize("name,task_name", ENTRY_TASKS)
def test_the_model_meets_its_tasks_interface_and_takes_a_step_on_the_tasks_example(name, task_name, example_batches):
    """The same for every kind: the task's declared interface (and the optional ones the model has) checked on the
    task's own example batch, then one training step through Lightning, automatic or manual optimisation alike."""
    entry, task = get_entry(name), get_task(task_name)
    torch.manual_seed(0)
    model = entry.build_model(task)
    batch = example_batches(task, entry.config.data.init_args)
    task.interface.check(model, task.model_inputs, batch)
    for interface in task.optional_interfaces:
        if interface.implemented_by(model):
            interface.check(model, task.model_inputs, batch)
    before = [p.detach().clone() for p in model.parameters()]
    record = StepRecord()
    trainer = L.Trainer(max_epochs=1, num_sanity_val_steps=0, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[record])  # fmt: skip
    trainer.fit(model, train_dataloaders=Once(batch), val_dataloaders=Once(batch))
    assert record.losses and all(math.isfinite(loss) for loss in record.losses), "a finite training loss"
    assert all(record.finite_grads), "finite gradients at every optimiser step"
    assert all(torch.isfinite(p).all() for p in model.parameters())
    learns = any(p.requires_grad for p in model.parameters())  # McCulloch-Pitts: fixed by design
    assert not learns or any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), "the step moved it"


@pytest.mark.parametrize("name,task_name", ENTRY_TASKS)
def test_one_short_fit_through_the_harness_on_the_tasks_example(name, task_name, quick):
    """Every entry on every task it lists, through the harness on the task's generated example (no data needed): a
    smoke result with a valid metric, and the artifact the task shows."""
    task = get_task(task_name)
    result, path = run_benchmark(name, quick(task=task_name, example_data=True, limit_train_batches=2))
    assert result.status == "ok" and result.smoke and path.exists(), [s.failure for s in result.seeds]
    assert task.metric.valid(result.seeds[0].metrics[result.metric])
    assert task.shown_artifact is None or task.shown_artifact in result.seeds[0].artifacts


def test_a_model_that_lacks_a_method_its_task_calls_is_refused_when_the_config_loads(tmp_path):
    """A character model must generate: an MLP classifier named for shakespeare-char fails at load, naming the entry,
    the task and the method with its declared signature, before anything trains."""
    text = get_entry("gpt-char").path.read_text().replace("entry: gpt-char", "entry: tiny")
    text = text.replace("lightning_modules.gpt.GPT", "lightning_modules.lenet_modern.LeNet5Modern")
    text = text.split("  init_args:\n    context: 64")[0] + "data:" + text.split("\ndata:")[1]
    path = _write(tmp_path, "tiny", text)
    with pytest.raises(ConfigError) as info:
        load_entry(path)
    message = str(info.value)
    assert message.startswith(f"{path}: entry 'tiny' runs on task shakespeare-char, whose models provide Character")
    assert "LeNet5Modern lacks generate(ids: Tensor, n: int" in message and "\n" not in message


def test_an_interface_counts_only_a_milestones_own_methods():
    """``forward`` exists on every torch module (it raises) and a shared base's placeholder is abstract: neither
    counts as provided."""
    from benchmarks.tasks.interfaces import CLASS_SCORES, IMAGE_SAMPLER
    from lightning_modules.base import AdversarialGenerator, ImageGenerator
    from lightning_modules.gan import GAN

    assert CLASS_SCORES.missing(L.LightningModule) == ["forward"]
    assert IMAGE_SAMPLER.missing(ImageGenerator) == ["noise", "generate"]
    assert IMAGE_SAMPLER.missing(AdversarialGenerator) == ["noise", "generate"] and IMAGE_SAMPLER.missing(GAN) == []


def test_config_hash_is_stable_and_sensitive():
    entry, task = get_entry("lenet5-modern"), get_task("digits")
    assert config_hash(entry.resolved_config(task)) == config_hash(entry.resolved_config(task))
    assert config_hash(entry.resolved_config(task)) != config_hash(entry.resolved_config(task, max_epochs=1))


def test_unknown_entry_lists_close_matches():
    with pytest.raises(UnknownNameError, match="did you mean lenet5"):
        get_entry("lenet")


def test_unknown_task_lists_close_matches():
    with pytest.raises(UnknownNameError, match="did you mean mnist"):
        get_task("minst")
    assert set(all_tasks()) >= {"mnist", "fashion-mnist", "digits", "logic-gates"}


def _write(tmp_path, name: str, text: str):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def _valid_yaml(name: str = "tiny") -> str:
    return get_entry("mlp").path.read_text().replace("entry: mlp", f"entry: {name}")


def test_a_valid_copy_loads(tmp_path):
    assert load_entry(_write(tmp_path, "tiny", _valid_yaml())).name == "tiny"


@pytest.mark.parametrize(
    "change,message",
    [
        (("batch_size: 32", "batch_size: big"), "data.batch_size"),
        (("    hidden: 300", "    hidden: 300\n    hiddne: 10"), "hiddne"),
        (("    hidden: 300", "    hidden: many"), "hidden"),
        (("division: open", "division: closed-ish"), "division"),
        (("seeds: 3", "seeds: 3\nseed: 4"), "seed"),
        (("tasks: [mnist, fashion-mnist, digits]", "tasks: [mnist, cifar-100]"), "cifar-100"),
        (("class_path: lightning_modules.mlp.BackpropMLP", "class_path: lightning_modules.mlp.Nope"), "Nope"),
        (("class_path: lightning_modules.mlp.BackpropMLP", "class_path: os.system"), "lightning_modules"),
        (("entry: tiny", "entry: other"), "file name"),
    ],
)
def test_invalid_config_names_file_and_field(tmp_path, change, message):
    path = _write(tmp_path, "tiny", _valid_yaml().replace(*change))
    with pytest.raises(ConfigError) as info:
        load_entry(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_config_that_is_not_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_entry(_write(tmp_path, "tiny", "entry: [unclosed\n"))


def test_readme_names_no_task_as_an_entrys_that_the_entry_refuses():
    """The README's ImageNet table lists tasks; each one that no entry runs is said to be so, not called AlexNet's."""
    from benchmarks.paths import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### ImageNet subsets")[1].split("\n#")[0]
    cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    listed = {name for cell in cells for name in cell.replace("`", " ").replace(",", " ").split()}
    run = {task for entry in all_entries().values() for task in entry.config.tasks}
    unrun = sorted(listed - run)
    assert unrun == ["imagenet-10", "imagenet-100", "tiny-imagenet"], "update the README's sentence on unrun tasks"
    said = " ".join(section.split("no entry runs yet")[0].split("\n\n")[-1].split())
    assert all(f"`{task}`" in said for task in unrun) and "AlexNet's tasks" not in readme


def test_a_config_that_is_not_utf8_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_bytes(_valid_yaml().encode() + b"# caf\xe9 in Latin-1\n")
    with pytest.raises(ConfigError) as info:
        load_entry(path)
    assert str(info.value) == f"{path}: not UTF-8 text (byte 0xe9 at offset {len(_valid_yaml().encode()) + 5})"


def test_an_unknown_data_argument_is_refused_at_load_naming_file_key_and_the_allowed_ones(tmp_path):
    """data.init_args go to the task's data module as keywords: an unknown one was a TypeError at run time."""
    path = _write(
        tmp_path, "tiny", _valid_yaml().replace("  batch_size: 32", "  batch_size: 32\n  init_args:\n    shufle: true")
    )
    with pytest.raises(ConfigError) as info:
        load_entry(path)
    message = str(info.value)
    assert message.startswith(f"{path}: data.init_args.shufle: not an argument of task mnist's data (MNISTData)")
    assert message.endswith("it takes: eval_batch_size") and "\n" not in message
    ok = _write(
        tmp_path,
        "tiny",
        _valid_yaml().replace("  batch_size: 32", "  batch_size: 32\n  init_args:\n    eval_batch_size: 100"),
    )
    assert load_entry(ok).config.data.init_args == {"eval_batch_size": 100}


# config_hash(entry.resolved_config(task)) of every entry × task, computed at fe7c9fb (before the trainer whitelist and
# the data → model link, and before gpt-char's context was written once): the recipes, and so the hashes in every
# committed result, stay the same
HASHES_BEFORE_SCHEMA = {
    ("adaline", "mnist"): "b2e5e7af8c10515e97caf97a578262da3657ce0522edd1f09db78eddec26878e",
    ("adaline", "digits"): "b049039d626f62045754a4806d4c18c0be5eeea5ed379d86277b340a66cb7d3d",
    ("adaline", "fashion-mnist"): "6c6082ce1398f557744640e9b70b7c0b05dd8f76361cb56c3303d9b55e321085",
    ("alexnet-owt", "imagenette-224re"): "3536a1b353e4f9284f8e2dbfc00a5ca724aed3649423692374b879c7fe338411",
    ("alexnet-owt", "imagenette-320"): "fd892e4692aef30eec2230bc4592abfbafc00f68b10adf209f7ca59364d7b709",
    ("alexnet-owt", "imagenette-160"): "08a877cdf80f6241f1df9dd2928b45861a73d5062df29c91ff8a3291652a20ec",
    ("alexnet-owt", "imagenette"): "e41c3113c7ba882046edca825554ffc91401f862f421bbc0363b2a06e06bc05d",
    ("alexnet", "imagenette-224re"): "24f3b702005f5319c7dfcc8df0fc301d1be6b0c477be678cd814dd60f102a6d4",
    ("alexnet", "imagenette-320"): "12aa59903bc88f130d80ebc46899cadff78cc8f41a8015c32f033b945df2b9a7",
    ("alexnet", "imagenette-160"): "f4f87419d46f0615df3ba6e76b5a1b3c70cda4f7a64afdd7acb3d1ae31e3f54d",
    ("alexnet", "imagenette"): "05fdcabfe990e70d7552c6b4853e0bc4036de4ad572723fba413c042d8e9212b",
    ("dcgan", "mnist-gen"): "241de33160db504f6d222c05ca44a957b9a6cdabd61d429d5fcb2c1a562d18c6",
    ("dcgan", "fashion-mnist-gen"): "9f5145022f685647e2ae53ca36b920d051ee276421014ab9833eaf4508bfec8b",
    ("gan", "mnist-gen"): "46a5db8a3daab6671ae84e86699ab82cdc90ca0b05ff3e9aa703d5e612d55fa3",
    ("gpt-char-gpu", "shakespeare-char"): "a31ec18802ad3a111e74b3ac8fd95f30b92831b2a1d00adca41132082fcefa02",
    ("gpt-char", "shakespeare-char"): "7f51ba5eda8e3ef471c655d502c29e4d9860c5df47f5c6c8bab8b7912a0ad4a6",
    ("lenet5-modern", "mnist"): "0bd5fe785cc43f0c8fba9bb4d67c2b5bd7a4741cfddc4eb0e93f0df14c48c53b",
    ("lenet5-modern", "fashion-mnist"): "555eeb530718f6f3c2f59f83aca08c744aee25b19efe4c2f675ceaf4273ac984",
    ("lenet5-modern", "digits"): "ab117bb37a85a0b703c464dee31e3efed1b92e20b5d9a00512afbba27fd2dfdb",
    ("lenet5", "mnist"): "ae342c0a00725ee3de5da1c436baa5be86ea381252409637fc956b647ca66e47",
    ("lenet5", "digits"): "664608ed79b09ef764b64669172f328a9e7bc2f3f837387f9d28b77406e49803",
    ("lstm-char", "shakespeare-char"): "9af1cd2b2bd2227e0228d9210a00edef758bbff32114cffb81d59dd34cbc00e7",
    ("mcculloch-pitts", "logic-gates"): "19bfe6d225cd3d49696d7222d979df55af9333ae695aaf050bf0ea771256886a",
    ("mlp", "mnist"): "0ed79dec92370d21807fec8996ee10063d8a809b7c52658d630bb44fc2e19ba1",
    ("mlp", "fashion-mnist"): "3524d4fa986e5f8f887685bf595adefda0655ab2a64347b825d9d54d4f539b55",
    ("mlp", "digits"): "597894e9d815236ba554cdb76b97ce333aaedf6d8e2f456353baeae8e5460f19",
    ("perceptron-single-layer", "mnist"): "cda119a978c6ca902d90f76aa01593ca70beb9d3b8f4ba5b44776b3967054022",
    ("perceptron-single-layer", "digits"): "7dda0814bf9ebc79f28102489695bd6d7baaf9683de2d408c1bb1a0f2695f6fc",
    ("perceptron-single-layer", "fashion-mnist"): "152b4acaabf30a33472e4e79caeb8739b02e99355cf98e9be519927a6b3f11ae",
    ("perceptron", "mnist"): "6ff4f82fc0ed9c17b581c8938d56a5261f98c5b96a077b1b0f453acfd5046a22",
    ("perceptron", "digits"): "4297b1aed47ae1c4575f5bddab21404953dc5a2e3642602ffaefd87b9f5adcef",
    ("perceptron", "fashion-mnist"): "3f1b4b4d90019fe7cbcdde5bdc0a3911fbe9b6af4ee898b49033e489c654f671",
    ("transformer-base", "multi30k-de-en"): "4ff82cd7053fd8b6cbe7873982126fecc842f26ce30c7df60d209795793b6a79",
    ("transformer", "multi30k-de-en"): "0c8721abe5b5de3e8fb3d3bf1705b4f276862ab3c473c405bbd73c3eaf9403d1",
    ("vae", "mnist-gen"): "6d6bc6d6ee610401d7ec24f37f82ee0dc81f77b67628cfa8ec7446ebac613055",
}


@pytest.mark.parametrize("name,task_name", ENTRY_TASKS)
def test_every_entrys_config_hash_is_unchanged(name, task_name):
    assert config_hash(get_entry(name).resolved_config(get_task(task_name))) == HASHES_BEFORE_SCHEMA[(name, task_name)]


def test_the_hash_check_covers_every_entry_and_task():
    assert set(HASHES_BEFORE_SCHEMA) == set(ENTRY_TASKS)


def _with_trainer(tmp_path, lines: str):
    return _write(tmp_path, "tiny", _valid_yaml().replace("trainer:\n  max_epochs: 30", f"trainer:\n{lines}"))


def test_a_config_may_set_a_whitelisted_trainer_argument_and_only_what_it_sets_is_recorded(tmp_path):
    path = _with_trainer(tmp_path, "  max_epochs: 3\n  accumulate_grad_batches: 2\n  gradient_clip_algorithm: value")
    entry = load_entry(path)
    trainer = entry.resolved_config(get_task("mnist"))["trainer"]
    # gradient_clip_val is recorded null when unset, as results always recorded it; nothing else is filled in
    assert trainer == {"max_epochs": 3, "accumulate_grad_batches": 2, "gradient_clip_algorithm": "value",
                       "gradient_clip_val": None}  # fmt: skip
    assert entry.config.trainer.recipe() == {"max_epochs": 3, "accumulate_grad_batches": 2,
                                             "gradient_clip_algorithm": "value"}  # fmt: skip


@pytest.mark.parametrize(
    "lines,key,says",
    [
        ("  max_epochs: 3\n  gradient_clip_val: big", "trainer.gradient_clip_val: 'big'", "lightning.Trainer's"),
        ("  max_epochs: 3\n  accumulate_grad_batches: 1.5", "trainer.accumulate_grad_batches: 1.5", "int"),
        ("  max_epochs: 3\n  val_check_interval: '00:01:00'", "trainer.val_check_interval", "expected"),
        ("  max_epochs: 0", "trainer.max_epochs: 0", "greater than or equal to 1"),
        ("  max_epochs: 3\n  precision: 16-mixed", "trainer: precision", "the harness sets"),
        ("  max_epochs: 3\n  callbacks: []", "trainer: callbacks", "the harness sets"),
        ("  max_epochs: 3\n  deterministic: false", "trainer: deterministic", "the harness sets"),
        ("  max_epochs: 3\n  devices: 2", "trainer: devices", "the harness sets"),
        ("  max_epochs: 3\n  max_epoch: 4", "trainer: max_epoch", "not allowed"),
    ],
)
def test_a_wrong_typed_or_forbidden_trainer_argument_is_a_one_line_config_error(tmp_path, lines, key, says):
    path = _with_trainer(tmp_path, lines)
    with pytest.raises(ConfigError) as info:
        load_entry(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}") and says in message and "\n" not in message, message


def test_the_trainer_whitelist_is_typed_by_lightnings_own_signature():
    import inspect
    import typing

    from benchmarks.registry import TRAINER_ARGS, TrainerSpec

    hints = typing.get_type_hints(L.Trainer.__init__)
    assert set(TRAINER_ARGS) <= set(inspect.signature(L.Trainer.__init__).parameters)
    assert set(TrainerSpec.model_fields) == set(TRAINER_ARGS)
    for name in ("gradient_clip_val", "gradient_clip_algorithm", "accumulate_grad_batches"):
        assert TrainerSpec.model_fields[name].annotation == hints[name]
    assert not {"precision", "devices", "accelerator", "logger", "callbacks", "deterministic"} & set(TRAINER_ARGS)


def test_the_harness_passes_the_configs_trainer_arguments_to_the_trainer(tmp_path, monkeypatch):
    from benchmarks import harness

    seen = {}

    def spy(**kwargs):
        seen.update(kwargs)
        raise harness.BenchError("stop here")

    monkeypatch.setattr(harness, "make_trainer", spy)
    entry = load_entry(_with_trainer(tmp_path, "  max_epochs: 2\n  accumulate_grad_batches: 3"))
    options = harness.BenchOptions(task="digits", seeds=[0], accelerator="cpu", wandb="off", progress="none",
                                   output_dir=str(tmp_path / "runs"), results_dir=str(tmp_path / "res"))  # fmt: skip
    with pytest.raises(harness.BenchError, match="stop here"):
        run_benchmark(entry, options)
    assert seen["max_epochs"] == 2 and seen["accumulate_grad_batches"] == 3
    assert "gradient_clip_val" not in seen and "check_val_every_n_epoch" not in seen  # null or unset: Lightning's own


def _gpt_char(tmp_path, model_context: int | None):
    text = get_entry("gpt-char").path.read_text().replace("entry: gpt-char", "entry: tiny")
    if model_context is not None:
        text = text.replace(
            "  init_args:\n    n_layers: 4", f"  init_args:\n    context: {model_context}\n    n_layers: 4"
        )
    return _write(tmp_path, "tiny", text)


def test_a_data_argument_the_model_also_takes_is_written_once_and_reaches_the_model(tmp_path):
    gpt = get_entry("gpt-char")
    assert "context" not in gpt.config.model.init_args and gpt.config.data.init_args["context"] == 64
    task = get_task("shakespeare-char")
    assert gpt.model_args(task)["context"] == 64 and gpt.resolved_config(task)["model"]["init_args"]["context"] == 64
    assert get_entry("gpt-char-gpu").model_args(task)["context"] == 256
    assert "context" not in get_entry("lstm-char").model_args(task)  # its model has no such parameter: not linked
    same = load_entry(_gpt_char(tmp_path, 64))  # a result's recorded config sets both, the same: still accepted
    resolved = same.resolved_config(task) | {"entry": "gpt-char"}
    assert config_hash(resolved) == HASHES_BEFORE_SCHEMA[("gpt-char", "shakespeare-char")]


def test_linked_arguments_that_differ_are_refused_naming_both_keys(tmp_path):
    path = _gpt_char(tmp_path, 128)
    with pytest.raises(ConfigError) as info:
        load_entry(path)
    message = str(info.value)
    assert message.startswith(f"{path}: model.init_args.context (128) differs from data.init_args.context (64)")
    assert "\n" not in message
