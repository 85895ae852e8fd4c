"""The metrics stage: the study summary from the per-stage reports.

Inputs are found from params.yaml (doses × views), never by globbing a folder, so a
dose or view removed from the design cannot leak stale numbers into the summary.
"""

from __future__ import annotations

import json
from pathlib import Path

from ptychostudy import StudyError
from ptychostudy.config import Config
from ptychostudy.io import write_json, write_text
from ptychostudy.simulate import SPLITS


def dose_tag(dose: int) -> str:
    return f"dose_{dose}"


def view_tag(dose: int, view: str) -> str:
    return f"dose_{dose}-{view}"


def _read(path: Path) -> dict:
    if not path.is_file():
        raise StudyError(f"{path} is missing: run the stage that writes it (dvc repro) first")
    return json.loads(path.read_text(encoding="utf-8"))


def summarize(cfg: Config, simulate_reports: Path, view_reports: Path, out_dir: Path) -> dict:
    metrics: dict = {}
    skips = []
    lines = [
        "# Study summary",
        "",
        "Written by the metrics stage (`ptychostudy summarize`) from the per-stage reports.",
        "",
        "## Phase C: simulated data",
        "",
        "| dose (photons/pattern) | measured mean counts/pattern | scale s | train positions | test positions | guard band (untouched rows) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    sims = {dose: _read(Path(simulate_reports) / f"{dose_tag(dose)}.json") for dose in cfg.study.doses}
    for dose, sim in sims.items():
        metrics[dose_tag(dose)] = {
            "mean_counts_per_pattern": sim["mean_counts_per_pattern"],
            "scale": sim["scale"],
            "train_positions": sim["train"]["positions"],
            "test_positions": sim["test"]["positions"],
        }
        lines.append(
            f"| {dose:g} | {sim['mean_counts_per_pattern']:.1f} | {sim['scale']:.4g} | {sim['train']['positions']} "
            f"| {sim['test']['positions']} | {sim['guard_band_untouched']} |"
        )
    lines += [
        "",
        "## Phase D: overlap views (measured)",
        "",
        "D is the probe diameter holding the configured power fraction; S = (1 − f)·D the minimum spacing. "
        "Overlap is the area overlap of probe discs with the nearest neighbour.",
        "",
        "| dose | view | gridsize | D (px) | S (px) | split | positions | groups | NN distance median (px) | linear overlap (NN) | area overlap (NN) |",
        "|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for dose in cfg.study.doses:
        for view in cfg.study.views:
            summary = _read(Path(view_reports) / f"{view_tag(dose, view)}.json")
            entry = {"skipped": int(summary["skipped"]), "probe_diameter_px": summary["probe_diameter_px"]}
            for split in SPLITS:
                facts = summary[split]
                entry[split] = {k: v for k, v in facts.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                lines.append(
                    f"| {dose:g} | {view} | {summary['gridsize']} | {summary['probe_diameter_px']:.1f} "
                    f"| {summary['min_spacing_px']:.1f} | {split} | {facts['positions']} | {facts['groups']} "
                    f"| {facts.get('nn_distance_median_px', float('nan')):.2f} "
                    f"| {facts.get('linear_overlap_nn_mean', float('nan')):.3f} "
                    f"| {facts.get('area_overlap_nn_mean', float('nan')):.3f} |"
                )
            metrics[dose_tag(dose)].setdefault("views", {})[view] = entry
            if summary["skipped"]:
                skips.append({"dose": dose, "view": view, "phase": "D", "reason": summary["reason"]})
    lines += ["", "## Skipped views", ""]
    lines += [f"- dose {s['dose']:g}, {s['view']}: {s['reason']}" for s in skips] or ["None."]
    lines.append("")
    out_dir = Path(out_dir)
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "skip_summary.json", skips)
    write_text(out_dir / "summary.md", "\n".join(lines))
    return metrics
