"""Parametrised over the registry: a new entry (one model file + one YAML) is tested here with no test edit."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from benchmarks.harness import run_benchmark
from benchmarks.registry import ConfigError, all_entries, config_hash, get_entry, load_entry
from benchmarks.tasks import UnknownNameError, all_tasks, get_task
from lightning_modules.base import ImageGenerator

ENTRIES = sorted(all_entries())
ENTRY_TASKS = [(name, task) for name in ENTRIES for task in all_entries()[name].config.tasks]


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


@pytest.mark.parametrize("name,task_name", ENTRY_TASKS)
def test_forward_backward_tiny_batch(name, task_name):
    """Scores of the right shape, finite; a training step gives a finite loss and finite gradients."""
    entry, task = get_entry(name), get_task(task_name)
    torch.manual_seed(0)
    model = entry.build_model(task)
    if isinstance(model, ImageGenerator):
        generator_steps(model, task)
        return
    if "vocab_size" in task.model_inputs:
        token_steps(model, task)
        return
    shape = task.model_inputs.get("input_shape", (2,))
    x = torch.rand(6, *shape)
    y = torch.randint(0, task.model_inputs.get("num_classes", 2), (6,))
    if task_name == "logic-gates":
        x = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1], [1, 1], [0, 0]], dtype=torch.float32)
        y = torch.zeros(6, 4)
    scores = model(x)
    assert scores.shape[0] == 6 and torch.isfinite(scores.float()).all()
    loss = model.training_step((x, y), 0)
    assert math.isfinite(float(loss))
    if model.automatic_optimization:
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def token_steps(model, task) -> None:
    """A text entry: batches are two (B, T) id tensors, (source, target) or (input, next ids); scores per position."""
    ids = torch.randint(3, task.model_inputs["vocab_size"], (6, 2, 10))
    batch = (ids[:, 0], ids[:, 1])
    scores = model(*batch) if "pad_id" in task.model_inputs else model(batch[0])
    assert scores.shape[:2] in ((6, 10), (6, 9)) and scores.shape[-1] == task.model_inputs["vocab_size"]
    assert torch.isfinite(scores).all()
    loss = model.training_step(batch, 0)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert math.isfinite(float(loss)) and grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def generator_steps(model, task) -> None:
    """A generative entry: images of the data's shape in [0, 1]; two manual-optimisation steps move both networks."""
    shape = task.model_inputs["input_shape"]
    images = model.generate(model.noise(6))
    assert images.shape == (6, *shape) and torch.isfinite(images).all() and 0 <= images.min() <= images.max() <= 1
    assert model.discriminate(images).shape == (6,)
    before = [p.detach().clone() for p in model.parameters()]
    data = torch.utils.data.TensorDataset(torch.rand(12, *shape), torch.zeros(12, dtype=torch.long))
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=6))
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    moved = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
    assert sum(moved) >= len(moved) // 2, "both the generator and the discriminator take steps"


@pytest.mark.parametrize("name", ENTRIES)
def test_one_fast_cpu_fit_through_the_harness(name, quick):
    """One epoch on a bundled task (no download): a result file that validates, with finite metrics."""
    entry = get_entry(name)
    bundled = [t for t in entry.config.tasks if get_task(t).bundled]
    if not bundled:
        pytest.skip(f"{name} runs on no bundled task")
    result, path = run_benchmark(name, quick(task=bundled[0]))
    assert result.status == "ok" and result.smoke and path.exists()
    value = result.seeds[0].metrics[result.metric]
    assert get_task(bundled[0]).metric.valid(value)


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
