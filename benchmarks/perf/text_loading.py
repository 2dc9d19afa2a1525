"""Data-loading time of the text tasks: ``setup()`` of TranslationData (Multi30k) and CharData (tiny-shakespeare).

Each measurement runs in a fresh Python process and times the data module's ``setup()`` on the real data, the
imports ``setup()`` makes included (``import datasets`` is ~1 s of it), the imports of the task modules not:

cold    an empty cache folder (``MILESTONES_CACHE``): for Multi30k this trains the BPE (the same ~1.5 s in any
        version of the loading code) and builds every cache the loading code keeps (Hugging Face ``datasets``' Arrow
        files under ``<cache>/hf-datasets``)
warm    the same cache folder again, as the cold run left it: what every later run pays
again   in the warm run's process, ``setup()`` of a second, fresh data module: what each further seed of a
        ``milestones bench`` pays (the harness makes a data module per seed; imports are paid once)

For each task the repeats take turns (cold 1, warm 1, cold 2, warm 2, ...), each cold repeat in a fresh folder, so a
change in the machine's load hits both alike; the median and the range are reported. Each process also hashes what
``setup()`` produced (Multi30k: every split's source and target id tensors, dtype and order included;
shakespeare-char: the alphabet and the train / validation id tensors): two versions of the loading code must print
the same digests, and every run of one version must too (the script says so when they differ).

``--serving`` also times, on Multi30k's mapped training source (29,000 rows), the two ways of turning a mapped
``datasets`` column into a tensor per sentence: ``with_format("torch")`` and Arrow → numpy → ``torch.split``.

Run: python -m benchmarks.perf.text_loading   (--repeats 3 --data-dir <data> --json out.json; --task to time one;
     the data folder must hold multi30k/ and tinyshakespeare/). The numbers mean something only on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.core import paths
from benchmarks.perf import write_report

TASKS = ("multi30k-de-en", "shakespeare-char")


def measure_one(task: str, data_dir: Path) -> dict:
    """In this (fresh) process: the seconds ``setup()`` takes and a digest of what it produced."""
    import hashlib

    from benchmarks.tasks.charlm import CharData
    from benchmarks.tasks.translation import TranslationData

    def make():
        if task == "multi30k-de-en":
            return TranslationData(data_dir, batch_size=128, download=False)
        return CharData(data_dir, batch_size=64, download=False)

    data = make()
    started = time.perf_counter()
    data.setup()
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    make().setup()
    again = time.perf_counter() - started
    digest = hashlib.sha256()
    if task == "multi30k-de-en":
        units = 0
        for split in sorted(data.ids):
            for side in data.ids[split]:
                digest.update(f"{split}:{len(side)}:{side[0].dtype}\n".encode())
                for ids in side:
                    digest.update(ids.numpy().tobytes() + b";")
                    units += len(ids)
        what = f"{len(data.ids)} splits, {units:,} tokens"
    else:
        digest.update("".join(data.chars).encode() + b"\n")
        for split in sorted(data.splits):
            tensor = data.splits[split]
            digest.update(f"{split}:{tensor.dtype}:{len(tensor)}\n".encode() + tensor.numpy().tobytes())
        what = f"{len(data.chars)} characters, {sum(len(t) for t in data.splits.values()):,} ids"
    return {"seconds": seconds, "again": again, "sha256": digest.hexdigest(), "what": what}


def run_child(task: str, data_dir: Path, cache: Path) -> dict:
    """One measurement in a fresh process (the same code as this one's), with ``cache`` as its cache folder."""
    import benchmarks

    env = os.environ | {"MILESTONES_CACHE": str(cache), "MILESTONES_DATA": str(data_dir)}
    command = [sys.executable, "-m", "benchmarks.perf.text_loading", "--child", task, "--data-dir", str(data_dir)]
    root = Path(benchmarks.__file__).resolve().parents[1]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=root)
    if done.returncode != 0:
        raise SystemExit(f"text_loading: error: the {task} measurement failed:\n{done.stderr or done.stdout}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def serving(data_dir: Path, cache: Path) -> dict[str, float]:
    """Seconds to turn the mapped training source of Multi30k (29,000 rows of ids) into a tensor per sentence, the
    best of 3, both ways; they must give equal tensors."""
    import torch

    from benchmarks.tasks import translation
    from benchmarks.tasks.textfiles import id_tensors, mapped

    os.environ["MILESTONES_CACHE"] = str(cache)
    data = translation.TranslationData(data_dir, batch_size=128, download=False)
    if not hasattr(data, "datasets"):
        raise SystemExit("text_loading: error: --serving needs the datasets-based loading code")
    data.setup()
    key = ["bpe", data.tokenizer_sha256, (), data.max_train_tokens, translation.EOS]
    rows = mapped(data.datasets["train"][0], translation.bpe_batch, data.text["train"][0], key,
                  tokenizer=data.tokenizer, prefix=(), limit=data.max_train_tokens)  # fmt: skip
    ways = {
        'with_format("torch")': lambda: list(rows.with_format("torch")["ids"]),
        "Arrow → numpy → torch.split": lambda: id_tensors(rows),
    }
    seconds, results = {}, {}
    for name, way in ways.items():
        times = []
        for _ in range(3):
            started = time.perf_counter()
            results[name] = way()
            times.append(time.perf_counter() - started)
        seconds[name] = min(times)
    first, second = results.values()
    if not all(a.dtype == b.dtype and torch.equal(a, b) for a, b in zip(first, second, strict=True)):
        raise SystemExit("text_loading: error: the two ways give different tensors")
    return seconds


def summary(seconds: list[float]) -> dict:
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds), "seconds": seconds}


STATES = ("cold", "warm", "again")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf.text_loading", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="holds multi30k/ and tinyshakespeare/ (default: $MILESTONES_DATA)")
    parser.add_argument("--task", choices=TASKS, action="append", help="time only this task (repeatable)")
    parser.add_argument("--repeats", type=int, default=3, help="cold and warm measurements per task")
    parser.add_argument("--serving", action="store_true", help="also time with_format('torch') against numpy → torch")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument("--child", choices=TASKS, help=argparse.SUPPRESS)  # one measurement, printed as JSON
    args = parser.parse_args(argv)
    data_dir = paths.data_dir(args.data_dir)
    if args.child:
        print(json.dumps(measure_one(args.child, data_dir)))
        return {}
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")

    import benchmarks

    tasks = args.task or list(TASKS)
    code = Path(benchmarks.__file__).resolve().parent
    print(f"text loading, {args.repeats} cold + {args.repeats} warm setup() per task, each in a fresh process; "
          f"code: {code}; data: {data_dir}", flush=True)  # fmt: skip
    figures: dict[str, dict[str, list[float]]] = {task: {state: [] for state in STATES} for task in tasks}
    digests: dict[str, set[str]] = {task: set() for task in tasks}
    whats: dict[str, str] = {}
    served: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="text-loading-") as tmp:
        for task in tasks:
            for repeat in range(args.repeats):
                cache = Path(tmp) / f"{task}-{repeat}"
                for state in ("cold", "warm"):
                    result = run_child(task, data_dir, cache)
                    figures[task][state].append(result["seconds"])
                    if state == "warm":
                        figures[task]["again"].append(result["again"])
                    digests[task].add(result["sha256"])
                    whats[task] = result["what"]
                    print(f"{task} {state} {repeat + 1}/{args.repeats}: {result['seconds']:.2f}s"
                          + (f" (again: {result['again']:.2f}s)" if state == "warm" else ""), flush=True)  # fmt: skip
        if args.serving:
            served = serving(data_dir, Path(tmp) / "serving")

    print(f"\n{'task':<18}{'cache':<7}{'median s':>10}{'range s':>14}   data (sha256 of the ids)")
    for task in tasks:
        for state in STATES:
            s = summary(figures[task][state])
            spread = f"{s['min_s']:.2f}–{s['max_s']:.2f}"
            print(f"{task:<18}{state:<7}{s['median_s']:>10.2f}{spread:>14}   {', '.join(sorted(digests[task]))[:16]}…")
        print(f"{'':<18}({whats[task]})")
    differ = [task for task in tasks if len(digests[task]) != 1]
    if differ:
        print(f"WARNING: runs of {', '.join(differ)} produced different data: {digests}")
    if served:
        print(f"\n{'a tensor per sentence, 29,000 rows':<36}{'best of 3 s':>12}")
        for name, seconds in served.items():
            print(f"{name:<36}{seconds:>12.3f}")

    report = {
        "what": "seconds of setup() on the real data: cold and warm in a fresh process, again in the warm one",
        "data_dir": str(data_dir),
        "code": str(code),
        "repeats": args.repeats,
        "tasks": {
            task: {state: summary(figures[task][state]) for state in STATES}
            | {"sha256": sorted(digests[task]), "data": whats[task]}
            for task in tasks
        },
        "serving_s": served,
        "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    }
    write_report(report, args.json)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
