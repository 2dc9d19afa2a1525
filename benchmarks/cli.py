"""The ``milestones`` command: list entries, run benchmarks, verify, validate and compare results, probe a trained
network's receptive fields, rebuild the leaderboard, run the offline demo.

Every user-facing error (unknown entry or task, bad precision, missing or corrupt data, invalid config or result
file) is printed as one line on stderr and exits with status 2; nothing half-written is left behind.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import warnings

# a full disk or quota, a file-size limit, a read-only or forbidden folder, a file where a folder should be: said in
# one line, with how to continue
STORAGE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR)
MAX_SEED = 2**32 - 1  # results.MAX_SEED, without importing torch and Lightning to parse the command line


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes comma-separated integers, e.g. 0,1,2 (got '{text}')") from None
    if not seeds or any(not 0 <= s <= MAX_SEED for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds are integers from 0 to {MAX_SEED} (got '{text}')")
    return seeds


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a whole number of at least 1 (got '{text}')") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"takes a whole number of at least 1 (got {value})")
    return value


def printable(text: str) -> str:
    """``text`` with every control, format (bidi, zero-width), surrogate and line-separator character shown as its
    escape: what a file names cannot move the cursor, erase a line or forge one in a terminal or a CI log."""
    import unicodedata

    return "".join(
        ch.encode("unicode_escape", "backslashreplace").decode("ascii")
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")
        else ch
        for ch in text
    )


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line: ``milestones bench: error: … (see milestones bench --help)``.

    ``defer(add)`` adds arguments only when this (sub)command is parsed or its help shown: ``verify``'s defaults come
    from ``judging.verify``, which imports torch and Lightning, and ``milestones --help`` or ``list`` should not wait
    for them (``bench``'s, from ``running.options``, import neither)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.deferred: list = []

    def defer(self, add) -> None:
        self.deferred.append(add)

    def complete(self) -> None:
        while self.deferred:
            self.deferred.pop(0)(self)

    def parse_known_args(self, args=None, namespace=None):
        self.complete()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self.complete()
        return super().format_help()

    def error(self, message: str):
        print(f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    from benchmarks.core.paths import CONFIG_DIR

    parser = Parser(prog="milestones", description=" ".join(__doc__.split("\n\n")[0].split()))
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("list", help="list the registered entries")
    p.add_argument("--long", action="store_true", help="also show the recipe of each entry")

    p = sub.add_parser("tasks", help="list the tasks and their protocols")

    p = sub.add_parser("bench", help="run an entry for its seeds and write a result file")
    entries = sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))  # the registry's names, without loading it
    p.add_argument("entry", help=f"the entry to run, one of: {', '.join(entries)} (see milestones list)")
    p.defer(add_options)  # every field of BenchOptions

    p = sub.add_parser("join", help="join the result files of seeds run as separate jobs (--part) into one result")
    p.add_argument("paths", nargs="+", help="part files, or folders (e.g. runs/parts/<task>/<entry>/): every one below")
    p.add_argument("--seeds", type=_seeds, help="the seeds to join (default: 0 … n-1, the entry's count)")
    p.add_argument("--results-dir", help="write the joined result here (default: as bench: leaderboards/results, or "
                   "<output>/smoke-results for smoke parts)")  # fmt: skip

    p = sub.add_parser("leaderboard", help="regenerate leaderboards/ from the result files")
    p.add_argument("--results-dir", help="read results from here (default: leaderboards/results)")
    p.add_argument("--out-dir", help="write README.md, leaderboard.csv and plots/ here (default: leaderboards/)")
    p.add_argument("--check", action="store_true", help="exit 1 when the committed tables differ from a rebuild")
    p.add_argument("--print", action="store_true", help="print the tables instead of writing files")

    p = sub.add_parser("verify", help="re-run a result file and check that it holds (exit 1 on a mismatch)")
    p.add_argument("result", help="a result file, e.g. leaderboards/results/mnist/mlp/<name>.json")
    p.add_argument("--run-anyway", action="store_true",
                   help="re-run even if the config or model code no longer matches (the verdict says so)")  # fmt: skip
    p.add_argument("--skip-over-minutes", type=float, help="skip (exit 0) when the seeds took longer where recorded")
    p.defer(verify_options)

    p = sub.add_parser("validate", help="check result files as CI does on a pull request (exit 1 on a problem)")
    p.add_argument("paths", nargs="*", help="result files or folders (default: every file in leaderboards/results)")

    p = sub.add_parser("compare", help="results side by side: metric, spread, p-value, speed, hardware, versions")
    p.add_argument("targets", nargs="+", help="result files and/or entry names (an entry: all its results)")
    p.add_argument("--task", help="with entry names: only results on this task")
    p.add_argument("--wandb", action="store_true", help="also fetch each seed's W&B run (needs W&B online)")

    p = sub.add_parser("feature-net", help="train and export a fixed classifier that scores generated samples "
                       "(images: lenet5-modern; spoken digits: m5; style transfer: style-vgg)")  # fmt: skip
    p.add_argument("task", choices=["mnist", "fashion-mnist", "fsdd-digits", "imagenette-224re"])  # FEATURE_NETS
    p.add_argument("--data-dir", help="data folder (default: $MILESTONES_DATA or a per-user cache folder)")
    p.add_argument("--output-dir", help="where the classifier's run goes (default: $MILESTONES_OUTPUT or runs/)")
    p.add_argument("--threads", type=_positive, default=1, help="torch CPU threads (default 1, as the committed nets)")
    p.add_argument("--precision", default="32-true",
                   help="32-true (default, as the digit judges were made) or bf16-mixed (2x faster for style-vgg on a "
                   "CPU with AVX-512 BF16); recorded in the net's JSON")  # fmt: skip

    p = sub.add_parser("reference", help="compute a reference number on a task's own split (leaderboards/references/)")
    p.add_argument("name", help="which computation, e.g. least-squares")
    p.add_argument("--task", required=True, help="the task whose training split it is fitted on, e.g. mnist")
    p.add_argument("--data-dir", help="data folder (default: $MILESTONES_DATA or a per-user cache folder)")
    p.add_argument("--offline", action="store_true", help="never download: use the data folder or fail")

    p = sub.add_parser("probe", help="Hubel & Wiesel's gratings shown to a trained network's first layer, beside "
                       "its untrained control (leaderboards/probes/)")  # fmt: skip
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--result", help="a committed result file: probe its seeds' best-validation checkpoints")
    source.add_argument("--feature-net", choices=["mnist", "fashion-mnist"], help="probe a committed feature net")
    p.add_argument("--seeds", type=_seeds, help="with --result: only these seeds (default: all of its seeds)")
    p.add_argument("--output-dir", help="where the result's runs wrote their checkpoints (default: $MILESTONES_OUTPUT "
                   "or runs/; runs/verify/ is searched too)")  # fmt: skip
    p.add_argument("--out-dir", help="write the probe file and its pictures here (default: leaderboards/probes/)")

    p = sub.add_parser("demo", help="offline: the early milestones on the bundled digits, then a leaderboard")
    seeds = {"help": "comma-separated seeds (default: 0 only, to stay about a minute)"}
    p.defer(lambda p: add_options(p, bench_only=False, seeds=seeds))
    return parser


# the options `verify` shares with `bench` (its own are VerifyOptions'), and where its flags differ from bench's
VERIFY_OPTIONS = ("seeds", "accelerator", "data_dir", "output_dir", "wandb", "download", "progress")
VERIFY_OVERRIDES = {
    "seeds": {"help": "re-run only these of its seeds (a quicker check)"},
    "accelerator": {"choices": ["cpu", "gpu"], "help": "default: the one the result was made on"},
    "output_dir": {"help": "where the re-run's checkpoints and result go (default: runs/)"},
}


def verify_options(p: argparse.ArgumentParser) -> None:
    """`verify`'s flags shared with `bench`, with VerifyOptions' defaults (e.g. W&B off)."""
    import dataclasses

    from benchmarks.judging.verify import VerifyOptions

    defaults = {f.name: f.default for f in dataclasses.fields(VerifyOptions) if f.name in VERIFY_OPTIONS}
    add_options(p, only=VERIFY_OPTIONS, **{name: VERIFY_OVERRIDES.get(name, {}) | {"default": default}
                                           for name, default in defaults.items()})  # fmt: skip


def cli_fields() -> list:
    """The fields of ``BenchOptions`` that are flags (those declared with ``options.option``), with their types."""
    import dataclasses
    import typing

    from benchmarks.running.options import BenchOptions

    hints = typing.get_type_hints(BenchOptions)
    return [(f, hints[f.name]) for f in dataclasses.fields(BenchOptions) if f.metadata.get("cli")]


def flag_name(field) -> str:
    return field.metadata["flag"] or f"--{field.name.replace('_', '-')}"


def _devices(text: str) -> int | str:
    return int(text) if text.isdigit() else text  # a count, or 'auto', '-1', '0,1': harness.resolve_devices checks


def add_options(p: argparse.ArgumentParser, bench_only: bool = True, only: tuple[str, ...] | None = None,
                **overrides: dict) -> None:  # fmt: skip
    """One flag per field of ``BenchOptions`` (``bench_only`` ones too unless False; ``only`` these names), its
    name, help and default from the field and its parsing from the field's type: a ``bool`` is a switch (``--x``
    sets True, or ``--no-x`` / the field's own flag sets False where True is the default), a ``Literal`` gives the
    choices, ``list[int]`` comma-separated seeds, ``int | str`` a count or a name, an ``int`` a count of at least 1.
    ``overrides`` (field name → keywords of ``add_argument``) adjust a flag where another command reuses it."""
    import dataclasses
    import typing

    for field, hint in cli_fields():
        if (only is not None and field.name not in only) or (field.metadata["bench_only"] and not bench_only):
            continue
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        kwargs: dict = {"dest": field.name, "help": field.metadata["help"] or None}
        types = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
        if hint is bool:
            switch_off = default is True
            kwargs |= {"action": "store_false" if switch_off else "store_true", "default": default}
            name = field.metadata["flag"] or (
                f"--no-{field.name.replace('_', '-')}" if switch_off else flag_name(field)
            )
        else:
            name = flag_name(field)
            kwargs["default"] = default
            if typing.get_origin(hint) is typing.Literal:
                kwargs["choices"] = list(typing.get_args(hint))
            elif typing.get_origin(types[0]) is list:
                kwargs["type"] = _seeds
            elif int in types and str in types:
                kwargs["type"] = _devices
            elif int in types:
                kwargs["type"] = _positive
        p.add_argument(name, **(kwargs | overrides.get(field.name, {})))


def bench_options(args: argparse.Namespace):
    """The ``BenchOptions`` a parsed ``bench`` or ``demo`` command line gives (a flag it lacks: the field's default)."""
    from benchmarks.running.options import BenchOptions

    return BenchOptions(
        **{field.name: getattr(args, field.name) for field, _ in cli_fields() if hasattr(args, field.name)}
    )


def list_rows(long: bool = False) -> list[list[str]]:
    """One row per entry for ``milestones list``, read from the config files as written (YAML only: no torch, no
    Lightning, no model class imported), sorted by year and name. The registry's full check of an entry (schema,
    model arguments, interfaces) is made where a run starts (``bench``, ``verify``), by ``validate`` and by the tests;
    a config ``list`` cannot read is handed to it, so its error is the registry's one line."""
    import yaml

    from benchmarks.core.paths import CONFIG_DIR

    rows = []
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        try:
            c = yaml.safe_load(path.read_text(encoding="utf-8"))
            reported = c.get("reported")
            reported = f"{reported['value']:g} ({reported['kind']}, {reported['task']})" if reported else "—"
            n = len(c["deviations"])
            division = f"{c['division']} ({n} deviation{'s' * (n != 1)})"
            row = [str(c["entry"]), str(int(c["paper"]["year"])), ", ".join(map(str, c["tasks"])), division, reported,
                   str(int(c["seeds"]))]  # fmt: skip
            if long:
                r = c["recipe"]
                row.append(f"{r['optimizer']}; {r['schedule']}; {r['loss']}; {c['trainer']['max_epochs']} epochs, "
                           f"batch {c['data']['batch_size']}")  # fmt: skip
        except (yaml.YAMLError, UnicodeDecodeError, AttributeError, KeyError, TypeError, ValueError):
            from benchmarks.running.registry import load_entry

            load_entry(path)  # raises the registry's ConfigError, naming the file and the field
            raise
        rows.append((int(c["paper"]["year"]), row))
    return [row for _, row in sorted(rows, key=lambda pair: (pair[0], pair[1][0]))]


def cmd_list(args) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="DL Milestones entries")
    for column in ("entry", "year", "tasks", "division", "reference (kind, task)", "seeds"):
        table.add_column(column)
    if args.long:
        table.add_column("recipe")
    for row in list_rows(args.long):
        table.add_row(*row)
    Console(width=200 if not sys.stdout.isatty() else None).print(table)


def cmd_tasks(args) -> None:
    from benchmarks.tasks import task_summaries

    for t in task_summaries():
        interfaces = ", ".join(
            [f"{t['interface'][0]} ({', '.join(t['interface'][1])})"]
            + [f"optionally {name} ({', '.join(methods)})" for name, methods in t["optional_interfaces"]]
        )
        print(f"{t['name']}: {t['description']}\n    metric {t['metric']} "
              f"({'lower' if t['direction'] == 'min' else 'higher'} is better), target {t['target']:g}, "
              f"min seeds {t['min_seeds']}; {t['protocol']}\n    models provide: {interfaces}")  # fmt: skip


def results_destination(opts) -> str:
    """One line, before a run: where its result file will go (the committed leaderboard folder unless told)."""
    from pathlib import Path

    from benchmarks.core import paths

    if opts.results_dir:
        return f"result file goes to {Path(opts.results_dir).resolve()}"
    if opts.part:
        return (f"result file goes to {paths.output_dir(opts.output_dir) / 'parts'} (a part: `milestones join` makes "
                "the parts of every seed one result)")  # fmt: skip
    if opts.smoke:
        return f"result file goes to {paths.output_dir(opts.output_dir) / 'smoke-results'} (a smoke run)"
    return (f"result file goes to {paths.RESULTS_DIR}, the leaderboard's committed results; "
            f"to only try things, add --results-dir <folder> (make: ARGS='--results-dir <folder>')")  # fmt: skip


def cmd_bench(args) -> None:
    from benchmarks.running.harness import run_benchmark

    opts = bench_options(args)
    from benchmarks.running.distributed import first_process

    if first_process():  # the other processes of a distributed run start this same command: rank 0 speaks
        print(results_destination(opts), flush=True)
    result, path = run_benchmark(args.entry, opts)
    if path is None:  # a process other than rank 0 of a multi-process run: rank 0 reports the one result
        sys.exit(1 if result.status != "ok" else 0)
    report_result(result, path)


def report_result(result, path) -> None:
    """The aggregate and where the result went (bench, join); exit 1 when a seed failed (such a result is listed,
    never ranked)."""
    agg = result.aggregate
    if agg:
        print(f"{result.entry} on {result.task}: {result.metric} {agg.mean:.3f} ± {agg.std:.3f} (n={agg.n}), "
              f"95% CI [{agg.ci95[0]:.3f}, {agg.ci95[1]:.3f}]")  # fmt: skip
    print(f"result ({result.status}{', smoke' if result.smoke else ''}): {path}")
    if result.status != "ok":
        sys.exit(1)


def cmd_join(args) -> None:
    from benchmarks.core.results import read_result
    from benchmarks.judging.join import join_parts

    path = join_parts(args.paths, args.seeds, args.results_dir)
    result = read_result(path)
    print(f"joined seeds {[s.seed for s in result.seeds]} of {len(result.parts)} parts")
    report_result(result, path)


def cmd_leaderboard(args) -> None:
    from benchmarks.judging.leaderboard import build, check, render_markdown

    if args.print:
        print(render_markdown(args.results_dir))
    elif args.check:
        problems = check(args.results_dir, args.out_dir)
        for line in problems:
            print(line, file=sys.stderr)
        sys.exit(1 if problems else 0)
    else:
        for path in build(args.results_dir, args.out_dir):
            print(f"wrote {path}")


def cmd_verify(args) -> None:
    from benchmarks.judging.verify import VerifyOptions, verify

    options = VerifyOptions(
        seeds=args.seeds,
        run_anyway=args.run_anyway,
        accelerator=args.accelerator,
        data_dir=args.data_dir,
        output_dir=args.output_dir,
        wandb=args.wandb,
        download=args.download,
        progress=args.progress,
        skip_over_minutes=args.skip_over_minutes,
    )
    sys.exit(verify(args.result, options))


def cmd_validate(args) -> None:
    from benchmarks.judging.validate import validate

    problems, notes = validate(args.paths)
    for line in notes:
        print(f"note: {printable(line)}")
    for line in problems:
        print(printable(line), file=sys.stderr)
    print(f"validate: {len(problems)} problem(s)" if problems else "validate: all result files pass")
    sys.exit(1 if problems else 0)


def cmd_compare(args) -> None:
    from benchmarks.judging.compare import compare

    print(compare(args.targets, task=args.task, use_wandb=args.wandb))


def cmd_feature_net(args) -> None:
    from benchmarks.tools.featurenet import export_feature_net

    export_feature_net(
        args.task, data_dir=args.data_dir, output_dir=args.output_dir, threads=args.threads, precision=args.precision
    )


def cmd_reference(args) -> None:
    from benchmarks.running.references import compute_reference, read_reference

    path = compute_reference(args.name, args.task, data_dir=args.data_dir, download=not args.offline)
    record = read_reference(args.task, args.name)
    print(f"{args.name} on {args.task}: {record['metric']} {record['value']:.4f} ({record['details']})\nwrote {path}")


def cmd_probe(args) -> None:
    from pathlib import Path

    from benchmarks.core import paths
    from benchmarks.judging import receptive_fields as rf

    if args.feature_net:
        networks, name = rf.from_feature_net(args.feature_net), "feature-net"
    else:
        networks = rf.from_result(Path(args.result), args.seeds, paths.output_dir(args.output_dir))
        name = Path(args.result).stem
    command = "milestones probe " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["probe"] else "milestones probe"
    path = rf.write_probe(networks, name, command, Path(args.out_dir) / "receptive-fields" if args.out_dir else None)
    print(f"wrote {path} and its pictures; `milestones leaderboard` adds it to the receptive-field table")


def cmd_demo(args) -> None:
    from benchmarks.tools.demo import run_demo

    run_demo(bench_options(args))


def resume_command(argv: list[str], entry: str) -> str:
    """The command that continues an interrupted `milestones bench`: the same options and --resume; under make, also
    the make target (make sets MAKELEVEL for what it runs)."""
    import shlex

    given = [a for a in argv if a != "--resume"]
    command = f"milestones {shlex.join(given)} --resume"
    if os.environ.get("MAKELEVEL") and given[:1] == ["bench"] and entry in given:
        rest = given[1:]
        rest.remove(entry)
        command += f" (or: make bench-{entry} ARGS={shlex.quote(shlex.join([*rest, '--resume']))})"
    return command


def main(argv: list[str] | None = None) -> None:
    try:
        run_command(argv)
    except SystemExit:
        raise
    except BaseException as error:  # Ctrl-C while loading (torch, Lightning) or outside a command's own handling; a
        # Ctrl-C inside torch's imports can surface as another error raised while handling it: its cause is the same
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, KeyboardInterrupt):
            cause = cause.__context__
        if cause is None:
            raise
        exit_interrupted("milestones: interrupted by SIGINT (Ctrl-C)")


def exit_interrupted(message: str) -> None:
    """Say ``message`` and exit with 130. Not through sys.exit: a Ctrl-C that landed in Python code an extension runs
    while importing (torch's) leaves CPython's "unhandled Ctrl-C" flag set, and its shutdown then kills the process
    with SIGINT (status -2, seen in CI) whatever exit status was asked for. What had to be cleaned up was, by the
    ``finally`` blocks the interrupt passed through on its way here."""
    print(message, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(130)


# The errors a command reports in one line (exit 2), by module: each is looked up only where its module was loaded
# (an error can only come from a loaded module), so `list` or `--help` import none of them (torch, Lightning).
KNOWN_ERRORS = {
    "benchmarks.tasks": "UnknownNameError",
    "benchmarks.running.harness": "BenchError",
    "benchmarks.running.registry": "ConfigError",
    "benchmarks.core.results": "ResultError",
    "benchmarks.tasks.files": "DataError",
    "benchmarks.scoring.sample_metrics": "FeatureNetError",
    "benchmarks.running.references": "ReferenceError",
    "benchmarks.running.runfolder": "RunFolderError",
    "benchmarks.running.checkpoints": "CheckpointError",
    "benchmarks.judging.join": "JoinError",
    "benchmarks.judging.receptive_fields": "ProbeError",
}


def loaded(module: str, name: str) -> type | None:
    return getattr(sys.modules[module], name) if module in sys.modules else None


def known_errors() -> tuple[type, ...]:
    return tuple(cls for module, name in KNOWN_ERRORS.items() if (cls := loaded(module, name)) is not None)


def run_command(argv: list[str] | None = None) -> None:
    warnings.filterwarnings("ignore", ".*(does not have many workers|GPU available but not used).*")
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    handlers = {"list": cmd_list, "tasks": cmd_tasks, "bench": cmd_bench, "leaderboard": cmd_leaderboard,
                "verify": cmd_verify, "validate": cmd_validate, "compare": cmd_compare, "demo": cmd_demo,
                "feature-net": cmd_feature_net, "reference": cmd_reference, "join": cmd_join,
                "probe": cmd_probe}  # fmt: skip
    resume = f"; resume: {resume_command(argv, args.entry)}" if args.command == "bench" else ""
    try:
        try:
            handlers[args.command](args)
        except BaseException as error:
            if isinstance(error, known_errors()):
                print(f"milestones: error: {printable(' '.join(str(error).split()))}", file=sys.stderr)
                sys.exit(2)
            interrupted = loaded("benchmarks.running.harness", "BenchInterrupted")
            if interrupted is not None and isinstance(error, interrupted):  # Ctrl-C (130) or SIGTERM (143): never a
                print(f"milestones: {error.describe()}{resume}", file=sys.stderr, flush=True)  # success, no result
                sys.exit(error.code)
            raise
    except KeyboardInterrupt:  # Ctrl-C outside a training or test loop (those raise BenchInterrupted above)
        exit_interrupted(f"milestones: interrupted by SIGINT (Ctrl-C){resume}")
    except OSError as error:
        if error.errno not in STORAGE_ERRORS:
            raise
        where = f" ({error.filename})" if error.filename else ""
        print(f"milestones: error: {error.strerror or error}{where}; result files and checkpoints are written whole or "
              f"not at all, so nothing partial was kept{resume}", file=sys.stderr, flush=True)  # fmt: skip
        sys.exit(2)


if __name__ == "__main__":
    main()
