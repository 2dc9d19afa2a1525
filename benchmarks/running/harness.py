"""``milestones bench``: run one entry on one task for several seeds and write one result file.

For each seed: seed everything → build the task's data and the entry's model → Trainer (precision, deterministic
algorithms, checkpoints that carry RNG state, CSV + W&B loggers) → fit with validation every epoch → test the
best-validation weights once (or the weights fit ends with, for a model that declares ``tests_final_weights``) → a
per-seed record in the run folder. Then one schema-validated result file is written atomically. Nothing here knows
which entry or kind of task it runs: that lives in the entry's model and the task.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import errno
import json
import logging
import math
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT_STR_ALIAS_CONVERSION
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from benchmarks.core import faults, paths
from benchmarks.core.environment import code_identity, environment, hardware_label
from benchmarks.core.results import (
    ARTIFACTS,
    MAX_SEED,
    PRECISIONS,
    Result,
    SeedResult,
    aggregate,
    artifact_path,
    remove_stale_temporaries,
    write_atomic,
    write_result,
)
from benchmarks.running import checkpoints, distributed, lightning_speedups
from benchmarks.running.callbacks import (
    BenchmarkMeter,
    EpochProgressBar,
    KillPoints,
    NonFiniteLossError,
    PlainProgress,
    RanksAgree,
    RanksDisagree,
    RNGStateCheckpoint,
    format_duration,
)
from benchmarks.running.distributed import first_process
from benchmarks.running.options import BenchOptions
from benchmarks.running.registry import Entry, config_hash, get_entry
from benchmarks.running.runfolder import RunFolder


class BenchError(ValueError):
    """A bad option (precision, accelerator, seeds); one line for the user."""


class BenchInterrupted(SystemExit):
    """Ctrl-C or SIGTERM stopped a seed: no result is written, and the exit status is 128 + the signal (130, 143).

    Lightning turns Ctrl-C into ``SystemExit(1)`` and SIGTERM into ``SIGTERMException``, a ``SystemExit`` whose
    status is 0: a killed run would look like success. Only end-of-epoch checkpoints are kept (a checkpoint taken
    mid-epoch would resume the data order and RNG streams inexactly), so a resume restarts the partial epoch from
    ``last.ckpt`` and a deterministic resumed run still ends with exactly the uninterrupted metrics.
    """

    def __init__(self, signum: int, seed: int, epoch: int, max_epochs: int, step: int, checkpoint: Path) -> None:
        super().__init__(128 + signum)
        self.signal, self.seed, self.epoch, self.max_epochs, self.step = signum, seed, epoch, max_epochs, step
        self.checkpoint = checkpoint

    def describe(self) -> str:
        """One line: the signal, where it stopped, and what a resume starts from."""
        where = f"{signal.Signals(self.signal).name} at seed {self.seed}, epoch {self.epoch + 1}/{self.max_epochs}"
        kept = "no end-of-epoch checkpoint yet, a resume starts this seed over"
        if self.checkpoint.exists():
            try:
                saved = torch.load(self.checkpoint, map_location="cpu", weights_only=True, mmap=True)
                kept = f"kept {self.checkpoint} (end of epoch {saved['epoch'] + 1}, step {saved['global_step']:,})"
            except Exception:  # e.g. cut off while being written: say so rather than fail here
                kept = f"{self.checkpoint} is unreadable, a resume may have to start this seed over"
            else:
                kept += ", a resume restarts the partial epoch from it"
        return f"interrupted by {where} (step {self.step:,}); {kept}"


def quiet_lightning() -> None:
    """Keep the console to what a user needs: Lightning's tips and hardware lines, each process's "Initializing
    distributed" line (the run's first line says how many processes), and harmless warnings go."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.distributed"):  # fmt: skip
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*isinstance\\(treespec, LeafSpec\\)`? is deprecated.*")
    warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*configure_optimizers` returned `None`.*")
    # under DDP the harness checks that every metric is the same number on every process (distributed.disagreement):
    # torchmetrics reduce across processes themselves, which Lightning cannot see when it recommends sync_dist
    warnings.filterwarnings("ignore", ".*when logging on epoch level in distributed setting.*")


def resolve_accelerator(accelerator: str) -> str:
    if accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise BenchError("--accelerator gpu was asked for but torch sees no CUDA device")
        return "gpu"
    if accelerator == "cpu":
        return "cpu"
    raise BenchError(f"unknown accelerator '{accelerator}'; use auto, cpu or gpu")


def resolve_precision(precision: str, accelerator: str) -> str:
    """'auto' → bf16-mixed on GPUs that support it, 16-mixed on older GPUs, 32-true on CPU; aliases expanded.

    What is returned is what runs and what the result records: a CPU has no float16 autocast, and Lightning runs
    16-mixed there as bf16-mixed, so that substitution is made (and said) here rather than behind the result's back."""
    if precision == "auto":
        if accelerator == "gpu":
            return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        return "32-true"
    precision = _PRECISION_INPUT_STR_ALIAS_CONVERSION.get(precision, precision)
    if precision not in PRECISIONS:
        raise BenchError(f"unknown precision '{precision}'; use auto or one of {', '.join(PRECISIONS)}")
    if precision == "16-mixed" and accelerator == "cpu":
        print("note: 16-mixed on a CPU runs as bf16-mixed (no float16 autocast there); the result records bf16-mixed",
              flush=True)  # fmt: skip
        precision = "bf16-mixed"
    if precision.startswith("bf16") and accelerator == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        print(f"note: this CPU has no native bf16 (AVX-512 BF16 or AMX): {precision} falls back to slow generic "
              "kernels (AlexNet: about 20x slower than 32-true, README's Speed); --precision 32-true is faster here",
              flush=True)  # fmt: skip
    return precision


def resolve_devices(devices: int | str, accelerator: str = "gpu") -> int | str:
    """A device count (1, 2, …), -1 or 'auto' (all), or a comma-separated list of GPU indices, as Lightning takes; on
    a CPU a count of processes or 'auto' only (Lightning has no CPU indices, and no -1 there)."""
    text = str(devices).strip()
    if accelerator == "cpu":
        if text == "auto" or text.isdigit() and int(text) >= 1:
            return int(text) if text.isdigit() else text
        raise BenchError(f"on a CPU --devices is a number of processes (1, 2, …) or 'auto'; got {devices!r}")
    if text in ("auto", "-1") or re.fullmatch(r"\d+( *, *\d+)*,?", text) and text != "0":
        return int(text) if text.isdigit() else text
    raise BenchError(f"--devices takes a count (1, 2, …), -1 or 'auto' (all), or device indices such as 0,1; "
                     f"got {devices!r}")  # fmt: skip


def check_budget(opts: BenchOptions, seeds: list[int]) -> None:
    """Refuse what would train forever, or not at all, or seed what cannot be seeded."""
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0 or max(seeds) > MAX_SEED:
        raise BenchError(f"seeds must be distinct integers from 0 to {MAX_SEED}, got {seeds}")
    if opts.max_epochs is not None and opts.max_epochs < 1:
        raise BenchError(f"--max-epochs must be at least 1, got {opts.max_epochs} (an untrained model is no result; "
                         "-1 would train forever)")  # fmt: skip
    batches = opts.limit_train_batches
    if batches is not None and not (batches >= 1 if isinstance(batches, int) else 0 < batches <= 1):
        raise BenchError(f"--limit-train-batches must be a number of batches of at least 1, got {batches}")
    if opts.threads is not None and opts.threads < 1:
        raise BenchError(f"threads must be at least 1, got {opts.threads}")


def check_writable(folder: Path, option: str) -> None:
    """Before any training: a folder that cannot be written fails now, not after hours. Nothing is created: the
    nearest existing folder on the way must be a folder that takes a file."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-check-"):
            pass
    except OSError as error:
        raise BenchError(f"cannot write to {folder} ({error.strerror or error}): fix its permissions or give another "
                         f"{option}") from None  # fmt: skip


def check_wandb_reachable(timeout: float = 5.0) -> None:
    """W&B online with no route to its server would hang for minutes and then fail with a traceback: fail now."""
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    host, port = url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        raise BenchError(f"W&B is online but {host}:{port} cannot be reached ({error.strerror or error}): add "
                         "--wandb offline (then `wandb sync` later) or --wandb off") from None  # fmt: skip


def resolve_wandb(mode: str) -> str:
    if mode not in ("auto", "online", "offline", "off"):
        raise BenchError(f"unknown --wandb mode '{mode}'; use auto, online, offline or off")
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE")
    if env in ("disabled", "off"):
        return "off"
    if env in ("online", "offline"):
        return env
    netrc = Path.home() / ".netrc"
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (netrc.exists() and "api.wandb.ai" in netrc.read_text())
    return "online" if has_key else "offline"


def peak_memory_mb(accelerator: str) -> tuple[float, str]:
    if accelerator == "gpu":
        return torch.cuda.max_memory_allocated() / 2**20, "gpu_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_rss"  # Linux reports KiB


@dataclass
class RunContext:
    """What every seed of one invocation shares."""

    entry: Entry
    opts: BenchOptions
    accelerator: str
    precision: str
    wandb_mode: str
    resolved: dict
    chash: str
    run_root: Path
    env: dict
    code: dict  # taken when the run starts: the code that was imported, not what the tree holds at the end


def run_benchmark(entry: str | Entry, opts: BenchOptions) -> tuple[Result, Path | None]:
    """Run ``entry`` (a registered name, or an Entry rebuilt from a result file) for its seeds; write the result."""
    quiet_lightning()
    entry = get_entry(entry) if isinstance(entry, str) else entry
    task = entry.task(opts.task)
    accelerator = resolve_accelerator(opts.accelerator)
    precision = resolve_precision(opts.precision, accelerator)
    opts = dataclasses.replace(opts, devices=resolve_devices(opts.devices, accelerator))
    if opts.strategy == "fsdp" and accelerator == "cpu":
        raise BenchError("--strategy fsdp runs on GPUs only (Lightning's FSDP); on a CPU use ddp or auto")
    problem = distributed.launch_problem(opts.devices, opts.num_nodes, accelerator)
    if problem:
        raise BenchError(problem)
    wandb_mode = resolve_wandb(opts.wandb)
    seeds = opts.seeds if opts.seeds is not None else list(range(entry.config.seeds))
    check_budget(opts, seeds)
    if opts.threads is not None:
        cpus = os.cpu_count() or 1
        if opts.threads > cpus:
            print(f"note: {opts.threads} torch threads on {cpus} CPUs: they take turns, which is slower (recorded)",
                  flush=True)  # fmt: skip
        torch.set_num_threads(opts.threads)
    data_dir = paths.data_dir(opts.data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise BenchError(f"the data folder {data_dir} is a file, not a folder: give --data-dir (or MILESTONES_DATA) "
                         "a folder")  # fmt: skip
    resolved = entry.resolved_config(task, opts.max_epochs)
    chash = config_hash(resolved)
    variant = f"{chash[:12]}-{precision}" + ("-smoke" if opts.smoke else "")
    if opts.part:  # seeds run as separate jobs at once: each its own folder (and lock) under the run's
        variant += f"/part-seeds-{'-'.join(map(str, seeds))}"
    ctx = RunContext(
        entry=entry,
        opts=opts,
        accelerator=accelerator,
        precision=precision,
        wandb_mode=wandb_mode,
        resolved=resolved,
        chash=chash,
        run_root=paths.output_dir(opts.output_dir) / task.name / entry.name / variant,
        env=environment(accelerator),
        code=code_identity(),
    )
    results_dir = Path(opts.results_dir) if opts.results_dir else None
    if results_dir is None and opts.part:
        results_dir = paths.output_dir(opts.output_dir) / "parts"  # `milestones join` makes them one result
    elif results_dir is None:
        results_dir = paths.output_dir(opts.output_dir) / "smoke-results" if opts.smoke else paths.RESULTS_DIR
    folder = RunFolder(ctx.run_root)
    # the other processes of a distributed run say nothing: rank 0 speaks for the run (their errors still show)
    quiet = contextlib.nullcontext() if first_process() else contextlib.redirect_stdout(open(os.devnull, "w"))
    finished = False
    try:
        with quiet:
            outcome = run_in_folder(ctx, task, seeds, folder, results_dir)
        finished = True
        return outcome
    finally:
        folder.unlock()  # also on an error or an interrupt: a later run in this process must be able to take it
        distributed.close_process_group(finished)


def run_in_folder(ctx: RunContext, task, seeds: list[int], folder: RunFolder, results_dir: Path):
    entry, opts, accelerator, wandb_mode = ctx.entry, ctx.opts, ctx.accelerator, ctx.wandb_mode
    precision = ctx.precision
    resolved, chash = ctx.resolved, ctx.chash
    if first_process():  # the other ranks of a multi-device run are its children: they share the folder
        output_setting = (
            "--output-dir" if opts.output_dir or not os.environ.get("MILESTONES_OUTPUT") else "MILESTONES_OUTPUT"
        )
        check_writable(ctx.run_root, output_setting)
        check_writable(results_dir / task.name / entry.name, "--results-dir")
        folder.lock()
        fresh = folder.nothing_to_resume() if opts.resume else None
        if fresh:
            print(fresh, flush=True)
        recorded = {"seeds": seeds, "precision": precision, "accelerator": accelerator, "devices": opts.devices,
                    "deterministic": opts.deterministic, "threads": opts.threads, "fast_dev_run": opts.fast_dev_run,
                    "limit_train_batches": opts.limit_train_batches}  # fmt: skip
        if (opts.num_nodes, opts.strategy) != (1, "auto"):  # only then: run folders from before stay resumable
            recorded |= {"num_nodes": opts.num_nodes, "strategy": opts.strategy}
        folder.check_options(recorded, opts.resume)
        finished = folder.finished() if opts.resume else None
        if finished:
            print(f"{entry.name} on {task.name}: this run already finished; its result is {finished[1]} (--resume "
                  "writes no second one; run without --resume to run it again)", flush=True)  # fmt: skip
            return finished
        if not opts.resume:
            folder.forget_result()
    if wandb_mode == "online":
        check_wandb_reachable()
    print(
        f"{entry.name} on {task.name}: seeds {seeds}, {precision} on "
        f"{hardware_label(ctx.env, distributed.processes(opts.devices, opts.num_nodes, accelerator))}, "
        f"W&B {wandb_mode}, output {ctx.run_root}" + (" [smoke run: not for the leaderboard]" if opts.smoke else ""),
        flush=True,
    )
    if accelerator == "gpu":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    seed_results, layout, dataset = [], None, {}
    for index, seed in enumerate(seeds):
        seed_result, seed_layout, dataset = run_seed(ctx, task, seed)
        seed_results.append(seed_result)
        layout = layout or seed_layout
        left = seeds[index + 1 :]
        if left:  # the run's ETA: the seeds so far, on average, times the seeds left
            eta = (time.perf_counter() - started) / (index + 1) * len(left)
            print(f"{entry.name}: seed {seed} done; seeds {left} left, about {format_duration(eta)}", flush=True)

    ok = [s for s in seed_results if s.status == "ok"]
    memory, memory_kind = peak_memory_mb(accelerator)
    reached = [s.time_to_target_s for s in ok if s.time_to_target_s is not None]
    throughputs = [s.samples_per_s for s in ok if s.samples_per_s]
    result = Result(
        entry=entry.name,
        task=task.name,
        division=entry.config.division,
        metric=task.metric.name,
        direction=task.metric.direction,
        status="ok" if len(ok) == len(seed_results) else "failed",
        smoke=opts.smoke,
        seeds=seed_results,
        aggregate=aggregate([s.metrics[task.metric.name] for s in ok]),
        time_to_target_s=statistics.median(reached) if reached else None,
        samples_per_s=statistics.fmean(throughputs) if throughputs else None,
        peak_memory_mb=round(memory, 1),
        peak_memory_kind=memory_kind,
        wall_time_s=time.perf_counter() - started,
        precision=precision,
        deterministic=opts.deterministic,
        world_size=len(layout["ranks"]) if layout else 1,
        distributed=layout if layout and len(layout["ranks"]) > 1 else None,
        config=resolved,
        config_hash=chash,
        dataset=dataset,
        environment=ctx.env,
        code=ctx.code,
        wandb={"mode": wandb_mode, "project": opts.wandb_project, "group": f"{entry.name}/{task.name}"},
        created=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    )
    path = publish(result, folder, results_dir, paths.output_dir(opts.output_dir)) if first_process() else None
    return result, path


def publish(result: Result, folder: RunFolder, results_dir: Path, output_dir: Path) -> Path:
    """Name the result file in the run folder, copy the artifacts beside it, then write it (atomically, never over
    another file). A kill anywhere in between leaves a ``--resume`` that finishes this same file: one invocation, one
    result."""
    target = results_dir / result.task / result.entry
    for tmp in target.glob(".*.tmp"):  # a result write killed midway, under whatever name: removed if its writer died
        remove_stale_temporaries(target / tmp.name[1:].rsplit(".", 2)[0])

    def prepare(path: Path) -> None:
        folder.reserve_result(path)
        copy_artifacts(result, path, output_dir)

    return write_result(result, results_dir, first=folder.reserved_result(), before_write=prepare)


def copy_artifacts(result: Result, path: Path, output_dir: Path) -> None:
    """Each seed's ``artifacts/`` files (e.g. a sample grid) go beside the result: ``<result stem>/seed-<k>/``; each
    through a temp file and a rename, so a kill leaves no partial artifact."""
    for seed in result.seeds:
        for name in seed.artifacts:
            target = artifact_path(path, seed.seed, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            shutil.copyfile(seed.run_dir(output_dir) / ARTIFACTS / name, tmp)
            os.replace(tmp, target)
            faults.reached("artifact-copy")


def run_seed(ctx: RunContext, task, seed: int) -> tuple[SeedResult, dict | None, dict]:
    """Train and test one seed; returns its record, the run's distributed layout (distributed.describe; None for a
    seed finished earlier whose layout was not kept) and the data's identity."""
    opts, entry = ctx.opts, ctx.entry
    seed_dir = ctx.run_root / f"seed-{seed}"
    record = seed_dir / "seed_result.json"
    layout_file = seed_dir / "distributed.json"
    last_ckpt = seed_dir / "checkpoints" / "last.ckpt"
    if opts.example_data:  # the task's tiny generated copy of its data, read by the same code (a smoke run)
        datamodule = task.example_datamodule(ctx.run_root / "example-data", entry.config.data.batch_size, seed=seed,
                                             **entry.config.data.init_args)  # fmt: skip
    else:
        datamodule = task.make_datamodule(
            paths.data_dir(opts.data_dir),
            entry.config.data.batch_size,
            seed=seed,
            download=opts.download,
            **entry.config.data.init_args,
        )
    if opts.resume and record.exists():
        try:
            done = SeedResult.model_validate_json(record.read_text())
        except (OSError, ValueError) as error:  # pydantic's ValidationError is a ValueError
            print(f"seed {seed}: its record {record} is damaged ({str(error).splitlines()[0]}); running this seed's "
                  "end again from its checkpoint", flush=True)  # fmt: skip
        else:
            print(f"seed {seed}: already finished in {seed_dir}, reusing it (--resume)", flush=True)
            layout = json.loads(layout_file.read_text()) if layout_file.exists() else None
            return done, layout, datamodule.identity()
    resume_from = last_ckpt if opts.resume and last_ckpt.exists() else None
    if resume_from is not None:
        damaged = [f"{p.name} {found}" for p in sorted(last_ckpt.parent.glob("*.ckpt"))
                   if (found := checkpoints.problem(p))]  # fmt: skip
        if damaged:
            print(f"seed {seed}: cannot resume, {'; '.join(damaged)}; starting this seed over", flush=True)
            resume_from = None
    if resume_from is None and seed_dir.exists() and first_process():
        shutil.rmtree(seed_dir)  # a fresh run never mixes with an abandoned one's checkpoints
    if resume_from:
        print(f"seed {seed}: resuming from {resume_from}", flush=True)

    L.seed_everything(seed, workers=True, verbose=False)
    model = entry.build_model(task)
    # The best-validation weights are tested, unless the model declares that its paper tests the weights training
    # ends with (e.g. an average of the last checkpoints, which the model puts in place when fit ends): then nothing
    # is selected by validation, no best checkpoint is kept, and no selected epoch is recorded.
    final = getattr(model, "tests_final_weights", False)
    meter = BenchmarkMeter(
        task.val_key,
        lambda v: task.metric.reached(v, task.target),
        getattr(datamodule, "batch_units", None),
        curve_keys=task.curve_keys,
    )
    checkpoint = checkpoints.EpochCheckpoint(  # the best-validation weights: the ones tested
        dirpath=seed_dir / "checkpoints",
        filename="best-epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor=task.val_key,
        mode=task.metric.direction,
        save_top_k=1,
    )
    # every epoch, for --resume (a monitored ModelCheckpoint's save_last only saves when the best improves); at the
    # end of the training epoch, as Lightning does by itself only when validation runs every epoch (with
    # trainer.check_val_every_n_epoch it would save after each validation only, inside that epoch's last batch)
    latest = checkpoints.EpochCheckpoint(
        dirpath=seed_dir / "checkpoints", filename="last", save_top_k=1, every_n_epochs=1, save_on_train_epoch_end=True
    )
    selection = [] if final else [checkpoint]
    kill_points = [KillPoints()] if faults.armed() else []  # the fault tests' per-step ones: a call a step otherwise
    agree = RanksAgree()  # under DDP: every validation metric the same number on every rank
    callbacks = [meter, agree, RNGStateCheckpoint(), *selection, latest, *task.callbacks(), *opts.callbacks,
                 *kill_points]  # fmt: skip
    progress = opts.progress if opts.progress != "auto" else ("rich" if sys.stdout.isatty() else "plain")
    if progress == "rich":
        callbacks.append(EpochProgressBar())
    elif progress == "plain":
        callbacks.append(PlainProgress(f"{entry.name} seed {seed}", task.val_key))
    loggers = [CSVLogger(seed_dir, name="csv")]  # version_0, version_1, ... one per attempt when resuming
    wandb_logger = (
        make_wandb_logger(ctx, task, seed, seed_dir, resume_from is not None) if ctx.wandb_mode != "off" else None
    )
    if wandb_logger is not None:
        loggers.append(wandb_logger)

    trainer = make_trainer(
        accelerator=ctx.accelerator,
        devices=opts.devices,
        num_nodes=opts.num_nodes,
        strategy=distributed.strategy_for(
            opts.strategy, distributed.processes(opts.devices, opts.num_nodes, ctx.accelerator), model
        ),
        precision=ctx.precision,
        # the recipe's own Trainer arguments (registry.TRAINER_ARGS, typed against Lightning's); null or absent is
        # Lightning's default (check_val_every_n_epoch None would mean "every val_check_interval steps" to Lightning)
        **{key: value for key, value in ctx.resolved["trainer"].items() if value is not None},
        deterministic=opts.deterministic,
        callbacks=callbacks,
        logger=loggers,
        enable_progress_bar=progress == "rich",
        enable_model_summary=False,
        num_sanity_val_steps=0,
        fast_dev_run=opts.fast_dev_run,
        limit_train_batches=opts.limit_train_batches,
        log_every_n_steps=50,
        default_root_dir=seed_dir,
        plugins=[checkpoints.AtomicCheckpointIO()],  # same-folder temp file + rename, checked before every load
        profiler=lightning_speedups.NoProfiler(),  # Lightning's default, less a context manager per hook call
    )
    if trainer.precision != ctx.precision:  # recorded is what ran (resolve_precision makes Lightning's substitutions)
        raise BenchError(f"Lightning runs precision {trainer.precision} where {ctx.precision} was asked for")
    if trainer.world_size > 1 and (refusal := distributed.cannot_share(entry.name, model, type(datamodule),
                                                                       trainer.world_size)):  # fmt: skip
        raise BenchError(refusal)
    if trainer.world_size > 1:
        distributed.reduce_evaluation_logs(model)
    try:  # the recipe's batch is the global one: each process takes its share (distributed.py)
        batch_per_process = distributed.split_batches(datamodule, trainer)
    except distributed.BatchSplitError as error:
        raise BenchError(str(error)) from None
    started = time.perf_counter()
    status, failure, metrics, notes = "ok", None, {}, {}
    lightning_speedups.install()  # Lightning's per-step costs that change nothing (see that module)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
    except NonFiniteLossError as error:
        status, failure = "failed", str(error)
        print(f"seed {seed}: FAILED, {error}", flush=True)
    except RanksDisagree as error:
        raise BenchError(str(error)) from None
    except RuntimeError as error:
        if not distributed.reducer_refused(error):
            raise
        raise BenchError(f"{entry.name} cannot run under DDP: its training step leaves parameters of its graph without "
                         "their gradient in a backward pass (e.g. two partial backward passes through one graph), "
                         "which DDP's gradient reducer refuses; run it with --devices 1") from None  # fmt: skip
    except (KeyboardInterrupt, SystemExit) as error:
        raise interrupted(error, trainer, seed, last_ckpt, wandb_logger) from error
    if status == "ok" and distributed.disagreement(trainer, {"weights": distributed.weights_digest(model)}):
        raise BenchError(f"after training, the {trainer.world_size} processes hold different weights: {entry.name} "
                         "changes parameters outside its optimiser's gradients, which DDP does not share; run it with "
                         "--devices 1")  # fmt: skip
    layout = distributed.describe(trainer, batch_per_process)
    measured = copy.deepcopy(meter.state_dict())  # trainer.test(ckpt_path=best) restores callback states: keep ours
    if status == "ok":
        best = None if final else (checkpoint.best_model_path or None)  # None: the model's weights as they are
        try:
            metrics = evaluate(task, trainer, model, datamodule, best, seed_dir / ARTIFACTS)
        except (KeyboardInterrupt, SystemExit) as error:
            raise interrupted(error, trainer, seed, last_ckpt, wandb_logger) from error
        notes = {k: v for k, v in metrics.items() if isinstance(v, str)}  # e.g. sacrebleu's signature
        metrics = {k: v for k, v in metrics.items() if not isinstance(v, str)}
        value = metrics.get(task.metric.name, math.nan)
        if not task.metric.valid(value):  # e.g. a generator that collapsed to NaN images
            status, failure = (
                "failed",
                f"test {task.metric.name} is {value}, outside [{task.metric.low}, {task.metric.high}]",
            )
            print(f"seed {seed}: FAILED, {failure}", flush=True)
            metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
    meter.load_state_dict(measured)
    selected = best_epoch(meter.history, task) if status == "ok" and not final else None
    seed_result = SeedResult(
        seed=seed,
        status=status,
        failure=failure,
        metrics=metrics,
        notes=notes,
        selected_epoch=selected,
        time_to_target_s=meter.time_to_target,
        epoch_to_target=meter.epoch_to_target,
        train_time_s=meter.train_seconds,
        eval_time_s=meter.eval_seconds,
        wall_time_s=time.perf_counter() - started,
        samples_per_s=meter.throughput,
        epochs=trainer.current_epoch,
        val_history=meter.history,
        wandb_run=finish_wandb(wandb_logger, metrics) if trainer.global_rank == 0 else None,
        log_dir=os.path.relpath(seed_dir, paths.output_dir(opts.output_dir)),  # another machine's paths mean nothing
        artifacts=sorted(p.name for p in (seed_dir / ARTIFACTS).glob("*") if p.is_file()),
    )
    if trainer.global_rank == 0:
        write_atomic(json.dumps(layout, indent=2), layout_file, overwrite=True)
        write_atomic(seed_result.model_dump_json(indent=2), record, overwrite=True)
    if status == "ok":
        shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()))
        print(f"seed {seed}: test {shown}; {seed_result.train_time_s:.1f}s training", flush=True)
    return seed_result, layout, datamodule.identity()


def evaluate(task, trainer: L.Trainer, model, datamodule, best: str | None, artifacts: Path) -> dict:
    """``task.evaluate`` on every process; rank 0 keeps the artifacts (the others write theirs to a folder that
    goes), and every metric must be the same number on every rank (an evaluation that reduced its shards)."""
    with contextlib.ExitStack() as stack:
        if trainer.global_rank != 0:
            artifacts = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="milestones-artifacts-")))
        artifacts.mkdir(parents=True, exist_ok=True)  # the task's files to publish go here
        metrics = task.evaluate(trainer, model, datamodule, best, artifacts=artifacts)
    numbers = {key: value for key, value in metrics.items() if not isinstance(value, str)}
    differ = distributed.disagreement(trainer, numbers)
    if differ:
        raise BenchError(f"test metrics {', '.join(differ)} differ between the {trainer.world_size} processes: the "
                         "task's evaluation used each process's share without reducing it (torchmetrics, or "
                         "trainer.strategy.reduce); run it with --devices 1")  # fmt: skip
    return metrics


def make_trainer(**kwargs) -> L.Trainer:
    """``L.Trainer(**kwargs)``; a setting that needs a package not installed here (e.g. precision transformer-engine) is
    one line, not Lightning's traceback."""
    try:
        return L.Trainer(**kwargs)
    except ImportError as error:
        raise BenchError(f"precision {kwargs.get('precision')} on {kwargs.get('accelerator')} needs a package that is "
                         f"not installed: {' '.join(str(error).split())}") from None  # fmt: skip


def interrupted(error: BaseException, trainer: L.Trainer, seed: int, last_ckpt: Path, wandb_logger) -> BaseException:
    """A Ctrl-C or SIGTERM during fit or test as a BenchInterrupted (exit 130 or 143); any other exit as it is."""
    if isinstance(error, SIGTERMException):
        signum = signal.SIGTERM
    elif isinstance(error, KeyboardInterrupt) or trainer.interrupted:  # Lightning's Ctrl-C is a SystemExit(1)
        signum = signal.SIGINT
    else:
        return error
    stop = BenchInterrupted(signum, seed, trainer.current_epoch, trainer.max_epochs, trainer.global_step, last_ckpt)
    if wandb_logger is not None and getattr(wandb_logger, "_experiment", None) is not None:
        wandb_logger.experiment.finish(exit_code=stop.code)  # marked as stopped; --resume continues the same run
    return stop


def best_epoch(history: list[dict], task) -> int | None:
    best = None
    for row in history:
        if row[task.val_key] is None:
            continue
        if best is None or task.metric.better(row[task.val_key], best[task.val_key]):
            best = row
    return int(best["epoch"]) if best else None


def make_wandb_logger(ctx: RunContext, task, seed: int, seed_dir: Path, resuming: bool):
    """The seed's W&B run; its id is kept in the seed's folder, so that --resume continues the same run."""
    import secrets

    from lightning.pytorch.loggers import WandbLogger

    save_dir = paths.output_dir(ctx.opts.output_dir) / "wandb"
    save_dir.mkdir(parents=True, exist_ok=True)
    id_file = seed_dir / "wandb_run_id"
    run_id = id_file.read_text().strip() if resuming and id_file.exists() else ""
    if not run_id:
        run_id = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))  # W&B's own form
        if first_process():
            write_atomic(run_id, id_file, overwrite=True)  # other ranks' loggers never start a run
    logger = WandbLogger(
        id=run_id,
        resume="allow",
        project=ctx.opts.wandb_project,
        group=f"{ctx.entry.name}/{task.name}",
        name=f"{ctx.entry.name}-{task.name}-seed{seed}",
        job_type="smoke" if ctx.opts.smoke else "benchmark",
        tags=[hardware_label(ctx.env), ctx.precision, ctx.entry.config.division, task.name],
        save_dir=str(save_dir),
        offline=ctx.wandb_mode == "offline",
        config={"entry": ctx.entry.name, "seed": seed, "config": ctx.resolved, "config_hash": ctx.chash,
                "environment": ctx.env, "precision": ctx.precision},
    )  # fmt: skip
    logger._wandb_init.pop("anonymous", None)  # Lightning passes None; W&B warns on every run that it has no effect
    return logger


def finish_wandb(logger, test_metrics: dict) -> str | None:
    if logger is None:
        return None
    run = logger.experiment
    for key, value in test_metrics.items():
        run.summary[f"test/{key}"] = value
    run_path = "/".join(p for p in (run.entity, run.project, run.id) if p)
    run.finish()
    return run_path
