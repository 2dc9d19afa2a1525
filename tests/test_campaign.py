"""The GPU campaign (benchmarks/tools/campaign): the planner's packing, resuming, pinning and the carry check without
training anything; then the whole dry run on this CPU (slow: it trains every selected job at a toy budget)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile

import pytest

from benchmarks.core.checksums import sha256_file
from benchmarks.core.paths import RESULTS_DIR
from benchmarks.tools.campaign import bundle, carry, device
from benchmarks.tools.campaign.__main__ import main as campaign
from benchmarks.tools.campaign.jobs import JOBS, Job
from benchmarks.tools.campaign.planner import Estimate, pack
from benchmarks.tools.campaign.runner import Log, Work, core_sets, finished, run_all


def test_pack_fills_slots_in_value_order_and_leaves_out_what_ends_after_the_window():
    jobs = [Estimate("a", 300, 10), Estimate("b", 500, 10), Estimate("c", 400, 10), Estimate("d", 700, 10)]
    plan = pack(jobs, slots=2, window_s=600, memory_mb=100)
    placed = {p.name: (p.slot, p.start, p.end) for p in plan.placed}
    assert placed == {"a": (0, 0, 300), "b": (1, 0, 500)}  # c would start at 300 and end at 700
    assert [name for name, _ in plan.left_out] == ["c", "d"]
    assert "end after the 10-minute window" in plan.left_out[0][1]


def test_pack_tries_a_later_shorter_job_after_one_that_does_not_fit():
    plan = pack([Estimate("a", 400, 1), Estimate("long", 900, 1), Estimate("short", 150, 1)], 1, 600, 10)
    assert [(p.name, p.start, p.end) for p in plan.placed] == [("a", 0, 400), ("short", 400, 550)]
    assert [name for name, _ in plan.left_out] == ["long"]


def test_pack_waits_for_memory_and_refuses_a_job_larger_than_the_device():
    jobs = [
        Estimate("big", 200, 70),
        Estimate("also-big", 200, 60),
        Estimate("small", 100, 20),
        Estimate("huge", 1, 200),
    ]
    plan = pack(jobs, slots=3, window_s=600, memory_mb=100)
    placed = {p.name: (p.start, p.end) for p in plan.placed}
    assert placed == {"big": (0, 200), "also-big": (200, 400), "small": (0, 100)}  # 70 + 60 > 100: it waits
    assert plan.left_out == [("huge", "needs 200 MB, the budget is 100 MB")]
    assert plan.seconds == 400


def test_core_sets_are_equal_disjoint_shares():
    assert core_sets(4, list(range(16))) == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11), (12, 13, 14, 15)]
    assert core_sets(3, [0, 1, 2, 3, 4]) == [(0,), (1,), (2,)]
    with pytest.raises(ValueError, match="need at least 3 CPU cores"):
        core_sets(3, [0, 1])


def test_a_finished_result_is_found_for_resuming_and_only_a_matching_one(tmp_path):
    source = next(p for p in sorted((RESULTS_DIR / "mnist" / "lenet5-modern").glob("*.json")) if "-gpu-bf16" in p.name)
    target = tmp_path / "mnist" / "lenet5-modern" / source.name
    target.parent.mkdir(parents=True)
    shutil.copy(source, target)
    assert finished(tmp_path, "lenet5-modern", "mnist", "bf16-mixed", [0, 1, 2], smoke=False) == target
    assert finished(tmp_path, "lenet5-modern", "mnist", "32-true", [0, 1, 2], smoke=False) is None
    assert finished(tmp_path, "lenet5-modern", "mnist", "bf16-mixed", [0], smoke=False) is None
    assert finished(tmp_path, "lenet5-modern", "mnist", "bf16-mixed", [0, 1, 2], smoke=True) is None
    assert finished(tmp_path, "lenet5", "mnist", "bf16-mixed", [0, 1, 2], smoke=False) is None
    target.with_name(f".{target.name}.123.tmp").write_text("{")  # a write cut short is never taken for a result
    assert finished(tmp_path, "lenet5-modern", "mnist", "bf16-mixed", [0, 1, 2], smoke=False) == target


def test_run_all_pins_each_process_and_starts_nothing_that_would_end_after_the_window(tmp_path):
    show = [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)), os.environ['OMP_NUM_THREADS'])"]
    cores = core_sets(1, sorted(os.sched_getaffinity(0))[:1])
    works = [Work("quick", show, seconds=1), Work("too-long", show, seconds=3600)]
    run_all(works, cores, tmp_path / "logs", Log(tmp_path / "campaign.log"), window_s=600)
    assert [w.rc for w in works] == [0, None]
    assert (tmp_path / "logs" / "quick.log").read_text().strip() == f"[{cores[0][0]}] 1"
    assert "too-long: not started" in (tmp_path / "campaign.log").read_text()


def test_the_carry_check_names_what_is_missing_or_does_not_fit(tmp_path):
    jobs = [
        Job("gan", "mnist-gen", ""),
        Job("gpt-char", "shakespeare-char", ""),
        Job("alexnet", "imagenette-224re", ""),
    ]
    assert "run make gpu-carry" in carry.problems(jobs, tmp_path)["gan@mnist-gen"]
    image = tmp_path / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"digits")
    (tmp_path / "data" / "SHA256SUMS").write_text(f"{sha256_file(image)}  ./MNIST/raw/{image.name}\n")
    (tmp_path / "wheels").mkdir()
    record = {
        "folders": {"MNIST/raw": 6, "tinyshakespeare": 0},
        "left_out": {"imagenette2-224": "not in the data folder"},
    }
    (tmp_path / "CARRY.json").write_text(json.dumps(record))
    assert carry.problems(jobs, tmp_path) == {
        "gpt-char@shakespeare-char": "no datasets wheel in the carry: run make gpu-carry again",
        "alexnet@imagenette-224re": "imagenette2-224 is not in the carry (not in the data folder)",
    }
    image.write_bytes(b"altered")
    assert "missing or altered" in carry.problems(jobs, tmp_path)["gan@mnist-gen"]


def test_split_packs_few_parts_and_the_roomiest_holds_the_manifest():
    items = [("a", 60), ("b", 50), ("c", 40), ("d", 30), ("e", 20)]
    assert carry.split(items, budget=100, manifest=5) == [["a", "c"], ["b", "d", "e"], []]  # both full: a third
    assert carry.split(items, budget=100, manifest=0) == [["a", "c"], ["b", "d", "e"]]
    assert carry.split(items[:3], budget=100, manifest=10) == [["a", "c"], ["b"]]  # 100, 50 + 10
    with pytest.raises(SystemExit, match="does not fit one device call"):
        carry.split([("huge", 101)], budget=100, manifest=0)


def test_the_carry_travels_in_parts_that_assemble_back_and_a_missing_one_is_named(tmp_path, monkeypatch):
    """make gpu-carry on a tiny data folder with a call limit of a few kB: several parts, each under the limit beside
    the checkout; assembled (as the last device call does) they give back every file, checked."""
    data = tmp_path / "data"
    files = {"MNIST/raw/train-images-idx3-ubyte.gz": 3000, "MNIST/raw/t10k-images-idx3-ubyte.gz": 2500,
             "tinyshakespeare/input.txt": 2000, "multi30k/train.de": 1500}  # fmt: skip
    for name, size in files.items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes(os.urandom(size))
    (data / "SHA256SUMS").write_text("".join(f"{sha256_file(data / n)}  ./{n}\n" for n in files))

    def fake_wheels(folder):
        folder.mkdir(parents=True)
        (folder / "datasets-5.2.0-py3-none-any.whl").write_bytes(os.urandom(1000))
        return ["datasets==5.2.0"]

    monkeypatch.setattr(carry, "download_wheels", fake_wheels)
    monkeypatch.setattr(carry, "checkout_bytes", lambda: 1000)
    monkeypatch.setattr(carry, "LIMIT", 1000 + carry.MARGIN + 5000)  # 5 kB a part beside the checkout
    monkeypatch.setattr(carry, "MANIFEST_BYTES", 1500)
    monkeypatch.setattr(carry, "LISTED", 0)
    root = tmp_path / "carry"
    record = carry.build(data, root)
    sizes = [sum(f.stat().st_size for f in (root / f"part-{p['part']}").rglob("*") if f.is_file() and
                 f.name != "PART.json") for p in record["parts"]]  # fmt: skip
    assert len(sizes) >= 3 and max(sizes) <= 5000
    assert [call["carry"] for call in record["calls"]] == [[f".gpu-data/part-{k}"] for k in range(1, len(sizes) + 1)]
    assert "--pack $OUT/campaign.tgz" in record["calls"][-1]["command"]
    for name in files:
        assert sha256_file(root / "data" / name) == sha256_file(data / name)
    jobs = [
        Job("gan", "mnist-gen", ""),
        Job("gpt-char", "shakespeare-char", ""),
        Job("alexnet", "imagenette-224re", ""),
    ]
    assert carry.problems(jobs, root) == {
        "alexnet@imagenette-224re": "imagenette2-224 is not in the carry (not in the data folder)"
    }
    shutil.rmtree(root / "data")  # the device machine before the last call: the parts only, one of them missing
    shutil.rmtree(root / "wheels")
    shutil.rmtree(root / "part-2")
    assert "not on this machine: .gpu-data/part-2" in device.assemble(root)[0]
    assert device.missing_parts(root) == [2]


def test_a_part_altered_in_the_trip_is_named(tmp_path):
    part = tmp_path / "part-1"
    (part / "data").mkdir(parents=True)
    (part / "data" / "x.txt").write_text("original")
    listing = {"part": 1, "of": 1, "files": {"data/x.txt": sha256_file(part / "data" / "x.txt")}}
    (part / "PART.json").write_text(json.dumps(listing))
    assert device.assemble(tmp_path) == [] and (tmp_path / "data" / "x.txt").read_text() == "original"
    (part / "data" / "x.txt").write_text("altered")
    assert "altered in the trip: carry part-1 again" in device.assemble(tmp_path)[0]


def test_the_bundle_brings_back_results_with_their_artifacts_and_never_replaces_one(tmp_path, monkeypatch):
    source = next(p for p in sorted((RESULTS_DIR / "mnist-gen" / "gan").glob("*.json")))
    output = tmp_path / "campaign"
    (output / "results" / "mnist-gen" / "gan").mkdir(parents=True)
    shutil.copy(source, output / "results" / "mnist-gen" / "gan" / source.name)
    shutil.copytree(source.with_suffix(""), output / "results" / "mnist-gen" / "gan" / source.stem)
    (output / "campaign.log").write_text("12:00:00 campaign: run\n")
    (output / "logs").mkdir()
    (output / "logs" / "gan@mnist-gen.log").write_bytes(os.urandom(4000))
    (output / "runs").mkdir()  # checkpoints: never packed
    (output / "runs" / "last.ckpt").write_bytes(b"weights")
    packed = bundle.pack(output, tmp_path / "out" / "campaign.tgz")
    with tarfile.open(packed) as tar:
        names = tar.getnames()
    assert "logs/gan@mnist-gen.log" in names and not any(n.startswith("runs") for n in names)
    into, kept = tmp_path / "leaderboard", tmp_path / "kept"
    filed = bundle.unpack(packed, into, kept)
    assert filed == [into / "mnist-gen" / "gan" / source.name]
    assert sorted(p.name for p in (into / "mnist-gen" / "gan" / source.stem).rglob("*.png")) == sorted(
        p.name for p in source.with_suffix("").rglob("*.png")
    )
    assert (kept / "campaign" / "campaign.log").read_text().startswith("12:00:00")
    assert bundle.unpack(packed, into, kept) == []  # there already: left as it is
    monkeypatch.setattr(bundle, "LIMIT", packed.stat().st_size - 1)  # too large with the logs: packed without them
    with tarfile.open(bundle.pack(output, tmp_path / "out" / "campaign.tgz")) as tar:
        assert not any(n.startswith("logs") for n in tar.getnames()) and "campaign.log" in tar.getnames()


def test_the_estimate_counts_every_epoch_its_steps_and_save_and_each_validation():
    from benchmarks.tools.campaign.__main__ import estimate

    m = {"step_s": 0.01, "validation_s": 2.0, "checkpoint_s": 0.5, "rest_of_seed_s": 10.0, "startup_s": 20.0,
         "batches_per_epoch": 21}  # fmt: skip
    # transformer-base: 4,762 epochs of 21 batches, a validation after epochs 71, 142, … 4,757
    validations, saves = 67, 4_761 + 66
    seed = 4_762 * 21 * 0.01 + validations * 2.0 + saves * 0.5 + 10.0
    assert estimate(Job("transformer-base", "multi30k-de-en", ""), m, toy=False) == pytest.approx(20.0 + 3 * seed)
    assert estimate(Job("transformer-base", "multi30k-de-en", ""), m, toy=True) == pytest.approx(
        20.0 + 3 * (2 * 0.01 + 2.0 + 10.0)
    )


def test_every_job_names_a_registered_entry_on_one_of_its_tasks_and_the_flagships_come_first():
    from benchmarks.running.registry import get_entry

    for job in JOBS:
        get_entry(job.entry).task(job.task)
    assert [j.entry for j in JOBS[:6]] == ["alexnet", "alexnet-owt", "gan", "dcgan", "transformer-base", "gpt-char-gpu"]


@pytest.mark.slow
def test_the_dry_run_trains_every_selected_job_and_a_second_run_resumes(tmp_path, capsys):
    """make gpu-campaign ARGS='--dry-run' on two flagship jobs, one per core (the whole list takes far longer)."""
    packed = tmp_path / "out" / "campaign.tgz"  # on the device: $OUT/campaign.tgz, the one file that comes back
    argv = ["--dry-run", "--jobs", "gan,dcgan@mnist-gen", "--parallel", "2", "--output", str(tmp_path), "--pack",
            str(packed)]  # fmt: skip
    assert campaign(argv) == 0
    results = sorted(
        p.relative_to(tmp_path / "results").parent.as_posix() for p in (tmp_path / "results").rglob("*.json")
    )
    assert results == ["mnist-gen/dcgan", "mnist-gen/gan"]
    plan = capsys.readouterr().out
    assert "plan (toy budgets)" in plan and "the CPU: not the GPU numbers" in plan
    filed = bundle.unpack(packed, tmp_path / "unpacked", tmp_path / "kept")
    assert sorted(p.parent.relative_to(tmp_path / "unpacked").as_posix() for p in filed) == results
    assert "summary: gan@mnist-gen: result" in (tmp_path / "kept" / "campaign" / "campaign.log").read_text()
    assert campaign(argv) == 0  # resumed: every job is done, nothing is calibrated or run again
    log = (tmp_path / "campaign.log").read_text()
    assert log.count("done already") == 2 and log.count("calibrating") == 1
