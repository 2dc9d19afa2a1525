"""``milestones probe``: the Hubel & Wiesel experiment on a trained image entry's first layer, against its control.

A network's first stages are found in its own forward pass, so no model declares anything (``first_stages``):

- the *S stage* (simple cells): the first ``nn.Conv2d`` the input meets, read at the last map of that shape that a
  module without children gives before the map shrinks (after the nonlinearity or normalisation where the model has
  them as modules);
- the *C stage* (complex cells): the first later map with the same channels and a smaller size: the pooling or
  subsampling over those units; absent in a network whose next convolution comes first (e.g. ResNet).

A model whose first stages are not modules of these kinds names them in a class attribute
``probe_stages = ("<S module name>", "<C module name or None>")``, or, when they are not modules at all (the
Neocognitron's S- and C-cells are functions of its buffers), returns them from ``probe_maps(x) -> (S, C or None)``.

Weights come from what the suite can rebuild: a committed feature net (``--feature-net mnist``), or a committed
result's seeds (``--result FILE``), whose best-validation checkpoints (the weights the row tested) are read from the
run folder of ``milestones bench`` or ``milestones verify`` (which re-trains a row and keeps them). The control is an
untrained network of the same class and arguments, initialised under ``torch.manual_seed(seed)`` for each seed.
The probe file (``leaderboards/probes/receptive-fields/<task>/<entry>/<name>.json``) records per unit and per seed
the trained and control measures and their summary; the leaderboard's receptive-field table is built from it.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from benchmarks.core import paths
from benchmarks.core.checksums import sha256_file
from benchmarks.core.environment import code_identity
from benchmarks.core.results import read_result, write_atomic
from benchmarks.judging import gratings as g

PROBES_DIR = paths.LEADERBOARD_DIR / "probes" / "receptive-fields"
SCHEMA = 1
BATCH = 64


class ProbeError(ValueError):
    """Weights that cannot be found or read, or a network the probe cannot stimulate; the message says what to do."""


@dataclass
class Network:
    """One set of weights to probe and how it was obtained."""

    entry: str
    task: str
    seed: int
    model: nn.Module
    control: nn.Module
    input_shape: tuple[int, int, int]
    source: dict


class _Stop(Exception):
    """Raised by a hook once the stages are read: the rest of the forward pass is not needed."""


def stage_maps(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, tuple]:
    """(S responses (N, C, h, w), C responses (N, C, h', w') or None, (S name, C name)) for a batch of images."""
    if hasattr(model, "probe_maps"):
        with torch.no_grad():
            s, c = model.probe_maps(images)
        return s, c, ("probe_maps: S", "probe_maps: C" if c is not None else None)
    names = {module: name for name, module in model.named_modules() if name}
    declared = getattr(type(model), "probe_stages", None)
    seen: dict[str, object] = {"conv": None, "s": None, "c": None}

    def hook(module, inputs, output):
        if not (torch.is_tensor(output) and output.dim() == 4):
            return
        name = names[module]
        if declared:
            if name == declared[0]:
                seen["s"] = (name, output)
                if not declared[1]:
                    raise _Stop
            elif declared[1] and name == declared[1]:
                seen["c"] = (name, output)
                raise _Stop
            return
        if seen["conv"] is None:
            if isinstance(module, nn.Conv2d):
                seen["conv"] = seen["s"] = (name, output)
            return
        if next(module.children(), None) is not None:
            return  # a container: its leaves were seen already
        if isinstance(module, nn.Conv2d):
            raise _Stop  # the next layer of filters begins before any pooling: no C stage
        s_shape = seen["conv"][1].shape
        if output.shape == s_shape:
            seen["s"] = (name, output)  # the same map after its nonlinearity or normalisation
        elif output.shape[1] == s_shape[1] and output.shape[-1] < s_shape[-1]:
            seen["c"] = (name, output)
            raise _Stop

    handles = [module.register_forward_hook(hook) for module in names]
    try:
        with torch.no_grad():
            model(images)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    if seen["s"] is None:
        raise ProbeError(
            f"{type(model).__name__}: no nn.Conv2d met the input; name its first stages in a class attribute "
            "probe_stages = ('<S module>', '<C module or None>')"
        )
    c = seen["c"]
    return seen["s"][1], (c[1] if c else None), (seen["s"][0], c[0] if c else None)


def centre(maps: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) → (N, C): each unit's response at the middle of its map (the stimuli are centred there)."""
    return maps[:, :, maps.shape[2] // 2, maps.shape[3] // 2]


def respond(model: nn.Module, stimuli: torch.Tensor, baseline: tuple) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Stimuli (..., C, H, W) → rectified responses above the blank, S (units, ...) and C (units, ...) or None."""
    lead = stimuli.shape[:-3]
    flat = stimuli.reshape(-1, *stimuli.shape[-3:])
    s_parts, c_parts = [], []
    for start in range(0, len(flat), BATCH):
        s, c, _ = stage_maps(model, flat[start : start + BATCH])
        s_parts.append(centre(s))
        c_parts.append(centre(c) if c is not None else None)
    s = (torch.cat(s_parts) - baseline[0]).clamp_min(0).T.reshape(-1, *lead)  # (units, ...)
    if c_parts[0] is None:
        return s, None
    return s, (torch.cat(c_parts) - baseline[1]).clamp_min(0).T.reshape(-1, *lead)


def measure(model: nn.Module, input_shape: tuple[int, int, int]) -> dict:
    """Every unit's measures at the S stage (gratings and bars) and the C stage (gratings), as plain lists."""
    model.eval()
    s_blank, c_blank, stages = stage_maps(model, g.blank(input_shape))
    baseline = (centre(s_blank), centre(c_blank) if c_blank is not None else None)
    s, c = respond(model, g.gratings(input_shape), baseline)  # (units, F, O, P)
    s_tuning = g.tuning(s)
    # bars half a period wide at each unit's preferred frequency: one sweep per frequency that some unit prefers
    bar_osi = torch.zeros(len(s))
    bar_curve = torch.zeros(len(s), g.ORIENTATIONS)
    for f_index in s_tuning["frequency_index"].unique().tolist():
        units = s_tuning["frequency_index"] == f_index
        responses, _ = respond(model, g.bars(input_shape, g.FREQUENCIES[f_index]), baseline)
        bars = g.bar_tuning(responses[units])
        bar_osi[units], bar_curve[units] = bars["osi"], bars["curve"]
    record = {"stages": {"s": stages[0], "c": stages[1]}, "s": _unit_lists(s_tuning), "c": None}
    record["s"]["bar_osi"] = [round(float(v), 6) for v in bar_osi]
    record["s"]["bar_curve"] = [[round(float(v), 6) for v in row] for row in bar_curve]
    if c is not None:
        record["c"] = _unit_lists(g.tuning(c))
    return record


def _unit_lists(tuning: dict) -> dict:
    keys = ("responsive", "frequency", "orientation", "osi", "width", "f1_f0")
    lists = {key: [round(float(v), 6) if key != "responsive" else bool(v) for v in tuning[key]] for key in keys}
    lists["curve"] = [[round(float(v), 6) for v in row] for row in tuning["curve"]]
    return lists


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def summary(stage: dict | None) -> dict | None:
    """A stage's figures over its responsive units: how many, the fraction orientation selective (OSI ≥ 1/3), the
    median OSI and bar OSI, the median tuning width of the selective units, the median preferred frequency (cycles per
    input pixel), the median F1/F0 and the fraction simple (F1/F0 > 1)."""
    if stage is None:
        return None
    live = [i for i, responsive in enumerate(stage["responsive"]) if responsive]
    selective = [i for i in live if stage["osi"][i] >= g.SELECTIVE_OSI]
    n = len(live)
    return {
        "units": len(stage["responsive"]),
        "responsive": n,
        "selective_fraction": round(len(selective) / n, 4) if n else None,
        "median_osi": _median([stage["osi"][i] for i in live]),
        "median_bar_osi": _median([stage["bar_osi"][i] for i in live]) if "bar_osi" in stage else None,
        "median_width_deg": _median([stage["width"][i] for i in selective]),
        "median_frequency": _median([stage["frequency"][i] for i in live]),
        "median_f1_f0": _median([stage["f1_f0"][i] for i in live]),
        "simple_fraction": round(sum(stage["f1_f0"][i] > g.SIMPLE_F1_F0 for i in live) / n, 4) if n else None,
    }


def probe(network: Network) -> dict:
    """The record of one seed: the trained network's and its control's measures and summaries."""
    trained, control = measure(network.model, network.input_shape), measure(network.control, network.input_shape)
    return {
        "seed": network.seed,
        "source": network.source,
        "stages": trained.pop("stages"),
        "trained": {"summary": {"s": summary(trained["s"]), "c": summary(trained["c"])}, "units": trained},
        "control": {"summary": {"s": summary(control["s"]), "c": summary(control["c"])},
                    "units": {k: v for k, v in control.items() if k != "stages"}},
    }  # fmt: skip


def first_filters(model: nn.Module, input_shape) -> torch.Tensor | None:
    """The first layer's filters (C_out, C_in, k, k): the first 4-D parameter or buffer, in registration order, that
    reads the input's channels (a convolution's weight, or the Neocognitron's a₁)."""
    for tensor in model.state_dict().values():
        if tensor.dim() == 4 and tensor.shape[1] == input_shape[0] and tensor.is_floating_point():
            return tensor.detach().clone()
    return None


# --- where the weights come from ------------------------------------------------------------------------------------
def _relative(path: Path) -> str:
    """A path as the probe file records it: relative to the repository when inside it."""
    try:
        return str(Path(path).resolve().relative_to(paths.REPO_ROOT))
    except ValueError:
        return str(path)


def _untrained(cls, hparams: dict, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return cls(**hparams)


def _input_shape(task: str) -> tuple[int, int, int]:
    from benchmarks.tasks import get_task

    shape = get_task(task).model_inputs.get("input_shape")
    if shape is None or len(shape) != 3:
        raise ProbeError(f"task '{task}' gives its models no image shape (C, H, W): the probe shows images only")
    return tuple(shape)


def from_feature_net(task: str) -> list[Network]:
    """The committed feature net of ``task`` (lenet5-modern, seed 0; benchmarks/featurenets/)."""
    from benchmarks.scoring.sample_metrics import FEATURE_NET_DIR
    from lightning_modules.lenet_modern import LeNet5Modern

    path = Path(FEATURE_NET_DIR) / f"{task}-lenet5-modern.pt"
    if not path.is_file():
        raise ProbeError(f"no feature net for task '{task}' ({path}); feature nets exist for mnist and fashion-mnist")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = LeNet5Modern(**saved["hparams"])
    model.load_state_dict(saved["state_dict"])
    provenance = json.loads(path.with_suffix(".json").read_text())
    source = {"kind": "feature-net", "file": _relative(path), "sha256": "sha256:" + sha256_file(path),
              "config_hash": provenance["config_hash"], "selected_epoch": provenance["selected_epoch"]}  # fmt: skip
    control = _untrained(LeNet5Modern, saved["hparams"], 0)
    return [Network("lenet5-modern", task, 0, model, control, _input_shape(task), source)]


def checkpoint_of(result_path: Path, seed, output_dir: Path) -> Path:
    """The checkpoint a seed of a result was tested with, from bench's or verify's run folder: its best-validation
    one, or, for a model whose paper tests the weights training ends with (no selected epoch), the last one."""
    expected = f"best-epoch{seed.selected_epoch:03d}.ckpt" if seed.selected_epoch is not None else "last.ckpt"
    folders = [output_dir / seed.log_dir / "checkpoints", output_dir / "verify" / seed.log_dir / "checkpoints"]
    for folder in folders:
        if (folder / expected).is_file():
            return folder / expected
    raise ProbeError(
        f"no checkpoint of seed {seed.seed} of {result_path} ({expected}) under "
        f"{folders[0]} or {folders[1]}; rebuild the weights with `milestones verify {result_path} --seeds {seed.seed}`"
        " (it re-trains the row and keeps its checkpoints), or pass --output-dir where the run wrote them"
    )


def from_result(result_path: Path, seeds: list[int] | None, output_dir: Path) -> list[Network]:
    """Each requested seed of a committed result (default: all of its seeds) with the weights it was tested with."""
    from benchmarks.running.registry import import_class

    result = read_result(result_path)
    if not isinstance(result.config.get("model"), dict) or "class_path" not in result.config["model"]:
        raise ProbeError(f"{result_path}: its config names no model class")
    input_shape = _input_shape(result.task)
    cls = import_class(result.config["model"]["class_path"], result_path)
    by_seed = {seed.seed: seed for seed in result.seeds if seed.status == "ok"}
    wanted = seeds if seeds is not None else sorted(by_seed)
    missing = [s for s in wanted if s not in by_seed]
    if missing:
        raise ProbeError(f"{result_path} has no successful seed {missing[0]}; its seeds: {sorted(by_seed)}")
    networks = []
    for number in wanted:
        path = checkpoint_of(result_path, by_seed[number], output_dir)
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        hparams = dict(checkpoint.get("hyper_parameters", {}))
        model = cls(**hparams)
        model.load_state_dict(checkpoint["state_dict"])
        source = {"kind": "result", "file": _relative(result_path), "config_hash": result.config_hash,
                  "checkpoint": path.name, "sha256": "sha256:" + sha256_file(path),
                  "selected_epoch": by_seed[number].selected_epoch}  # fmt: skip
        networks.append(Network(result.entry, result.task, number, model, _untrained(cls, hparams, number),
                                input_shape, source))  # fmt: skip
    return networks


# --- the probe file -------------------------------------------------------------------------------------------------
def _mean(records: list[dict], side: str, stage: str) -> dict | None:
    """The seeds' mean of each summary figure (None where a seed has none)."""
    summaries = [r[side]["summary"][stage] for r in records]
    if any(s is None for s in summaries):
        return None
    keys = summaries[0].keys()
    means = {}
    for key in keys:
        values = [s[key] for s in summaries]
        means[key] = round(sum(values) / len(values), 4) if all(v is not None for v in values) else None
    return means


def record_file(networks: list[Network], name: str, command: str) -> dict:
    torch.set_num_threads(1)  # the same numbers on every machine thread count (reductions in one order)
    records = [probe(network) for network in networks]
    first = networks[0]
    return {
        "schema_version": SCHEMA,
        "probe": "receptive-fields",
        "name": name,
        "entry": first.entry,
        "task": first.task,
        "input_shape": list(first.input_shape),
        "stimuli": {
            "orientations": g.ORIENTATIONS,
            "frequencies": list(g.FREQUENCIES),
            "phases": g.PHASES,
            "contrast": 1.0,
            "mean": 0.5,
            "selective_osi": round(g.SELECTIVE_OSI, 6),
            "simple_f1_f0": g.SIMPLE_F1_F0,
        },  # fmt: skip
        "seeds": records,
        "mean": {side: {stage: _mean(records, side, stage) for stage in ("s", "c")} for side in ("trained", "control")},
        "command": command,
        "code": code_identity(),
        "torch": torch.__version__,
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    }


def write_probe(networks: list[Network], name: str, command: str, out_dir: Path | None = None) -> Path:
    from benchmarks.judging.receptive_field_figures import filters_png, tuning_png

    record = record_file(networks, name, command)
    folder = Path(out_dir or PROBES_DIR) / record["task"] / record["entry"]
    path = folder / f"{name}.json"
    first = networks[0]
    figures = {
        folder / f"{name}-filters.png": filters_png(record, first_filters(first.model, first.input_shape),
                                                    first_filters(first.control, first.input_shape)),
        folder / f"{name}-tuning.png": tuning_png(record),
    }  # fmt: skip
    record["figures"] = [p.name for p in figures]
    for figure, data in figures.items():
        write_atomic(data, figure, overwrite=True)
    write_atomic(json.dumps(record, indent=1, ensure_ascii=False) + "\n", path, overwrite=True)
    return path


def read_probes(probes_dir: Path | None = None) -> list[tuple[Path, dict]]:
    """Every committed probe file, parsed as data (JSON only), by path."""
    root = Path(probes_dir or PROBES_DIR)
    return [(path, json.loads(path.read_text(encoding="utf-8"))) for path in sorted(root.rglob("*.json"))]


def probe_problems(probes_dir: Path | None = None) -> list[str]:
    """One line per way a committed probe file departs from what it claims: its summaries and means re-derived from
    its per-unit values, its pictures present and whole, its weights' source still the committed file it names."""
    from benchmarks.core.results import file_problem

    problems = []
    for path, record in _readable(Path(probes_dir or PROBES_DIR), problems):
        try:
            sides = [(side, stage) for side in ("trained", "control") for stage in ("s", "c")]
            for seed, (side, stage) in ((seed, pair) for seed in record["seeds"] for pair in sides):
                if summary(seed[side]["units"][stage]) != seed[side]["summary"][stage]:
                    problems.append(f"{path}: seed {seed['seed']} {side} {stage}: summary differs from its units")
            for side, stage in sides:
                if _mean(record["seeds"], side, stage) != record["mean"][side][stage]:
                    problems.append(f"{path}: mean {side} {stage}: differs from its seeds' summaries")
            for name in record["figures"]:
                problem = file_problem(path.parent / name)
                if problem:
                    problems.append(f"{path}: picture {name}: {problem}")
            for seed in record["seeds"]:
                source = seed["source"]
                named = paths.REPO_ROOT / source["file"]
                if not named.is_file():
                    problems.append(
                        f"{path}: seed {seed['seed']}: its source {source['file']} is not in the repository"
                    )
                elif source["kind"] == "feature-net" and "sha256:" + sha256_file(named) != source["sha256"]:
                    problems.append(f"{path}: its feature net {source['file']} is not the file it probed (sha256)")
        except (KeyError, TypeError, AttributeError) as error:
            problems.append(f"{path}: not a probe file of schema {SCHEMA} ({type(error).__name__}: {error})")
    return problems


def _readable(root: Path, problems: list[str]) -> list[tuple[Path, dict]]:
    readable = []
    for path in sorted(root.rglob("*.json")):
        try:
            readable.append((path, json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError) as error:
            problems.append(f"{path}: not readable as JSON ({error})")
    return readable
