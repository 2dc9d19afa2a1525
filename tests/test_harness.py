"""The harness end to end on bundled data: determinism, resume after Ctrl-C, NaN handling, W&B offline, options."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from benchmarks.cli import resume_command
from benchmarks.core.paths import REPO_ROOT
from benchmarks.core.results import find_results, read_result
from benchmarks.running.harness import BenchError, resolve_precision, run_benchmark


def test_same_seed_twice_gives_identical_metrics(quick):
    a, _ = run_benchmark("lenet5-modern", quick(task="digits", max_epochs=3))
    b, _ = run_benchmark("lenet5-modern", quick(task="digits", max_epochs=3))
    assert a.seeds[0].metrics == b.seeds[0].metrics
    assert [h["val/error"] for h in a.seeds[0].val_history] == [h["val/error"] for h in b.seeds[0].val_history]


def test_result_records_protocol_fields(quick):
    result, path = run_benchmark("perceptron", quick(task="digits", seeds=[0, 1]))
    assert result.aggregate.n == 2 and len(result.seeds) == 2
    assert result.precision == "32-true" and result.deterministic and result.smoke
    assert result.dataset and result.environment["accelerator"] == "cpu" and result.config_hash
    assert result.peak_memory_kind == "process_rss" and result.peak_memory_mb > 0
    assert result.seeds[0].samples_per_s > 0 and result.seeds[0].train_time_s > 0
    assert "git_commit" in result.code and "git_dirty" in result.code
    assert read_result(path) == result


class InterruptAt(L.Callback):
    """Simulates Ctrl-C at the start of a given epoch (Lightning handles it as it handles a real SIGINT)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


def test_interrupted_run_resumes_to_exactly_the_uninterrupted_metrics(quick, tmp_path):
    reference, _ = run_benchmark("mlp", quick(task="digits", max_epochs=4, output_dir=str(tmp_path / "a")))

    results = tmp_path / "results"
    before = {p: p.read_bytes() for p in find_results(results)}
    assert len(before) == 1, "the reference run's result file"
    interrupted = quick(task="digits", max_epochs=4, output_dir=str(tmp_path / "b"), callbacks=[InterruptAt(2)])
    with pytest.raises(SystemExit):
        run_benchmark("mlp", interrupted)
    after = {p: p.read_bytes() for p in find_results(results)}
    assert after == before, "an interrupted run writes no result file and leaves earlier results untouched"
    assert not [p for p in results.rglob("*.tmp")]

    resumed, path = run_benchmark(
        "mlp", quick(task="digits", max_epochs=4, output_dir=str(tmp_path / "b"), resume=True)
    )
    assert resumed.seeds[0].metrics == reference.seeds[0].metrics
    assert [h["val/error"] for h in resumed.seeds[0].val_history] == [
        h["val/error"] for h in reference.seeds[0].val_history
    ]
    assert resumed.seeds[0].epochs == reference.seeds[0].epochs == len(resumed.seeds[0].val_history) == 4
    assert path.exists()


def wandb_run_ids(folder: Path) -> set[str]:
    """The run ids of W&B's offline folders, ``offline-run-<date>_<time>-<id>``; W&B adds ``-1`` to a folder name it
    has already used (an attempt and its resume within the same second), which is not part of the id."""
    return {
        re.fullmatch(r"offline-run-\d{8}_\d{6}-([a-z0-9]+)(-\d+)?", p.name).group(1)
        for p in folder.glob("offline-run-*")
    }


def test_resumed_seed_continues_the_same_wandb_run(quick, tmp_path):
    """A resume logs to the interrupted attempt's W&B run (its id is kept in the seed's folder), not to a new one."""
    options = dict(task="digits", max_epochs=3, wandb="offline")
    with pytest.raises(SystemExit) as stop:
        run_benchmark("mlp", quick(**options, callbacks=[InterruptAt(2)]))
    assert stop.value.code == 130, "Ctrl-C: 128 + SIGINT, never 0"
    assert "a resume restarts the partial epoch" in stop.value.describe()
    wandb_dir = tmp_path / "runs" / "wandb" / "wandb"
    (first,) = wandb_run_ids(wandb_dir)

    resumed, _ = run_benchmark("mlp", quick(**options, resume=True))
    assert resumed.seeds[0].wandb_run.split("/")[-1] == first
    assert wandb_run_ids(wandb_dir) == {first}

    fresh, _ = run_benchmark("mlp", quick(**options))  # without --resume a seed starts over, in a new run
    assert fresh.seeds[0].wandb_run.split("/")[-1] != first


def test_resume_command_repeats_the_options_and_names_the_make_target_under_make(monkeypatch):
    monkeypatch.delenv("MAKELEVEL", raising=False)
    given = ["bench", "lenet5", "--task", "mnist", "--data-dir", "/a b", "--resume"]
    assert resume_command(given, "lenet5") == "milestones bench lenet5 --task mnist --data-dir '/a b' --resume"
    monkeypatch.setenv("MAKELEVEL", "1")
    assert resume_command(["bench", "lenet5", "--seeds", "0,1,2"], "lenet5") == (
        "milestones bench lenet5 --seeds 0,1,2 --resume (or: make bench-lenet5 ARGS='--seeds 0,1,2 --resume')"
    )


class PoisonWeights(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 3:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


def test_nan_loss_stops_the_run_and_records_a_failure(quick):
    result, path = run_benchmark("mlp", quick(task="digits", callbacks=[PoisonWeights()]))
    assert result.status == "failed" and result.seeds[0].status == "failed"
    assert "not finite" in result.seeds[0].failure or "nan" in result.seeds[0].failure
    assert result.aggregate is None and path.exists()


def test_wandb_offline_writes_a_run_and_records_its_id(quick, tmp_path):
    result, _ = run_benchmark("mcculloch-pitts", quick(wandb="offline", max_epochs=None))
    run = result.seeds[0].wandb_run
    assert run and result.wandb["mode"] == "offline" and result.wandb["group"] == "mcculloch-pitts/logic-gates"
    run_id = run.split("/")[-1]
    assert list((tmp_path / "runs" / "wandb").rglob(f"*{run_id}*")), "the offline run is on disk for `wandb sync`"


def test_wandb_off_never_imports_wandb(tmp_path):
    code = (
        "import sys; from benchmarks.running.harness import BenchOptions, run_benchmark; "
        f"run_benchmark('mcculloch-pitts', BenchOptions(wandb='off', progress='none', results_dir=r'{tmp_path}')); "
        "assert 'wandb' not in sys.modules, 'wandb was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, capture_output=True, timeout=300)


@pytest.mark.parametrize("bad", ["fp8", "16-bits", "bf17-mixed"])
def test_unknown_precision_is_one_clear_error(bad):
    with pytest.raises(BenchError, match=f"unknown precision '{bad}'.*32-true"):
        resolve_precision(bad, "cpu")


def test_precision_auto_and_aliases():
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("bf16", "cpu") == "bf16-mixed"
    assert resolve_precision("16-mixed", "gpu") == "16-mixed"


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bf16_says_it_is_slow(native, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"  # the user's choice stands, and is recorded
    assert ("no native bf16" in capsys.readouterr().out) is not native


def test_bad_seeds_are_refused(quick):
    with pytest.raises(BenchError, match="distinct"):
        run_benchmark("perceptron", quick(task="digits", seeds=[1, 1]))


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig, status",
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGKILL, -9)],
    ids=["ctrl-c", "sigterm", "killed"],
)
def test_interrupted_or_killed_process_then_resume(tmp_path, sig, status):
    """Ctrl-C, SIGTERM or SIGKILL to a running `milestones bench`: a non-zero exit status (Lightning's SIGTERM handling
    used to exit 0), no result file, one line that says where it stopped and the command that continues it; that
    command, `--resume`, continues from the checkpoint."""
    # not under make (as `make test` is): the line then also names a make command, which test_resume_command_... checks
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")} | {"PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "benchmarks.cli", "bench", "lenet5", "--task", "digits", "--seeds", "0",
            "--wandb", "off", "--progress", "plain", "--results-dir", str(tmp_path / "results"),
            "--output-dir", str(tmp_path / "runs")]  # fmt: skip
    # a shell without job control starts background jobs with SIGINT ignored, and Python keeps an inherited SIG_IGN
    # (no KeyboardInterrupt): give the run a default handler whatever launched the tests (seen: `.ci/run &`)
    proc = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    lines, deadline = [], time.time() + 240
    for line in proc.stdout:
        lines.append(line)
        if "epoch 3/" in line:
            proc.send_signal(sig)
            break
        assert time.time() < deadline, "".join(lines)
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == status, "".join(lines) + rest
    assert not find_results(tmp_path / "results")
    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    resume = [*args, "--resume"]
    if sig != signal.SIGKILL:
        (said,) = [line for line in rest.splitlines() if "interrupted" in line]
        name, kept = signal.Signals(sig).name, re.escape(str(last))
        assert re.fullmatch(rf"milestones: interrupted by {name} at seed 0, epoch \d+/20 \(step [\d,]+\); kept {kept} "
                            r"\(end of epoch \d+, step [\d,]+\), a resume restarts the partial epoch from it; "
                            r"resume: milestones bench .* --resume", said), said  # fmt: skip
        resume = [sys.executable, "-m", "benchmarks.cli", *shlex.split(said.split("resume: milestones ")[1])]
        assert resume[3:] == [*args[3:], "--resume"], "the exact command, with every option given"

    done = subprocess.run(resume, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming from" in done.stdout
    (path,) = find_results(tmp_path / "results")
    assert read_result(Path(path)).seeds[0].epochs == 20


def test_short_real_mnist_run(real_data_dir, quick):
    """The real data path end to end: MNIST from the data folder, 50 training batches, the full test set."""
    options = quick(task="mnist", data_dir=str(real_data_dir), limit_train_batches=50, download=False)
    result, path = run_benchmark("lenet5-modern", options)
    assert result.status == "ok" and result.smoke and path.exists()
    assert result.dataset["MNIST/raw/train-images-idx3-ubyte.gz"] == "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert result.seeds[0].metrics["error"] < 30  # 50 steps of Adam already beat chance by far
