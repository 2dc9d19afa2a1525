"""The suite's fault model: what an unlucky user, or a careless or hostile contributor, can do, and what happens then.

``FAULT_MODEL`` below is the table (case, what happened before issue 15, what happens now, the test that holds it);
``test_the_fault_model_names_only_tests_that_exist`` keeps it honest. The tests in this file run each case as a user
would, through ``python -m benchmarks.cli`` in a subprocess, and ``milestones()`` fails a case on a ``Traceback``, on
a hang past ``BOUND`` seconds, and on a partial file (a hidden ``.tmp`` or a ``.part`` left anywhere it wrote). Cases
about the content of result files and caches are run in-process in tests/test_faults_results.py and
tests/test_faults_cache.py, through the same ``main()``.

The runs are MLP on the bundled digits (no data folder needed), 2 epochs: a few seconds each on the 2-core CI machine.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.core.paths import REPO_ROOT
from benchmarks.core.results import find_results, read_result
from benchmarks.running.registry import config_hash

pytestmark = pytest.mark.slow  # subprocesses that train: `make test-fast` skips this file
BOUND = 180  # seconds: a case still running after this hangs
# not under make (as `make test` is): a resume line would then also name a make command
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MILESTONES_KILL_AT", "WANDB_"))}
ENV |= {"PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
FAST = ["--task", "digits", "--max-epochs", "2", "--wandb", "off", "--progress", "none"]

R, C, F = "tests/test_faults_results.py", "tests/test_faults_cache.py", "tests/test_faults.py"
# fmt: off
FAULT_MODEL = [  # (case, before issue 15, now, the tests that hold it)
    # -- security and silent wrong answers
    ("verify of a result naming `this.x.Perceptron` / `venv.__main__.x.Perceptron`",
     "resolved with find_spec before any refusal: printed the Zen of Python, created a virtualenv",
     "refused before any import, even with --run-anyway: the class_path must be the registered entry's",
     [f"{R}::test_verify_refuses_a_class_path_that_is_not_the_registered_one_before_any_import",
      f"{F}::test_verify_imports_nothing_a_result_names"]),
    ("model class_path `lightning_modulesX.y.Z`", "passed the `startswith` check (no dot) and was imported",
     "refused: the package or one of its submodules only",
     [f"{R}::test_import_class_takes_only_the_lightning_modules_package"]),
    ("image cache: bytes flipped, 200 images zeroed, array swapped", "used silently (top-5 error 94 → 0.0)",
     "sha256 per ~8 MB chunk recorded at build, checked before use; one line, rebuilt",
     [f"{C}::test_a_damaged_image_cache_is_noticed_in_one_line_and_rebuilt"]),
    ("tokenizer cache: a token id swapped", "used; validate then blamed the committed result",
     "checksum record written when trained, checked on load; one line, retrained",
     [f"{C}::test_a_damaged_tokenizer_cache_is_noticed_in_one_line_and_trained_again"]),
    ("kill or full disk during a checkpoint write", "temp file in /tmp copied over last.ckpt: resume point destroyed",
     "temp file in the same folder, fsync, rename, sha256 record; the previous checkpoint stays whole",
     [f"{F}::test_a_kill_in_each_phase_then_resume_gives_the_uninterrupted_metrics",
      f"{F}::test_a_full_disk_is_one_line_and_resume_finishes_the_run"]),
    ("a damaged checkpoint on --resume", "loaded (or a crash)", "named in one line; the seed starts over",
     [f"{F}::test_a_damaged_checkpoint_or_seed_record_on_resume_is_said_and_redone"]),
    ("markup in a free-text field (`precision: 32-true | <img …>`)", "passed validate, landed in the README",
     "field forms validated; every rendered cell escaped", [f"{R}::test_a_crafted_result_renders_as_text"]),
    ("--precision 16-mixed on a CPU", "ran bf16-mixed, result said 16-mixed", "said, run and recorded as bf16-mixed",
     [f"{F}::test_16_mixed_on_a_cpu_is_recorded_as_the_bf16_mixed_that_runs"]),
    ("--max-epochs -1 / 0, --limit-train-batches 0 / -3", "trained forever / an 'ok' untrained result",
     "refused in one line", [f"{F}::test_bad_options_are_one_line_and_write_nothing"]),
    ("throughput Infinity, time-to-target −5 s", "passed validate", "refused by the schema, one line",
     [f"{R}::test_field_forms_are_refused_naming_the_field"]),
    ("one NaN or Infinity seed value", "crashed validate and leaderboard, hid every other problem",
     "a problem line; the other problems still shown",
     [f"{R}::test_a_non_finite_metric_is_a_problem_line_and_the_other_problems_still_show"]),
    # -- runs that collide or change under --resume
    ("two runs into the same folders", "destroyed each other's seed folders, shared a CSV log",
     "the run folder is locked; the second is refused naming the owner",
     [f"{F}::test_a_second_run_into_a_busy_folder_is_refused"]),
    ("--resume with other options", "continued silently; the result recorded only the last options",
     "refused, listing each difference; a damaged record of them refuses too; another precision or budget is said",
     [f"{F}::test_resume_with_other_options_is_refused",
      f"{F}::test_a_damaged_options_record_refuses_the_resume_and_another_precision_is_said"]),
    ("--resume of a finished run; kill during the artifact copy", "a second valid result (a duplicate row)",
     "the run folder names its result before writing it: one invocation, one result",
     [f"{F}::test_resume_of_a_finished_run_writes_no_second_result",
      f"{F}::test_a_kill_during_the_artifact_copy_then_resume_gives_one_complete_result"]),
    ("two copies of one result", "both counted", "validate and the build refuse duplicates",
     [f"{R}::test_a_copy_of_a_result_is_refused_by_validate_and_the_build"]),
    ("a 0-byte or truncated artifact", "passed validate", "refused", [f"{R}::test_a_damaged_artifact_is_refused"]),
    ("a size-limited leaderboard build", "left a truncated plot that validate passed",
     "rendered in memory first, each file written atomically; a truncated plot is reported",
     [f"{R}::test_a_failing_render_writes_nothing", f"{R}::test_a_truncated_plot_is_reported_by_check_and_validate"]),
    # -- one clear line instead of a traceback, a hang or a hint-less failure
    ("uncreatable or read-only results/output folder", "a traceback after training",
     "checked before training, one line", [f"{F}::test_an_unwritable_folder_is_refused_before_training"]),
    ("disk full", "a traceback", "one line naming the cause, nothing partial, the resume command",
     [f"{F}::test_a_full_disk_is_one_line_and_resume_finishes_the_run"]),
    ("a damaged per-seed record on --resume", "a traceback", "said; that seed's end is run again",
     [f"{F}::test_a_damaged_checkpoint_or_seed_record_on_resume_is_said_and_redone"]),
    ("deleted or truncated cache files", "a traceback", "one line, rebuilt",
     [f"{C}::test_a_damaged_image_cache_is_noticed_in_one_line_and_rebuilt"]),
    ("--seeds 99999999999999999999, --devices abc (or -1 on a CPU), --limit-train-batches -3, --precision "
     "transformer-engine without its package, a file as --data-dir", "tracebacks", "one line each",
     [f"{F}::test_bad_options_are_one_line_and_write_nothing"]),
    ("--devices 2 for an entry with no gradient-trained parameters", "a DDP traceback", "one line: use --devices 1",
     [f"{F}::test_bad_options_are_one_line_and_write_nothing"]),
    ("a YAML with invalid UTF-8; an unknown data.init_args key", "tracebacks (the second at run time)",
     "a ConfigError naming the file (and the allowed keys) at registry load",
     ["tests/test_registry.py::test_a_config_that_is_not_utf8_is_one_line_naming_the_file"]),
    ("a deeply nested JSON, invalid UTF-8, a FIFO or a /dev/zero symlink as a result",
     "a traceback, a hang, an unbounded read", "regular files of bounded size only, one line",
     [f"{F}::test_hostile_result_files_are_one_line_without_a_hang", f"{R}::test_a_fifo_is_refused_without_hanging"]),
    ("absolute or ../ artifact names", "passed validate", "refused by the schema",
     [f"{R}::test_field_forms_are_refused_naming_the_field"]),
    ("W&B online with credentials and no network", "hung two minutes, then a traceback",
     "the server is tried first (5 s): one line, use --wandb offline",
     [f"{F}::test_wandb_online_without_a_network_fails_fast"]),
    ("SIGTERM, Ctrl-C", "exit 0 on SIGTERM; a traceback outside training", "exit 143 / 130, one line (with the resume "
     "command for a run)", ["tests/test_harness.py::test_interrupted_or_killed_process_then_resume",
                            f"{F}::test_ctrl_c_outside_training_is_one_line"]),
    ("kill during the image cache build", "orphaned decode workers",
     "workers die with the build; the next build is clean and equal to an uninterrupted one",
     [f"{C}::test_a_build_killed_one_chunk_in_leaves_no_worker_and_the_next_build_starts_cleanly",
      f"{F}::test_a_kill_during_the_cache_build_then_resume_gives_the_uninterrupted_metrics"]),
    ("kill at the result write", "a hidden .tmp left in the results folder", "removed by the next write; never listed",
     [f"{F}::test_a_kill_in_each_phase_then_resume_gives_the_uninterrupted_metrics",
      f"{F}::test_a_fresh_run_after_a_kill_at_the_result_write_leaves_no_temporary",
      f"{R}::test_a_stale_temporary_of_a_dead_writer_is_removed_and_a_live_ones_kept"]),
]
# fmt: on


def test_the_fault_model_names_only_tests_that_exist():
    for case, before, after, tests in FAULT_MODEL:
        assert case and before and after
        for ref in tests:
            file, name = ref.split("::")
            assert re.search(rf"^def {name}\(", (REPO_ROOT / file).read_text(), re.M), f"{case}: no test {ref}"


# --- running the command line --------------------------------------------------------------------------------------
def milestones(*args, tmp: Path, status: int | None = 0, env: dict | None = None, preexec=None, cwd=REPO_ROOT):
    """`milestones <args>` in a subprocess: fails on a hang past BOUND, a traceback, an unexpected exit status, or a
    partial file left under ``tmp``."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.cli", *map(str, args)], cwd=cwd, env=ENV | (env or {}),
                          capture_output=True, text=True, timeout=BOUND, preexec_fn=preexec)  # fmt: skip
    said = proc.stdout + proc.stderr
    assert "Traceback" not in said, said
    if status is not None:
        assert proc.returncode == status, said
    if proc.returncode not in (-signal.SIGKILL,):  # a kill -9 leaves its temp file: the next write removes it
        assert not partial_files(tmp), said
    return proc


def partial_files(tmp: Path) -> list[Path]:
    return [p for p in tmp.rglob("*") if p.name.endswith((".tmp", ".part")) and "wandb" not in p.parts]


def error_line(proc) -> str:
    """The one line a refusal prints on stderr."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def bench(tmp: Path, *extra, entry: str = "mlp", seeds: str = "0,1"):
    return ["bench", entry, *FAST, "--seeds", seeds, "--results-dir", tmp / "results", "--output-dir", tmp / "runs",
            *extra]  # fmt: skip


def metrics(tmp: Path) -> dict[int, dict]:
    (path,) = find_results(tmp / "results")
    return {s.seed: s.metrics for s in read_result(path).seeds}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[int, dict]:
    """The uninterrupted run every interrupted one must end equal to."""
    tmp = tmp_path_factory.mktemp("reference")
    milestones(*bench(tmp), tmp=tmp)
    return metrics(tmp)


# --- kills in each phase, then --resume ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "phase",
    ["training:3", "checkpoint-write:2", "evaluation", "evaluation:2", "result-write"],
    ids=["training", "checkpoint-write", "evaluation-seed-0", "evaluation-seed-1", "result-write"],
)
def test_a_kill_in_each_phase_then_resume_gives_the_uninterrupted_metrics(phase, reference, tmp_path):
    """kill -9 at a named point (benchmarks/core/faults.py), then `--resume`: exactly the uninterrupted metrics, one
    result file, nothing partial left behind."""
    killed = milestones(*bench(tmp_path), tmp=tmp_path, status=-signal.SIGKILL, env={"MILESTONES_KILL_AT": phase})
    assert not find_results(tmp_path / "results"), killed.stdout
    milestones(*bench(tmp_path, "--resume"), tmp=tmp_path)
    assert metrics(tmp_path) == reference


ARTIFACT_RUN = """
import sys
from pathlib import Path
import lightning as L
from benchmarks.running.harness import BenchOptions, run_benchmark

class TwoArtifacts(L.Callback):  # as a generative or text task saves samples beside its result
    def on_fit_end(self, trainer, pl_module):
        folder = Path(trainer.default_root_dir) / "artifacts"
        folder.mkdir(exist_ok=True)
        for name in ("a.txt", "b.txt"):
            (folder / name).write_text(f"{name} after epoch {trainer.current_epoch}\\n")

tmp = Path(sys.argv[1])
run_benchmark("mlp", BenchOptions(task="digits", seeds=[0], max_epochs=2, wandb="off", progress="none",
              output_dir=str(tmp / "runs"), results_dir=str(tmp / "results"), resume=sys.argv[2] == "resume",
              callbacks=[TwoArtifacts()]))
"""


def test_a_kill_during_the_artifact_copy_then_resume_gives_one_complete_result(reference, tmp_path):
    """No task on the bundled data saves artifacts, so a callback adds two (a script: the CLI takes no callbacks)."""
    run = [sys.executable, "-c", ARTIFACT_RUN, str(tmp_path)]
    killed = subprocess.run([*run, "fresh"], env=ENV | {"MILESTONES_KILL_AT": "artifact-copy"}, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=BOUND)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    copied = [p.name for p in (tmp_path / "results").rglob("*.txt")]
    assert copied == ["a.txt"] and not find_results(tmp_path / "results"), "killed after the first artifact"
    done = subprocess.run([*run, "resume"], env=ENV, cwd=REPO_ROOT, capture_output=True, text=True, timeout=BOUND)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    (path,) = find_results(tmp_path / "results")
    assert read_result(path).seeds[0].metrics == reference[0]
    folder = path.with_suffix("") / "seed-0"
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt", "b.txt"] and not partial_files(tmp_path)


IMAGE_RUN = """
import sys
from pathlib import Path
import numpy as np
from PIL import Image
from benchmarks.running.harness import BenchOptions, run_benchmark
from benchmarks.tasks import imagecache
from benchmarks.tasks.imagenette import Imagenette224Data
from benchmarks.tasks.manifest import scan_folder, write_manifest

tmp, images = Path(sys.argv[1]), Path(sys.argv[3])
if not images.exists():  # 3 classes x (8 training + 2 test images) of random pixels, each class its own colour
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 2)):
        for c, label in enumerate(["n01", "n02", "n03"]):
            (images / split / label).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (48, 56, 3), dtype=np.uint8)
                pixels[..., c] = 255
                Image.fromarray(pixels).save(images / split / label / f"{i}.JPEG")
    write_manifest(scan_folder(images, ("train", "val")), images.parent / "manifest.csv.gz")
    (images.parent / "data").mkdir()
    (images.parent / "data" / "imagenette2-224").symlink_to(images)
Imagenette224Data.manifest_path, Imagenette224Data.val_size = images.parent / "manifest.csv.gz", 6
imagecache.CHUNK_BYTES = 4 * 3 * 256 * 256  # four images a chunk: the kill comes with chunks still to decode
run_benchmark("alexnet", BenchOptions(task="imagenette-224re", seeds=[0], max_epochs=1, limit_train_batches=1,
              wandb="off", progress="none", data_dir=str(images.parent / "data"), output_dir=str(tmp / "runs"),
              results_dir=str(tmp / "results"), resume=sys.argv[2] == "resume"))
"""


def test_a_kill_during_the_cache_build_then_resume_gives_the_uninterrupted_metrics(tmp_path):
    """No task on the bundled data decodes images into a cache, so AlexNet runs on a tiny generated image set (a
    script: the task's manifest is swapped for the set's). Killed after the cache's first chunk, then resumed with
    the same cache folder: the cache is rebuilt with one line, and the metrics are those of a run never killed."""
    images = tmp_path / "set" / "images"
    run = [sys.executable, "-c", IMAGE_RUN]

    def script(tmp: Path, mode: str, cache: Path, kill: str | None = None):
        env = ENV | {"MILESTONES_CACHE": str(cache)} | ({"MILESTONES_KILL_AT": kill} if kill else {})
        return subprocess.run([*run, str(tmp), mode, str(images)], env=env, cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=BOUND)  # fmt: skip

    clean = script(tmp_path / "clean", "fresh", tmp_path / "clean-cache")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    killed = script(tmp_path / "killed", "fresh", tmp_path / "cache", kill="cache-build")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert not list((tmp_path / "cache").rglob("meta.json")), "killed before the cache was complete"
    resumed = script(tmp_path / "killed", "resume", tmp_path / "cache")
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stdout + resumed.stderr
    assert "meta.json: missing (the build was interrupted, or the file deleted); rebuilding the cache" in resumed.stdout
    assert metrics(tmp_path / "killed") == metrics(tmp_path / "clean")
    assert not partial_files(tmp_path)


def test_a_damaged_checkpoint_or_seed_record_on_resume_is_said_and_redone(reference, tmp_path):
    """Killed at the result write (both seeds done); then seed 0's record is cut short and seed 1's last checkpoint
    has a flipped byte: the resume says so for each, redoes them, and ends with the uninterrupted metrics."""
    milestones(*bench(tmp_path), tmp=tmp_path, status=-signal.SIGKILL, env={"MILESTONES_KILL_AT": "result-write"})
    (record,) = tmp_path.rglob("seed-0/seed_result.json")
    record.write_text(record.read_text()[:40])
    (record_1,) = tmp_path.rglob("seed-1/seed_result.json")
    record_1.unlink()  # as if killed before seed 1's record: its checkpoint is then what a resume uses
    (last,) = tmp_path.rglob("seed-1/checkpoints/last.ckpt")
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF
    last.write_bytes(data)
    done = milestones(*bench(tmp_path, "--resume"), tmp=tmp_path)
    assert re.search(
        r"seed 0: its record .*seed_result\.json is damaged \(.*\); running this seed's end again", done.stdout
    )
    over = r"seed 1: cannot resume, last\.ckpt does not match the sha256 recorded .*; starting this seed over"
    assert re.search(over, done.stdout), done.stdout
    assert metrics(tmp_path) == reference


# --- runs that collide or change under --resume ----------------------------------------------------------------------
def test_a_second_run_into_a_busy_folder_is_refused(tmp_path):
    long = bench(tmp_path, "--progress", "plain")
    long[long.index("--max-epochs") + 1] = "50"
    first = subprocess.Popen([sys.executable, "-m", "benchmarks.cli", *map(str, long)], cwd=REPO_ROOT, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        for line in first.stdout:
            if "epoch 1/" in line:
                break
        second = milestones(*long, tmp=tmp_path, status=2)
        assert re.fullmatch(
            rf"milestones: error: {re.escape(str(tmp_path))}/runs/\S+ is in use by pid {first.pid} on "
            r".*: wait for it to finish, or give this run another --output-dir",
            error_line(second),
        )
        assert first.poll() is None, "the first run goes on"
    finally:
        first.kill()
        first.communicate()
    # the kernel dropped the killed run's lock: a resume takes the folder (killed at its first batch, to be quick)
    milestones(*long, "--resume", tmp=tmp_path, status=-signal.SIGKILL, env={"MILESTONES_KILL_AT": "training"})


def test_resume_with_other_options_is_refused(tmp_path):
    milestones(*bench(tmp_path, "--threads", "1"), tmp=tmp_path, status=-signal.SIGKILL,
               env={"MILESTONES_KILL_AT": "training:3"})  # fmt: skip
    refused = milestones(*bench(tmp_path, "--threads", "2", "--limit-train-batches", "3", "--resume"), tmp=tmp_path,
                         status=2)  # fmt: skip
    assert error_line(refused) == (
        "milestones: error: --resume with other options than the run it continues (limit_train_batches None → 3; "
        "threads 1 → 2): resume with the options it started with, or run without --resume to start it over"
    )
    milestones(*bench(tmp_path, "--threads", "1", "--resume"), tmp=tmp_path)


def test_a_damaged_options_record_refuses_the_resume_and_another_precision_is_said(tmp_path):
    """A resume is held to the options of the run it continues: with its run.json damaged they are unknown, so it is
    refused. Precision, config and budget name the run folder: a resume with another precision finds no earlier run
    there, and says so before it starts."""
    milestones(*bench(tmp_path), tmp=tmp_path, status=-signal.SIGKILL, env={"MILESTONES_KILL_AT": "training:3"})
    (record,) = tmp_path.rglob("run.json")
    record.write_text("{")
    refused = milestones(*bench(tmp_path, "--resume"), tmp=tmp_path, status=2)
    assert error_line(refused) == (
        f"milestones: error: {record} is damaged, so the options of the run a --resume would continue are unknown: "
        "run without --resume to start it over"
    )
    other = milestones(*bench(tmp_path, "--resume", "--precision", "bf16-mixed", "--max-epochs", "1", seeds="0"),
                       tmp=tmp_path)  # fmt: skip
    assert re.search(
        rf"--resume: no earlier run in \S+-bf16-mixed-smoke, so it starts from the beginning; this entry's "
        rf"runs with another config, precision or budget: {record.parent.name}",
        other.stdout,
    ), other.stdout


def test_a_fresh_run_after_a_kill_at_the_result_write_leaves_no_temporary(tmp_path):
    """The killed write's hidden temp file has a name of its own (the killed run's time); the next run removes it."""
    milestones(
        *bench(tmp_path, seeds="0"), tmp=tmp_path, status=-signal.SIGKILL, env={"MILESTONES_KILL_AT": "result-write"}
    )
    assert partial_files(tmp_path)
    milestones(*bench(tmp_path, seeds="0"), tmp=tmp_path)  # fails on a partial file left anywhere


def test_resume_of_a_finished_run_writes_no_second_result(tmp_path):
    milestones(*bench(tmp_path, seeds="0"), tmp=tmp_path)
    (path,) = find_results(tmp_path / "results")
    again = milestones(*bench(tmp_path, "--resume", seeds="0"), tmp=tmp_path)
    assert f"this run already finished; its result is {path}" in again.stdout
    assert find_results(tmp_path / "results") == [path]


# --- one clear line ------------------------------------------------------------------------------------------------
BAD_OPTIONS = {
    "max-epochs -1": (["--max-epochs", "-1"], "argument --max-epochs: takes a whole number of at least 1 (got -1)"),
    "max-epochs 0": (["--max-epochs", "0"], "argument --max-epochs: takes a whole number of at least 1 (got 0)"),
    "limit 0": (["--limit-train-batches", "0"], "argument --limit-train-batches: takes a whole number of at least 1"),
    "limit -3": (["--limit-train-batches", "-3"], "argument --limit-train-batches: takes a whole number of at least 1"),
    "huge seed": (["--seeds", "99999999999999999999"], "argument --seeds: seeds are integers from 0 to 4294967295"),
    "devices abc": (["--devices", "abc"], "on a CPU --devices is a number of processes (1, 2, …) or 'auto'; got 'abc'"),
    "threads 0": (["--threads", "0"], "argument --threads: takes a whole number of at least 1 (got 0)"),
    "devices -1 on a CPU": (["--devices", "-1"], "on a CPU --devices is a number of processes (1, 2, …) or 'auto'"),
    "a precision needing a package": (["--precision", "transformer-engine"],
                                      "precision transformer-engine on cpu needs a package that is not installed"),
}  # fmt: skip


@pytest.mark.parametrize("case", [*BAD_OPTIONS, "devices 2, no gradients", "data folder is a file"])
def test_bad_options_are_one_line_and_write_nothing(case, tmp_path):
    if case == "devices 2, no gradients":
        args, said = ["--devices", "2"], "perceptron has no gradient-trained parameters, so 2 devices have nothing"
        proc = milestones(*bench(tmp_path, *args, entry="perceptron"), tmp=tmp_path, status=2)
    elif case == "data folder is a file":
        (tmp_path / "a-file").write_text("")
        said = f"the data folder {tmp_path / 'a-file'} is a file, not a folder"
        proc = milestones(*bench(tmp_path, "--data-dir", tmp_path / "a-file"), tmp=tmp_path, status=2)
    else:
        args, said = BAD_OPTIONS[case]
        proc = milestones(*bench(tmp_path, *args), tmp=tmp_path, status=2)
    assert said in error_line(proc)
    assert not find_results(tmp_path / "results")


def test_16_mixed_on_a_cpu_is_recorded_as_the_bf16_mixed_that_runs(tmp_path):
    proc = milestones(
        *bench(tmp_path, "--precision", "16-mixed", "--limit-train-batches", "2", seeds="0"), tmp=tmp_path
    )
    assert "16-mixed on a CPU runs as bf16-mixed" in proc.stdout
    (path,) = find_results(tmp_path / "results")
    assert read_result(path).precision == "bf16-mixed" and "bf16-mixed" in path.name


@pytest.mark.parametrize("which", ["--results-dir", "--output-dir"])
def test_an_unwritable_folder_is_refused_before_training(which, tmp_path):
    """A folder that cannot be created (a file is in the way: refused even for root); read-only where not root."""
    (tmp_path / "a-file").write_text("")
    args = bench(tmp_path)
    args[args.index(which) + 1] = tmp_path / "a-file" / "sub"
    proc = milestones(*args, tmp=tmp_path, status=2)
    assert re.fullmatch(rf"milestones: error: cannot write to {re.escape(str(tmp_path))}/a-file/sub\S* \(Not a "
                        rf"directory\): fix its permissions or give another {which}", error_line(proc))  # fmt: skip
    assert "epoch" not in proc.stdout, "refused before training"
    if os.geteuid() != 0:  # root writes into read-only folders
        locked = tmp_path / "read-only"
        locked.mkdir(mode=0o500)
        args[args.index(which) + 1] = locked
        assert "Permission denied" in error_line(milestones(*args, tmp=tmp_path, status=2))


def test_a_full_disk_is_one_line_and_resume_finishes_the_run(reference, tmp_path):
    """A file-size limit (what a size-limited or full disk does to a write) below a checkpoint's size: one line with
    the cause and the resume command, no partial checkpoint or result; the resume without the limit finishes."""

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, not a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))  # a checkpoint: ~200 kB

    proc = milestones(*bench(tmp_path), tmp=tmp_path, status=2, preexec=limit)
    line = error_line(proc)
    assert line.startswith("milestones: error: File too large; result files and checkpoints are written whole or "
                           "not at all, so nothing partial was kept; resume: milestones bench mlp "), line  # fmt: skip
    assert not find_results(tmp_path / "results") and not list(tmp_path.rglob("*.ckpt"))
    milestones(*bench(tmp_path, "--resume"), tmp=tmp_path)
    assert metrics(tmp_path) == reference


def test_wandb_online_without_a_network_fails_fast(tmp_path):
    started = time.monotonic()
    env = {"WANDB_MODE": "online", "WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"}
    args = bench(tmp_path)
    args[args.index("--wandb") + 1] = "auto"
    proc = milestones(*args, tmp=tmp_path, status=2, env=env)
    assert error_line(proc) == (
        "milestones: error: W&B is online but 127.0.0.1:9 cannot be reached (Connection refused): add --wandb offline "
        "(then `wandb sync` later) or --wandb off"
    )
    assert time.monotonic() - started < 60 and "epoch" not in proc.stdout


# --- result files as hostile input, through the command line --------------------------------------------------------
def crafted(tmp: Path, change) -> Path:
    """A committed result edited by ``change``, its config_hash recomputed, under tmp/results/<task>/<entry>/."""
    source = sorted((REPO_ROOT / "leaderboards" / "results" / "mnist" / "perceptron").glob("*.json"))[0]
    data = json.loads(source.read_text())
    change(data)
    data["config_hash"] = config_hash(data["config"])
    path = tmp / "results" / data["task"] / data["entry"] / source.name
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("class_path", ["this.x.Perceptron", "venv.__main__.x.Perceptron"])
def test_verify_imports_nothing_a_result_names(class_path, tmp_path):
    path = crafted(tmp_path, lambda d: d["config"]["model"].update(class_path=class_path))
    work = tmp_path / "cwd"
    work.mkdir()
    proc = milestones("verify", path, "--run-anyway", "--output-dir", tmp_path / "out", tmp=tmp_path, status=2,
                      cwd=work)  # fmt: skip
    assert "cannot be verified, even with --run-anyway" in error_line(proc)
    assert "Zen of Python" not in proc.stdout + proc.stderr and not list(work.iterdir())


def fifo(path: Path) -> None:
    os.mkfifo(path)


def dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def nested(path: Path) -> None:
    path.write_text("[" * 200_000)


def not_utf8(path: Path) -> None:
    path.write_bytes(b'{"entry": "\xff\xfe"}')


@pytest.mark.parametrize("make", [fifo, dev_zero, nested, not_utf8])
@pytest.mark.parametrize("command", ["validate", "verify"])
def test_hostile_result_files_are_one_line_without_a_hang(make, command, tmp_path):
    path = tmp_path / "results" / "mnist" / "perceptron" / "x.json"
    path.parent.mkdir(parents=True)
    make(path)
    proc = milestones(command, path, tmp=tmp_path, status=None)
    assert proc.returncode == (1 if command == "validate" else 2), proc.stderr
    assert str(path) in proc.stderr
    if command == "verify":
        error_line(proc)


def catches_sigint(pid: int) -> bool:
    """Whether the process has a handler for SIGINT yet (its SigCgt mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(re.search(r"^SigCgt:\s*([0-9a-f]+)", status, re.M).group(1), 16)
    return bool(caught & (1 << (signal.SIGINT - 1)))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the signal mask from /proc")
@pytest.mark.parametrize("after", [0.5, 3.0])
def test_ctrl_c_outside_training_is_one_line(after, tmp_path):
    """Ctrl-C while `milestones validate` loads torch and Lightning, or while it reads the results: 130, one line."""
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.cli", "validate"], cwd=REPO_ROOT, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + BOUND  # Python's own SIGINT handler first (a loaded machine starts slowly)
    while not catches_sigint(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=BOUND)
    if proc.returncode == 0:
        pytest.skip(f"validate finished within {after} s of starting, before the Ctrl-C")
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines() == ["milestones: interrupted by SIGINT (Ctrl-C)"], err
