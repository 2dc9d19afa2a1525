"""Parametrised over the registry: a new entry (one model file + one YAML) is tested here with no test edit."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from benchmarks.running.harness import run_benchmark
from benchmarks.running.registry import ConfigError, all_entries, config_hash, get_entry, load_entry, run_config
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
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs  # {}: a step that made no update
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
    # an agent may gather experience before it learns (DQN's warm-up): its first step then returns no loss
    learns = any(p.requires_grad for p in model.parameters()) and not getattr(model, "warming_up", False)
    assert not learns or (record.losses and all(math.isfinite(x) for x in record.losses)), "a finite training loss"
    assert all(record.finite_grads), "finite gradients at every optimiser step"
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not learns or any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), "the step moved it"


@pytest.mark.slow  # ~35 harness runs (AlexNet's 434 MB checkpoints among them): make test, not make test-fast
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
        (("tasks: [mnist, fashion-mnist, digits, mnist-shifted]", "tasks: [mnist, cifar-100]"), "cifar-100"),
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
    from benchmarks.core.paths import REPO_ROOT

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


# config_hash of the run-deciding fields (registry.run_config: model, data, trainer, task) of every entry × task at the
# commit that moved trainer arguments to a whitelist typed by Lightning and linked data to model arguments (gpt-char's
# context written once): the recipes, so the committed results, did not move (their full resolved configs were checked
# equal too). Review fields (division, reference, deviations) may change without a re-run, so they are not pinned; a
# new entry needs no line here.
RUN_HASHES = {
    ("adaline", "mnist"): "b4069270716f8ed15646b0795fc18e1bc8789dc71b6bab334dae7d2084f25577",
    ("adaline", "digits"): "b034c05de0d28db30b011354af8898ce564eea31bc6098ba0d6a46001f51d06e",
    ("adaline", "fashion-mnist"): "d42874a7b142143c9bab40bd78a0e25fadff3123fe173d0a0ee86c769e3aac62",
    ("alexnet", "imagenette-224re"): "09ddb699ddf64a39164eb97ee5cb8e0ad0e2eaf32912ff5a11f3503f162a1a89",
    ("alexnet", "imagenette-320"): "6c9b3d8886e3cbee7e4322e4559007d32e00d626047a09fda195dffed6b19794",
    ("alexnet", "imagenette-160"): "fc107f61fcf0cd8b4dfb2f4b81b3fbec7746a644ab4d0de47bfd5465dd240b34",
    ("alexnet", "imagenette"): "a3c013aff19811eaab2982e9f8be72ad29326cd69e10aa76a6a6551e56a7ac06",
    ("alexnet-owt", "imagenette-224re"): "d35e35bf736d58eb32ece6971526f90dddf2be4873cb66d2eafb0b035e662dd6",
    ("alexnet-owt", "imagenette-320"): "4327839574327b319a3a61e526b40afa7a72240164fedf2c083655113db75fff",
    ("alexnet-owt", "imagenette-160"): "a8aed400484674b60c7a08ba4de68b68e6afce3e8494aaee37360fd1f144cff9",
    ("alexnet-owt", "imagenette"): "81226a7d5c6d2e55d040ddd47cf064c52334aaf9788b51dceb2e9746a8391065",
    ("dcgan", "mnist-gen"): "fc176c2c616c5291f4f63c934f68d44ad2f5d05d16ef49732fb6308f1ee46bf8",
    ("dcgan", "fashion-mnist-gen"): "35e24873a06f93d1d3201e7c698bc4c284837fb1babed17b0d69d720f0a8d22c",
    ("gan", "mnist-gen"): "e33517dadcef06c17f6e3ccb4ea77ff90d7d5d44125fdbb78e331eda672a0970",
    ("gpt-char", "shakespeare-char"): "ba4516d1fca06f085a6d05654b669002ce69f19a880adf0406fa019101f14d2a",
    ("gpt-char-gpu", "shakespeare-char"): "e840416f04b4e613b0f0457c2c31d738ff6a20f58cb445c1c7c6c5db7950be7e",
    ("lenet5", "mnist"): "a3c874417e216fbbde893dbe639907203806885abd40016aca719a5894bebdd9",
    ("lenet5", "digits"): "b2586305e24300d070a14cc3e4f500a9bebb548b3f3158d0e42c514641c90dc3",
    ("lenet5-modern", "mnist"): "906de85e4f58efdcfc0ce3d1cb9f501fd155cbf8cc1c956b32fd61d0c9a61cfe",
    ("lenet5-modern", "fashion-mnist"): "54008a4c63d67bcef5c731343177e4350755f7d32549addc7af0086b0872150d",
    ("lenet5-modern", "digits"): "fbe3850d94746bbbbfa1a3d015379a90fa7083fed788644dbe01e95a594f0b5a",
    ("lstm-char", "shakespeare-char"): "2f820ed3bf1cc2177676baf1062dd015b3b71fe564c9f4f5879f80adcad23618",
    ("mcculloch-pitts", "logic-gates"): "4becabcfbe2170f0a3e9018a7329d79d5df60f2f741acd14940a6db11be1ad07",
    ("mlp", "mnist"): "a4e49c19ee614399017d67811851a8182b6d153cac11f63cf7974554cf0f1aa4",
    ("mlp", "fashion-mnist"): "661fae957ba0cf5b927aa2ab7e25dbac85c7312bb5170934bdaec8303db57f83",
    ("mlp", "digits"): "5765f155602b4017a8bb632aabec7a63c8a0c72c2031d757baa0c11d7ad61749",
    ("perceptron", "mnist"): "73b1246adb3c9cad7b60af9897d15d43a20a5b6b95a6b83e4857814e40384a62",
    ("perceptron", "digits"): "ddf482d78948e01546d61c8b34f37dfeca7ce6aaaa5b642019829b7f2af04794",
    ("perceptron", "fashion-mnist"): "416dfea56c640750a3ee6b223161f69afac945d357854b5396cc2d5368f73033",
    ("perceptron-single-layer", "mnist"): "2450feda793116ecf27b777da7182ac64a0bb2c00796d348c453e219f7234685",
    ("perceptron-single-layer", "digits"): "ba3dd75dc4bb3ffa8ecb06c014149b66e5c8d983f75f31c2e72017f0816ce7e8",
    ("perceptron-single-layer", "fashion-mnist"): "5ecc417509f47dec64a578171da1613df32396f61788ed93680a290f035eed6b",
    ("transformer", "multi30k-de-en"): "96cb111850c4e2f3db00a1ac4fd296d71121efbcc77e01bdd2599d2a4a5291f7",
    ("transformer-base", "multi30k-de-en"): "717f79f23cdab543f2b9f15d1ac6b9caa18c704a9f85402cceb782b50c1ac60e",
    ("vae", "mnist-gen"): "1e9192473835e3dcbf279edf3699a9642e8c29abbb40d181131fc1f2f1e55a1a",
}


@pytest.mark.parametrize("name,task_name", sorted(RUN_HASHES))
def test_the_recipes_did_not_move_when_the_option_schema_changed(name, task_name):
    resolved = get_entry(name).resolved_config(get_task(task_name))
    assert config_hash(run_config(resolved)) == RUN_HASHES[(name, task_name)]


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

    from benchmarks.running.registry import TRAINER_ARGS, TrainerSpec

    hints = typing.get_type_hints(L.Trainer.__init__)
    assert set(TRAINER_ARGS) <= set(inspect.signature(L.Trainer.__init__).parameters)
    assert set(TrainerSpec.model_fields) == set(TRAINER_ARGS)
    for name in ("gradient_clip_val", "gradient_clip_algorithm", "accumulate_grad_batches"):
        assert TrainerSpec.model_fields[name].annotation == hints[name]
    assert not {"precision", "devices", "accelerator", "logger", "callbacks", "deterministic"} & set(TRAINER_ARGS)


def test_the_harness_passes_the_configs_trainer_arguments_to_the_trainer(tmp_path, monkeypatch):
    from benchmarks.running import harness

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
    assert config_hash(run_config(resolved)) == RUN_HASHES[("gpt-char", "shakespeare-char")]


def test_linked_arguments_that_differ_are_refused_naming_both_keys(tmp_path):
    path = _gpt_char(tmp_path, 128)
    with pytest.raises(ConfigError) as info:
        load_entry(path)
    message = str(info.value)
    assert message.startswith(f"{path}: model.init_args.context (128) differs from data.init_args.context (64)")
    assert "\n" not in message
