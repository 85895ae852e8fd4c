"""The metrics stage: the study summary from the per-stage reports.

Inputs are found from params.yaml (doses × views), never by globbing a folder, so a
dose or view removed from the design cannot leak stale numbers into the summary.
"""

from __future__ import annotations

import json
from pathlib import Path

from ptychostudy import StudyError
from ptychostudy.config import Config
from ptychostudy.io import sha256_file, write_json, write_text
from ptychostudy.simulate import SPLITS


def dose_tag(dose: int) -> str:
    return f"dose_{dose}"


def view_tag(dose: int, view: str) -> str:
    return f"dose_{dose}-{view}"


def _read(path: Path) -> dict:
    if not path.is_file():
        raise StudyError(f"{path} is missing: run the stage that writes it (dvc repro) first")
    return json.loads(path.read_text(encoding="utf-8"))


def summarize(
    cfg: Config,
    simulate_reports: Path,
    view_reports: Path,
    train_reports: Path,
    models: Path,
    out_dir: Path,
    timing: Path | None = None,
) -> dict:
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
    jobs, train_lines = _training(cfg, Path(train_reports), metrics, skips, Path(models))
    lines += train_lines
    lines += ["", "## Skipped views", ""]
    lines += [f"- dose {s['dose']:g}, {s['view']} (phase {s['phase']}): {s['reason']}" for s in skips] or ["None."]
    lines.append("")
    out_dir = Path(out_dir)
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "skip_summary.json", skips)
    write_json(out_dir / "training_manifest.json", {"artifact_dir": str(models), "jobs": jobs, "skipped": skips})
    write_text(out_dir / "summary.md", "\n".join(lines))
    if timing is not None and Path(timing).is_dir():
        _timing_table(cfg, Path(timing))
    return metrics


def _check_bundle(path: Path, facts: dict) -> None:
    if not path.is_file():
        raise StudyError(f"{path} is missing: run its training stage (dvc repro) or restore it (dvc pull)")
    digest = sha256_file(path)
    if digest != facts["sha256"] or path.stat().st_size != facts["bytes"]:
        raise StudyError(
            f"{path} has sha256 {digest} ({path.stat().st_size} bytes) but its job record says "
            f"{facts['sha256']} ({facts['bytes']} bytes): the bundle changed after training"
        )


def _training(cfg: Config, train_reports: Path, metrics: dict, skips: list, models: Path) -> tuple[list, list]:
    """Manifest entries, metrics and summary lines of Phase E (bundles checked against the job records)."""
    jobs = []
    lines = [
        "",
        "## Phase E: trained networks",
        "",
        "Scores of the stitched reconstruction inside the object's featured region (the flat padding excluded): "
        "Pearson r of amplitude and phase, and the phase spread ratio (std of reconstructed / true phase) after "
        "removing the global phase offset and ramp. Train = the region the network was trained on, test = the "
        "unseen region beyond the guard band.",
        "",
        "| dose | view | gridsize | steps | final loss | train amp r | train phase r | train spread "
        "| test amp r | test phase r | test spread | bundle SHA256 | bytes |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for dose in cfg.study.doses:
        for view in cfg.study.views:
            record = _read(train_reports / f"{view_tag(dose, view)}.json")
            if record.get("dose") != dose or record.get("view") != view:
                raise StudyError(f"{train_reports / view_tag(dose, view)}.json describes another job")
            bundle = record["bundle"]
            _check_bundle(models / bundle["path"], bundle)
            if record["skipped"]:
                if not any(s["dose"] == dose and s["view"] == view for s in skips):
                    skips.append({"dose": dose, "view": view, "phase": "E", "reason": record["reason"]})
                continue
            jobs.append({
                "dose": dose, "view": view, "gridsize": record["gridsize"],
                "data": {split: record["data"][split]["path"] for split in SPLITS},
                "data_sha256": {split: record["data"][split]["sha256"] for split in SPLITS},
                "final_loss": record["final_loss"], "epochs": record["epochs"], "steps": record["steps"],
                "bundle": bundle["path"], "sha256": bundle["sha256"], "bytes": bundle["bytes"],
                "scores": record["scores"],
            })
            metrics[dose_tag(dose)].setdefault("train", {})[view] = {
                "final_loss": record["final_loss"],
                "steps": record["steps"],
                "bundle_bytes": bundle["bytes"],
                **{split: record["scores"][split] for split in SPLITS},
            }
            tr, te = record["scores"]["train"], record["scores"]["test"]
            lines.append(
                f"| {dose:g} | {view} | {record['gridsize']} | {record['steps']} | {record['final_loss']:.4f} "
                f"| {tr['amplitude_r']:.3f} | {tr['phase_r']:.3f} | {tr['phase_spread_ratio']:.3f} "
                f"| {te['amplitude_r']:.3f} | {te['phase_r']:.3f} | {te['phase_spread_ratio']:.3f} "
                f"| `{bundle['sha256']}` | {bundle['bytes']} |"
            )
    return jobs, lines


def _timing_table(cfg: Config, timing: Path) -> None:
    """Wall times (measurements, not reproducible) go beside the tracked outputs, never into them."""
    rows = [
        "| dose | view | training wall time (s) | ms per step (per-epoch scoring included) | threads | accelerator |",
        "|---:|---|---:|---:|---:|---|",
    ]
    total = 0.0
    for dose in cfg.study.doses:
        for view in cfg.study.views:
            path = timing / f"train-{view_tag(dose, view)}.json"
            if path.is_file():
                t = json.loads(path.read_text(encoding="utf-8"))
                total += t["train_seconds"]
                rows.append(f"| {dose:g} | {view} | {t['train_seconds']:.1f} | {t['ms_per_step']:.0f} | {t['threads']} | {t['accelerator']} |")
    rows.append(f"\nTotal training wall time: {total:.1f} s\n")
    write_text(timing / "summary.md", "# Phase E wall times (this machine, last run)\n\n" + "\n".join(rows))
