"""What the harness needs to run on Lightning's distributed engine (DDP over devices and nodes), and nothing more.

Lightning launches the processes (its own launcher for ``--devices N``; ``torchrun`` or SLURM's ``srun`` start them
from outside) and owns the process group. Here:

- **Which process writes.** ``first_process()`` reads the launchers' variables, so it is right before Lightning has
  set anything up: only the process of global rank 0 locks the run folder and writes files.
- **The global batch.** A config's ``data.batch_size`` is the batch of one optimiser step, the paper's, at every world
  size. A data module that shards by rank itself (``shards_by_rank = True``: its loaders read the trainer's rank and
  take ``batch_size`` examples per process) is handed ``batch_size // world_size``; any other data module's batches
  are cut by ``RankSlices``: each process takes its slice of every global batch. Either way one step of W processes
  sees the examples one step of a single process sees, and an evaluation sees every example exactly once: no
  padded sampler repeats one, none is dropped.
- **Agreement.** After training the ranks must hold the same weights (a model that updates weights outside its
  optimiser's gradients would drift apart silently), and every validation and test metric must be the same number
  on every rank (a metric computed from a rank's own shard without reducing it would differ): ``disagreement``
  compares them across ranks. What a model logs itself while evaluating is averaged across ranks for it
  (``reduce_evaluation_logs``), and a training step that DDP's reducer refuses is recognised (``reducer_refused``).
- **What ran where.** ``describe`` records the strategy, the nodes, the batch per process and every rank's hardware.
- **Leaving together.** ``close_process_group`` ends the run's process group while the interpreter is whole: gloo's
  worker threads torn down at interpreter exit can abort a rank that had finished its work (SIGABRT, "terminate
  called without an active exception", seen once in CI on the torchrun test).
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket

import torch

# The variables the launchers set for a process's global rank: torchrun (RANK, GROUP_RANK), Lightning's own launcher
# (LOCAL_RANK, NODE_RANK on every child), SLURM's srun (SLURM_PROCID). Rank 0 is the one where all that are set are 0.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


def first_process() -> bool:
    """Global rank 0 (also before Lightning has set up its strategy): the one process that writes files."""
    return all(os.environ.get(name, "0") == "0" for name in RANK_VARIABLES)


class BatchSplitError(ValueError):
    """A global batch that does not divide among the processes; one line for the user."""


def process_batch(global_batch: int, world_size: int) -> int:
    """The examples each of ``world_size`` processes takes from a global batch of ``global_batch``."""
    if global_batch % world_size:
        raise BatchSplitError(
            f"the recipe's batch of {global_batch} does not divide among {world_size} processes; run on a number of "
            f"devices × nodes that divides it (the batch is the paper's at every world size: README, Scale out)"
        )
    return global_batch // world_size


def cannot_share(entry_name: str, model, datamodule_class, processes: int) -> str | None:
    """Why an entry cannot run on several processes, known before training starts (the harness refuses with it in
    one line): None where it can."""
    if getattr(datamodule_class, "single_process", False):  # an agent gathering its own experience
        return (f"{entry_name}'s agent gathers its own experience in one environment ({datamodule_class.__name__}): "
                "there is no data to share among processes; run it with --devices 1")  # fmt: skip
    declared = getattr(model, "single_process_reason", None)  # what the model itself says (it knows best)
    if declared:
        return f"{entry_name} {declared}, so {processes} devices have nothing to share: run it with --devices 1"
    if not any(p.requires_grad for p in model.parameters()):  # a learning rule (the perceptron's), not gradients
        return (f"{entry_name} has no gradient-trained parameters, so {processes} devices have nothing to share: run "
                "it with --devices 1")  # fmt: skip
    return None


def split_batches(datamodule, trainer) -> int | None:
    """Make ``datamodule`` give each process its share of the global batches. Returns the batch per process, or None
    where every global batch is cut into W slices (a batch of sentences under a token budget has no fixed size)."""
    world = trainer.world_size
    if world == 1:
        return datamodule.batch_size
    if getattr(datamodule, "shards_by_rank", False):
        datamodule.batch_size = process_batch(datamodule.batch_size, world)
        return datamodule.batch_size
    for name, train in (("train_dataloader", True), ("val_dataloader", False), ("test_dataloader", False)):
        make = getattr(datamodule, name)
        setattr(datamodule, name, lambda make=make, train=train: RankSlices(make(), trainer, train))
    return None


def processes(devices: int | str, num_nodes: int, accelerator: str) -> int:
    """How many processes Lightning will run for ``--devices`` (harness.resolve_devices' forms) × ``--num-nodes``."""
    text = str(devices)
    if text.isdigit():
        per_node = int(text)
    elif text in ("auto", "-1"):
        per_node = torch.cuda.device_count() if accelerator == "gpu" else 1
    else:  # GPU indices, "0,1"
        per_node = len([index for index in text.split(",") if index.strip()])
    return per_node * num_nodes


def launch_problem(devices: int | str, num_nodes: int, accelerator: str) -> str | None:
    """Why this process cannot run as asked, before anything starts, or None: a launcher (torchrun, srun) that
    started another number of processes than ``--devices`` × ``--num-nodes`` (each would otherwise run alone, all in
    one folder), or several nodes with nothing to start the others (the first would wait for them for ever)."""
    expected = processes(devices, num_nodes, accelerator)
    started = os.environ.get("WORLD_SIZE")
    if (
        started is None
        and "SLURM_NTASKS" in os.environ
        and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")
    ):
        started = os.environ["SLURM_NTASKS"]  # srun's tasks (Lightning's SLURM environment reads the same)
    if started is not None and started.isdigit() and int(started) != expected:
        return (f"the launcher started {started} processes but --devices {devices} × --num-nodes {num_nodes} make "
                f"{expected}: give it the numbers it started (torchrun --nnodes N --nproc-per-node P: --num-nodes N "
                "--devices P; srun: --num-nodes $SLURM_NNODES --devices $SLURM_NTASKS_PER_NODE)")  # fmt: skip
    if num_nodes > 1 and started is None and not ("NODE_RANK" in os.environ and "MASTER_ADDR" in os.environ):
        return (f"--num-nodes {num_nodes} needs the same command started on every node: by torchrun or SLURM's srun "
                "(README, Scale out), or by hand with NODE_RANK and MASTER_ADDR set on each")  # fmt: skip
    return None


def strategy_for(strategy: str, world: int, model) -> str:
    """``--strategy``, except that plain DDP of a model that steps its optimisers itself (a GAN's two networks, each
    step leaving the other's parameters without a gradient) must look for the unused ones, as Lightning asks."""
    if world > 1 and strategy in ("auto", "ddp") and not model.automatic_optimization:
        return "ddp_find_unused_parameters_true"
    return strategy


class RankSlices:
    """Each process's slice of every batch of ``loader`` (tensors, or tuples/lists/dicts of them, cut along dim 0).

    Training: a batch is cut into W equal slices (an epoch's last, short batch loses its last ``len % W`` examples,
    so that every rank's mean gradient weighs alike). Evaluation: every example goes to exactly one rank, the slices
    differ by at most one, and a rank whose slice is empty skips that batch."""

    def __init__(self, loader, trainer, train: bool) -> None:
        self.loader, self.trainer, self.train = loader, trainer, train

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        rank, world = self.trainer.global_rank, self.trainer.world_size
        for batch in self.loader:
            n = _length(batch)
            if self.train:
                n -= n % world  # the same on every rank: they all skip a batch shorter than W, in step
            start, stop = rank * n // world, (rank + 1) * n // world  # sizes ⌊n/W⌋ or ⌈n/W⌉, covering 0..n
            if stop > start:
                yield _slice(batch, start, stop)


def _length(batch) -> int:
    if isinstance(batch, torch.Tensor):
        return len(batch)
    if isinstance(batch, dict):
        return _length(next(iter(batch.values())))
    return _length(batch[0])


def _slice(batch, start: int, stop: int):
    if isinstance(batch, torch.Tensor):
        return batch[start:stop]
    if isinstance(batch, dict):
        return {key: _slice(value, start, stop) for key, value in batch.items()}
    return type(batch)(_slice(value, start, stop) for value in batch)


EVALUATION_STEPS = ("validation_step", "test_step")


def reduce_evaluation_logs(model) -> None:
    """Under DDP: every value ``model`` logs in its validation or test step is averaged across the processes
    (Lightning's ``sync_dist``), so that a value computed on a process's share (a mean over its batches) becomes the
    run's, the same number on every process; the shares differ by at most one example a batch, so each process's mean
    weighs alike up to that. What it logs at the end of an evaluation (a torchmetrics ``compute()``, reduced already
    and the same everywhere) is left as it is: averaging W equal numbers can move the last bit where W is not a power
    of two. Training logs stay each process's own: reducing them would cost a collective on every step."""
    log = model.log

    def log_synced(name, value, *args, **kwargs):
        if model._current_fx_name in EVALUATION_STEPS:  # the hook Lightning is running (it names it for self.log)
            kwargs.setdefault("sync_dist", True)
        return log(name, value, *args, **kwargs)

    model.log = log_synced


# DDP's gradient reducer refuses a training step that leaves a parameter of the graph without its gradient (two
# partial backward passes through one graph, as the 2014 GAN's simultaneous update takes): its messages begin so
REDUCER_REFUSALS = ("It looks like your LightningModule has parameters that were not used",
                    "Expected to have finished reduction in the prior iteration")  # fmt: skip


def reducer_refused(error: BaseException) -> bool:
    return isinstance(error, RuntimeError) and str(error).startswith(REDUCER_REFUSALS)


def close_process_group(finished: bool) -> None:
    """Wait for every rank (when all finished: a rank that failed may never come) and destroy the process group,
    here rather than in Lightning's atexit handler or at interpreter teardown. Does nothing in a single process."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    if finished:
        torch.distributed.barrier()  # rank 0 has written the result; no rank tears down a peer still in a collective
    torch.distributed.destroy_process_group()


def weights_digest(model: torch.nn.Module) -> int:
    """A 52-bit digest of the model's parameters (exact in a float64; not the buffers: BatchNorm's running statistics
    are each rank's own)."""
    digest = hashlib.sha256()
    for name, parameter in model.named_parameters():
        digest.update(name.encode())
        digest.update(parameter.detach().float().cpu().contiguous().numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "little") >> 12


def disagreement(trainer, values: dict[str, float]) -> list[str]:
    """The names in ``values`` whose value is not the same on every rank (NaN equals NaN); [] on one process."""
    if trainer.world_size == 1:
        return []
    names = sorted(values)
    mine = torch.tensor([float(values[name]) for name in names] + [float(len(names))], dtype=torch.float64)
    device = trainer.strategy.root_device  # NCCL gathers CUDA tensors, gloo CPU ones
    gathered = [torch.empty_like(mine, device=device) for _ in range(trainer.world_size)]
    torch.distributed.all_gather(gathered, mine.to(device))
    gathered = torch.stack(gathered).cpu()  # (W, len(names) + 1)
    if not (gathered[:, -1] == len(names)).all():
        return ["(the ranks measured different metrics)"]
    same = (gathered == gathered[0]) | (gathered.isnan() & gathered[0].isnan())
    return [name for name, agree in zip(names, same.all(0).tolist()) if not agree]


def rank_hardware(trainer) -> dict:
    """This process's place and hardware: what ``describe`` gathers from every rank."""
    device = trainer.strategy.root_device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU: {_cpu()}"
    return {
        "rank": trainer.global_rank,
        "node_rank": trainer.node_rank,
        "local_rank": trainer.local_rank,
        "device": name,
        "torch_threads": torch.get_num_threads(),
        # a name for the host that tells nodes apart without publishing it (a cluster's host names are its own)
        "host": hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8],
    }


def _cpu() -> str:
    from benchmarks.core.environment import cpu_model

    return cpu_model() or platform.machine()


def describe(trainer, batch_per_process: int) -> dict:
    """The run's distributed layout, for the result: every process calls it (it gathers from all of them)."""
    mine = rank_hardware(trainer)
    if trainer.world_size > 1:
        ranks = [None] * trainer.world_size
        torch.distributed.all_gather_object(ranks, mine)
    else:
        ranks = [mine]
    return {
        "strategy": type(trainer.strategy).__name__.removesuffix("Strategy").lower(),  # ddp, fsdp, …
        "num_nodes": trainer.num_nodes,
        "devices_per_node": trainer.num_devices,
        "batch_per_process": batch_per_process,
        "ranks": sorted(ranks, key=lambda rank: rank["rank"]),
    }
