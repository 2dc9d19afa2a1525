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
