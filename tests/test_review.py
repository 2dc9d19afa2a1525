"""The review fields of an entry: its deviations from the paper, its division, and the kind of its reference number.

"Closed" means faithful, enforced: a closed entry may deviate only in what its task fixes for every entry. A
reference says what kind of number it is, and a number the suite computes must equal its committed record. The review
is the registry's: a result made before an entry was reclassified keeps its run, and the leaderboard shows today's
division and deviations.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from benchmarks.core.results import find_results, read_result
from benchmarks.judging import leaderboard
from benchmarks.judging.validate import validate_file
from benchmarks.running import references
from benchmarks.running.registry import (
    DEVIATION_KINDS,
    TASK_FIXED,
    ConfigError,
    all_entries,
    entry_from_resolved,
    get_entry,
    load_entry,
    run_differences,
)

ENTRIES = sorted(all_entries())


def _write(tmp_path, text: str, name: str = "tiny"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(f"entry: {text.split('entry: ')[1].split()[0]}", f"entry: {name}", 1))
    return path


def _closed_yaml() -> str:
    return get_entry("gan").path.read_text()


@pytest.mark.parametrize("name", ENTRIES)
def test_every_entry_says_what_it_changed_and_a_closed_one_changed_only_what_its_task_fixes(name):
    config = get_entry(name).config
    for deviation in config.deviations:
        assert deviation.kind in DEVIATION_KINDS and deviation.what.strip() and deviation.why.strip()
    if config.division == "closed":
        assert all(d.kind in TASK_FIXED for d in config.deviations), name
    if config.reported is not None:
        assert config.reported.kind in references_kinds()


def references_kinds():
    from benchmarks.running.registry import REFERENCE_KINDS

    return set(REFERENCE_KINDS)


@pytest.mark.parametrize("kind", ["model", "recipe"])
def test_a_closed_entry_that_lists_a_model_or_recipe_deviation_is_refused(tmp_path, kind):
    text = _closed_yaml().replace(
        "deviations:\n", f'deviations:\n  - kind: {kind}\n    what: "wider layers"\n    why: "faster"\n', 1
    )
    with pytest.raises(ConfigError, match=f"'{kind}' deviation 'wider layers' makes it open"):
        load_entry(_write(tmp_path, text))
    load_entry(_write(tmp_path, text.replace("division: closed", "division: open")))  # honest as open


@pytest.mark.parametrize("kind", TASK_FIXED)
def test_a_closed_entry_may_deviate_in_what_the_task_fixes(tmp_path, kind):
    text = _closed_yaml().replace("deviations:\n", f'deviations:\n  - kind: {kind}\n    what: "x"\n    why: "y"\n', 1)
    assert load_entry(_write(tmp_path, text)).config.division == "closed"


@pytest.mark.parametrize(
    "change,message",
    [
        (("  kind: paper\n", ""), "reported.kind"),
        (("  kind: paper\n", "  kind: folklore\n"), "reported.kind"),
        (("deviations:\n", "deviation:\n"), "deviation"),
        (("  - kind: budget\n", "  - kind: vibes\n"), "deviations.0.kind"),
        (('    why: "the authors trained', '    because: "the authors trained'), "deviations.0"),
        (("  kind: paper\n", "  kind: suite\n"), "reference"),
    ],
)
def test_a_reference_without_a_kind_or_a_malformed_deviation_is_refused(tmp_path, change, message):
    text = _closed_yaml()
    assert change[0] in text
    with pytest.raises(ConfigError, match=message):
        load_entry(_write(tmp_path, text.replace(*change, 1)))


def test_a_suite_reference_must_quote_its_committed_record(tmp_path):
    text = get_entry("adaline").path.read_text()
    assert load_entry(_write(tmp_path, text)).config.reported.value == pytest.approx(
        references.read_reference("mnist", "least-squares")["value"], abs=0.005
    )
    with pytest.raises(ConfigError, match="quote the record"):
        load_entry(_write(tmp_path, text.replace("value: 13.98", "value: 12.0")))
    with pytest.raises(ConfigError, match="is not one of"):
        load_entry(_write(tmp_path, text.replace("reference: least-squares", "reference: oracle")))


def test_a_missing_reference_record_says_what_to_run(monkeypatch, tmp_path):
    monkeypatch.setattr(references, "REFERENCES_DIR", tmp_path)
    with pytest.raises(references.ReferenceError, match="milestones reference least-squares --task mnist"):
        references.read_reference("mnist", "least-squares")


def test_least_squares_is_numpys_solution_and_perfect_on_a_separable_toy():
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (300,))
    images = torch.full((300, 1, 2, 3), 0, dtype=torch.uint8)
    images[torch.arange(300), 0, 0, labels] = 255  # class k lights pixel k: linearly separable
    splits = {"train": (images[:200], labels[:200]), "val": (images[200:250], labels[200:250]),
              "test": (images[250:], labels[250:])}  # fmt: skip
    computed = references.least_squares(splits, num_classes=3)
    assert computed["value"] == 0.0 and computed["details"]["train_error"] == 0.0
    inputs = references._switch_levels(images[:200])
    assert inputs.shape == (200, 7) and inputs.min() == -1 and inputs.max() == 1 and (inputs[:, -1] == 1).all()
    assert np.linalg.matrix_rank(inputs) == computed["details"]["rank"]


def _committed(entry: str, task: str = "mnist"):
    return next(
        p for p in find_results(leaderboard.paths.RESULTS_DIR) if (p.parent.parent.name, p.parent.name) == (task, entry)
    )


def test_a_reclassified_entry_keeps_its_results_and_the_leaderboard_shows_the_review():
    path = _committed("mlp")  # recorded as closed; the review moved mlp to open (mini-batches for whole-set sums)
    result = read_result(path)
    assert result.division == "closed" and get_entry("mlp").config.division == "open"
    problems, notes = validate_file(path, leaderboard.paths.RESULTS_DIR)
    assert not problems and any("the registry now says 'open'" in n for n in notes)
    row = leaderboard._row(path, result)
    assert row["division"] == "open" and "recipe" in row["deviations"] and row["paper_kind"] == "later-paper"
    assert leaderboard.deviations_cell(row, "entries.md") == "[data, recipe ×2](entries.md#mlp)"


def test_a_changed_run_is_a_problem_and_a_changed_review_is_not(tmp_path):
    path = _committed("mlp")
    recorded = json.loads(path.read_text())["config"]
    registry = get_entry("mlp").resolved_config(get_entry("mlp").task("mnist"))
    assert run_differences(recorded, registry) == []
    changed = json.loads(json.dumps(recorded))
    changed["model"]["init_args"]["lr"] = 0.1
    changed["division"], changed["summary"] = "open", "anything"
    assert run_differences(changed, registry) == ["model.init_args.lr: 0.1 ≠ 0.04"]


def test_verify_rebuilds_an_old_record_from_its_run_and_todays_review(tmp_path):
    path = _committed("mlp")
    recorded = json.loads(path.read_text())["config"]
    assert "deviations" not in recorded and "kind" not in recorded["reported"]  # written before the review fields
    entry = entry_from_resolved(recorded, path, get_entry("mlp"))
    task = get_entry("mlp").task("mnist")
    assert run_differences(entry.resolved_config(task), recorded) == []
    assert entry.config.division == "open" and entry.config.deviations == get_entry("mlp").config.deviations


def test_the_entries_page_lists_every_entry_with_its_deviations(tmp_path):
    page = leaderboard.render_entries()
    for name, entry in all_entries().items():
        assert f"\n## {name}\n" in page
        for deviation in entry.config.deviations:
            assert f"| {deviation.kind} | {deviation.what} |" in page
    assert "Reference (suite): 13.98 on mnist" in page


def test_a_copied_results_tree_renders_deviation_links(tmp_path):
    shutil.copytree(leaderboard.paths.RESULTS_DIR / "mnist", tmp_path / "mnist")
    text = leaderboard.render_markdown(tmp_path)
    assert "| deviations from the paper |" in text and "[data, recipe ×2](entries.md#mlp)" in text
    assert "13.98 (suite)" in text


def test_milestones_reference_recomputes_the_committed_record(real_data_dir, monkeypatch, tmp_path, capsys):
    """The README's `milestones reference least-squares --task mnist`, on the real data: the committed 13.98 %."""
    from benchmarks.cli import main

    monkeypatch.setattr(references, "REFERENCES_DIR", tmp_path)
    main(["reference", "least-squares", "--task", "mnist", "--data-dir", str(real_data_dir), "--offline"])
    assert "least-squares on mnist: error 13.9800" in capsys.readouterr().out
    fresh = references.read_reference("mnist", "least-squares")
    committed = json.loads((leaderboard.paths.LEADERBOARD_DIR / "references/mnist/least-squares.json").read_text())
    assert fresh["value"] == committed["value"] and fresh["details"] == committed["details"]
    assert fresh["dataset"] == committed["dataset"]


def test_milestones_reference_of_an_unknown_name_is_one_line(capsys):
    from benchmarks.cli import main

    with pytest.raises(SystemExit) as info:
        main(["reference", "oracle", "--task", "mnist", "--offline"])
    assert info.value.code == 2 and "unknown reference 'oracle'" in capsys.readouterr().err


def test_validate_refuses_when_a_closed_entry_lists_a_recipe_deviation(tmp_path, monkeypatch, capsys):
    """`milestones validate` loads the registry: a closed entry listing a recipe deviation stops it, in one line."""
    from benchmarks.cli import main
    from benchmarks.running import registry

    configs = tmp_path / "configs"
    shutil.copytree(registry.CONFIG_DIR, configs)
    gan = configs / "gan.yaml"
    gan.write_text(
        gan.read_text().replace("deviations:\n", 'deviations:\n  - {kind: recipe, what: "Adam", why: "x"}\n')
    )
    monkeypatch.setattr(registry, "CONFIG_DIR", configs)
    monkeypatch.setattr(registry, "all_entries", lambda config_dir=configs: registry._registry(configs))
    with pytest.raises(SystemExit) as info:
        main(["validate"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "gan.yaml" in err and "'recipe' deviation 'Adam' makes it open" in err
