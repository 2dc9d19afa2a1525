"""The leaderboard's receptive-field section: one row per probe file, the trained network's figures beside its
untrained control's (the mean over the probed seeds), and links to the pictures."""

from __future__ import annotations

from pathlib import Path

INTRO = [
    "Hubel & Wiesel (1959, 1962) found that cells of the cat's primary visual cortex answer bars and edges of one",
    "orientation (*simple* cells, whose response follows the stimulus's position, and *complex* cells, which do not).",
    "`milestones probe` repeats the experiment on a trained network's first stages: full-field gratings at 16",
    "orientations, 8 spatial frequencies and 8 phases (and light and dark bars), each unit read at the centre of its",
    "map, its response above the blank screen's. *Selective*: OSI = (pref − orth)/(pref + orth) ≥ 1/3. *Width*:",
    "the half-width at half-height of the tuning curve of the selective units. *Frequency*: the median preferred",
    "spatial frequency in cycles per input pixel. *F1/F0*: the response's first harmonic over its mean as the",
    "preferred grating drifts through one cycle; Skottun et al. (1991) call a cell simple above 1 and complex below.",
    "The *S* stage is the first convolution's units, the *C* stage the first pooling over them (— where a network has",
    "none). The reference for every figure is the untrained control: the same network at its initialisation (computed",
    "by the suite), so a reader sees what training made, not what a random filter already gives. Values: trained /",
    "control, the mean over the probed seeds.",
]


def _pair(trained: dict | None, control: dict | None, key: str, spec: str = ".2f", scale: float = 1.0) -> str:
    def one(summary):
        value = summary.get(key) if summary else None
        return "—" if value is None else format(value * scale, spec)

    return f"{one(trained)} / {one(control)}"


def probe_rows(probes: list[tuple[Path, dict]], relative) -> list[str]:
    lines = [
        "| network | weights | seeds | S stage | selective % | median OSI | width (°) | frequency | F1/F0 S "
        "| simple % S | C stage | F1/F0 C | simple % C | pictures |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path, record in sorted(probes, key=lambda item: (item[1]["task"], item[1]["entry"], item[1]["name"])):
        trained, control = record["mean"]["trained"], record["mean"]["control"]
        s_t, s_c, c_t, c_c = trained["s"], control["s"], trained["c"], control["c"]
        stages = record["seeds"][0]["stages"]
        source = record["seeds"][0]["source"]
        weights = source["kind"] if source["kind"] != "result" else f"[result]({relative(source['file'])})"
        pictures = " ".join(f"[{name.rsplit('-', 1)[-1].removesuffix('.png')}]({relative(path.parent / name)})"
                            for name in record.get("figures", []))  # fmt: skip
        lines.append(
            f"| {record['entry']} on {record['task']} | {weights} | {len(record['seeds'])} | `{stages['s']}` "
            f"| {_pair(s_t, s_c, 'selective_fraction', '.0f', 100)} | {_pair(s_t, s_c, 'median_osi')} "
            f"| {_pair(s_t, s_c, 'median_width_deg', '.0f')} | {_pair(s_t, s_c, 'median_frequency', '.3f')} "
            f"| {_pair(s_t, s_c, 'median_f1_f0')} | {_pair(s_t, s_c, 'simple_fraction', '.0f', 100)} "
            f"| {'`' + stages['c'] + '`' if stages['c'] else '—'} | {_pair(c_t, c_c, 'median_f1_f0')} "
            f"| {_pair(c_t, c_c, 'simple_fraction', '.0f', 100)} | {pictures} |"
        )
    return lines


def render_probes(probes: list[tuple[Path, dict]], relative) -> list[str]:
    """The section's lines (empty when no probe file is committed). ``relative``: a path as the page links it."""
    if not probes:
        return []
    return ["", "## Receptive fields (Hubel & Wiesel probe)", "", *INTRO, "", *probe_rows(probes, relative)]
