"""The campaign's jobs, in order of value (the first is the most wanted), and what each needs on the GPU machine.

A job is one entry on one task for its default seeds, run as the committed config says (a full-protocol row: a budget
override would make it a smoke run, never ranked). Where an entry's paper implies another budget than its config,
``budget`` says so: such a row needs a config of its own first.
"""

from __future__ import annotations

from dataclasses import dataclass

# the data folders (under the data folder) that each task reads; a task not listed needs none
TASK_DATA = {
    "imagenette-224re": ("imagenette2-224",),
    "imagenette-32": ("imagenette2-224",),  # derived from the 224re files, checked against their manifest
    "mnist": ("MNIST/raw",),
    "mnist-gen": ("MNIST/raw",),
    "fashion-mnist-gen": ("FashionMNIST/raw",),
    "multi30k-de-en": ("multi30k",),
    "shakespeare-char": ("tinyshakespeare",),
    "fsdd": ("fsdd",),
    "fsdd-digits": ("fsdd",),
}
TEXT_TASKS = ("multi30k-de-en", "shakespeare-char")  # read through Hugging Face datasets (tasks/textfiles.py)


@dataclass(frozen=True)
class Job:
    entry: str
    task: str
    budget: str  # the budget it runs at, and the one its paper implies where that differs

    @property
    def name(self) -> str:
        return f"{self.entry}@{self.task}"

    @property
    def data(self) -> tuple[str, ...]:
        return TASK_DATA.get(self.task, ())

    @property
    def needs_datasets(self) -> bool:
        return self.task in TEXT_TASKS


AS_CONFIG = "the committed config's"
JOBS = (
    Job(
        "alexnet",
        "imagenette-224re",
        "12 epochs (config); the paper implies ~90 (§5: 'roughly 90 cycles'), which needs a 90-epoch config of its own",
    ),  # fmt: skip
    Job(
        "alexnet-owt",
        "imagenette-224re",
        "12 epochs (config); Krizhevsky 2014 and torchvision's recipe train 90, "
        "which needs a 90-epoch config of its own",
    ),  # fmt: skip
    Job(
        "gan",
        "mnist-gen",
        "20 epochs (config); the authors' mnist.yaml (goodfeli/adversarial) states none: its stopping criterion is "
        "commented out, so it ran until stopped by hand; its momentum ramp ends at epoch 250 and its lr decay "
        "(÷1.000004 an update) reaches its 1e-6 floor after ~2.9 M updates (~5,760 epochs of 500 batches)",
    ),  # fmt: skip
    Job("dcgan", "mnist-gen", "5 epochs at width 32 (config); the paper states no MNIST budget"),
    Job("transformer-base", "multi30k-de-en", "the paper's: 100,002 steps, last-5 checkpoint average (config)"),
    Job("gpt-char-gpu", "shakespeare-char", "nanoGPT's published 5,000 steps (config)"),
    Job("vae", "mnist-gen", AS_CONFIG),
    Job("transformer", "multi30k-de-en", AS_CONFIG),
    Job("gpt-char", "shakespeare-char", AS_CONFIG),
    Job("lstm-char", "shakespeare-char", AS_CONFIG),
    Job("dcgan", "fashion-mnist-gen", AS_CONFIG),
    Job("wavenet", "fsdd", AS_CONFIG),
    Job("m5", "fsdd-digits", AS_CONFIG),
    Job("resnet20", "imagenette-32", AS_CONFIG),
)


def select(names: str | None) -> list[Job]:
    """The jobs named (comma-separated entry@task or entry), in value order; all of them for None."""
    if not names:
        return list(JOBS)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if not any(n in (j.name, j.entry) for j in JOBS)]
    if unknown:
        raise ValueError(f"no campaign job {unknown[0]!r}; the jobs: {', '.join(j.name for j in JOBS)}")
    return [j for j in JOBS if j.name in wanted or j.entry in wanted]
