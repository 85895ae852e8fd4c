"""The metrics stage (``summarize``): the study summary from the per-stage reports.

Inputs are found from params.yaml (doses × views), never by globbing a folder, so a
dose or view removed from the design cannot leak stale numbers into the summary.

Outputs: ``summary.md`` (the status line, every result table and the conclusion, all computed
here: README links to it and copies no number), ``metrics.json`` (the headline numbers only,
nested dose → view → arm; every metric of every cell is in ``study_metrics.csv``), the DVC metrics
``metrics/dose_<d>-<view>.json`` (each arm's phase r: one row per cell in ``dvc metrics show``, columns
the arms), the training manifest, the skip list, the DVC plots
and the metrics-vs-dose figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
from pathlib import Path

from ptychostudy import StudyError, cost, layout, stage
from ptychostudy.arms import ARMS, FLOOR, NETWORK_ARMS, PROTOCOL_PAIRS, REFINED, TUNED_ITERATIVE, arms, baseline_view
from ptychostudy.io import sha256_file, write_json, write_text
from ptychostudy.layout import ITERATIVE_ARMS, REFINED_ARM, SPLITS, dose_tag
from ptychostudy.params import Params
from ptychostudy.params import load as load_params
from ptychostudy.params.replicate import ReplicateParams
from ptychostudy.params.study import StudyParams


def view_tag(dose: int, view: str) -> str:
    """``dose_<d>-<view>``: a cell's file name inside its object's folder of a report kind."""
    return f"{dose_tag(dose)}-{view}"


def object_cfg(cfg: Params, obj: str) -> Params:
    """The design as one object sees it: its own doses and views (study.subsets), the replicated cells only if
    replicate.objects lists it. Every table of the object's part of the summary is built from it."""
    study = dataclasses.replace(cfg.study, objects=(obj,), doses=cfg.study.object_doses(obj),
                                views=cfg.study.object_views(obj), subsets={})
    replicate = cfg.replicate if obj in cfg.replicate.objects else dataclasses.replace(cfg.replicate, doses=(), views=())
    return cfg.replace(study=study, replicate=replicate)


def _read(path: Path) -> dict:
    if not path.is_file():
        raise StudyError(f"{path} is missing: run the stage that writes it (dvc repro) first")
    return json.loads(path.read_text(encoding="utf-8"))


def _mismatch_lines(sims: dict) -> list[str]:
    """Each forward model's error in predicting the simulator's noise-free counts from the truth (simulate reports)."""
    first = next(iter(sims.values()))
    factor = first["simulation"]["fine_factor"]
    models: dict[str, list[str]] = {}
    for arm, entry in first["model_mismatch"].items():
        models.setdefault(entry["forward_model"], []).append(arm)
    lines = ["", f"Model mismatch: the data are simulated {factor}× finer than the study's pixel (object and probe "
             "band-limited, positions continuous, far field cropped to the detector), so no arm reconstructs with the "
             "simulator's model. Each forward model's relative error in predicting the noise-free counts from the "
             "scored truth, and the same error in units of the Poisson variance per detector pixel at each dose "
             "(above 1, model error rather than noise limits how well the data can be fitted):", "",
             "| forward model | arms | relative error | " + " | ".join(f"error/noise at {d:g}" for d in sims) + " |",
             "|---|---|---:|" + "---:|" * len(sims)]
    for model, names in models.items():
        entry = first["model_mismatch"][names[0]]
        units = " | ".join(f"{sim['model_mismatch'][names[0]]['noise_units']:.3g}" for sim in sims.values())
        lines.append(f"| {model} | {', '.join(names)} | {entry['relative_error']:.3g} | {units} |")
    return lines


def summarize(
    cfg: Params,
    simulate_reports: Path,
    view_reports: Path,
    train_reports: Path,
    models: Path,
    reconstruct_reports: Path,
    tuning_reports: Path,
    compare_reports: Path,
    out_dir: Path,
    timing: Path,
    replicate_reports: Path,
) -> dict:
    """The metrics stage: one part per object (its cells: study.subsets), then what spans them."""
    out_dir = Path(out_dir)
    metrics, skips, jobs, table, parts, heads = {}, [], [], [], [], []
    for obj in cfg.study.objects:
        ocfg = object_cfg(cfg, obj)
        o_metrics, o_skips, o_jobs, o_table, o_lines, conclusion = _summarize_object(
            ocfg, obj, Path(simulate_reports) / obj, Path(view_reports) / obj, Path(train_reports) / obj, Path(models),
            Path(reconstruct_reports), Path(tuning_reports) / obj, Path(compare_reports), Path(replicate_reports) / obj,
            out_dir)
        metrics[obj] = o_metrics
        skips += [{"object": obj, **s} for s in o_skips]
        for dose in cfg.study.doses:  # the cells study.subsets leaves out: skipped at the views stage, saying why
            for view in cfg.study.views:
                if not cfg.study.runs(obj, dose, view):
                    reason = _read(Path(view_reports) / obj / f"{view_tag(dose, view)}.json")["reason"]
                    skips.append({"object": obj, "dose": dose, "view": view, "phase": "D", "reason": reason})
        jobs += [{"object": obj, **j} for j in o_jobs]
        table += [{"object": obj, **r} for r in o_table]
        heads += [f"### {obj}", "", "**Status:** " + status_line(ocfg, o_table, o_skips), "", *conclusion, ""]
        parts += [f"# {obj}", "", *o_lines, ""]
    lines = ["## Skipped cells", ""]
    lines += [f"- {s['object']}, dose {s['dose']:g}, {s['view']} (phase {s['phase']}): {s['reason']}" for s in skips] or ["None."]
    lines.append("")
    head = [
        "# Study summary",
        "",
        "Written by the metrics stage (`ptychostudy summarize`) from the per-stage reports: every number here is "
        "computed, none is typed by hand. One part per object (" + ", ".join(cfg.study.objects) + "); an object "
        "runs on the cells study.subsets gives it.",
        "",
        "## Conclusion per object (computed from the Phase G tables below)",
        "",
        *heads,
    ]
    write_json(out_dir / "metrics.json", metrics)
    write_text(out_dir / "study_metrics.csv", "object,dose,view,model,metric,part,value\n" + "".join(
        f"{r['object']},{r['dose']},{r['view']},{r['model']},{r['metric']},{r['part']},{r['value']:.6g}\n" for r in table))
    write_json(out_dir / "skip_summary.json", skips)
    write_json(out_dir / "training_manifest.json", {"artifact_dir": str(models), "jobs": jobs, "skipped": skips})
    write_text(out_dir / "summary.md", "\n".join(head + lines + parts))
    if Path(timing).is_dir():
        rows = []
        for obj in cfg.study.objects:
            rows += [f"# {obj}", "", *_timing_rows(object_cfg(cfg, obj), obj, Path(timing)), "",
                     *cost.lines(cfg.study, obj, Path(compare_reports), Path(reconstruct_reports), Path(timing)), ""]
        write_text(Path(timing) / "summary.md", "# Wall times (this machine, last run)\n\n" + "\n".join(rows) + "\n")
    return metrics


def _summarize_object(cfg: Params, obj: str, simulate_reports: Path, view_reports: Path, train_reports: Path,
                      models: Path, reconstruct_reports: Path, tuning_reports: Path, compare_reports: Path,
                      replicate_reports: Path, out_dir: Path):
    """One object's part: (metrics, skips, manifest jobs, tidy rows, summary lines, conclusion). ``cfg`` is the
    object's own design (``object_cfg``); the report folders are the object's, except reconstruct_reports and
    compare_reports (an arm's folder, then the object's) and models (the artefact root)."""
    metrics: dict = {}
    skips = []
    lines = [
        "## Phase C: simulated data",
        "",
        "| dose (photons/pattern) | measured mean counts/pattern | scale s | train positions | test positions | guard band (untouched rows) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    sims = {dose: _read(simulate_reports / f"{dose_tag(dose)}.json") for dose in cfg.study.doses}
    for dose, sim in sims.items():
        metrics[dose_tag(dose)] = {view: {} for view in cfg.study.views}
        lines.append(
            f"| {dose:g} | {sim['mean_counts_per_pattern']:.1f} | {sim['scale']:.4g} | {sim['train']['positions']} "
            f"| {sim['test']['positions']} | {sim['guard_band_untouched']} |"
        )
    first = next(iter(sims.values()))
    lines += ["", f"The object's phase holds {first['phase_power_above_1_16']:.1%} of its power above 1/16 cycles per "
              "pixel (its featured region, the mean removed): the fine detail phase r weighs little."]
    lines += _mismatch_lines(sims)
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
            summary = _read(view_reports / f"{view_tag(dose, view)}.json")
            for split in SPLITS:
                facts = summary[split]
                lines.append(
                    f"| {dose:g} | {view} | {summary['gridsize']} | {summary['probe_diameter_px']:.1f} "
                    f"| {summary['min_spacing_px']:.1f} | {split} | {facts['positions']} | {facts['groups']} "
                    f"| {facts.get('nn_distance_median_px', float('nan')):.2f} "
                    f"| {facts.get('linear_overlap_nn_mean', float('nan')):.3f} "
                    f"| {facts.get('area_overlap_nn_mean', float('nan')):.3f} |"
                )
            if summary["skipped"]:
                skips.append({"dose": dose, "view": view, "phase": "D", "reason": summary["reason"]})
    jobs, train_lines = _training(cfg, obj, train_reports, metrics, skips, models)
    lines += train_lines
    table, study_lines, conclusion = _study(cfg, obj, reconstruct_reports, tuning_reports, compare_reports,
                                            replicate_reports, metrics, skips, out_dir)
    lines += study_lines
    for dose in cfg.study.doses:  # the DVC metrics: one row per cell, one column per arm (phase r); a skipped cell: {}
        for view in cfg.study.views:
            cell = metrics[dose_tag(dose)].get(view, {})
            write_json(out_dir / METRICS_DIR / obj / f"{view_tag(dose, view)}.json",
                       {arm: values["phase_r"] for arm, values in cell.items() if "phase_r" in values})
    return metrics, skips, jobs, table, lines, conclusion


def _check_bundle(path: Path, facts: dict) -> None:
    if not path.is_file():
        raise StudyError(f"{path} is missing: run its training stage (dvc repro) or restore it (dvc pull)")
    digest = sha256_file(path)
    if digest != facts["sha256"] or path.stat().st_size != facts["bytes"]:
        raise StudyError(
            f"{path} has sha256 {digest} ({path.stat().st_size} bytes) but its job record says "
            f"{facts['sha256']} ({facts['bytes']} bytes): the bundle changed after training"
        )


def _training(cfg: Params, obj: str, train_reports: Path, metrics: dict, skips: list, models: Path) -> tuple[list, list]:
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
            if (record.get("object"), record.get("dose"), record.get("view")) != (obj, dose, view):
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
            metrics[dose_tag(dose)][view]["train"] = {"final_loss": record["final_loss"], "bundle_bytes": bundle["bytes"]}
            tr, te = record["scores"]["train"], record["scores"]["test"]
            lines.append(
                f"| {dose:g} | {view} | {record['gridsize']} | {record['steps']} | {record['final_loss']:.4f} "
                f"| {tr['amplitude_r']:.3f} | {tr['phase_r']:.3f} | {tr['phase_spread_ratio']:.3f} "
                f"| {te['amplitude_r']:.3f} | {te['phase_r']:.3f} | {te['phase_spread_ratio']:.3f} "
                f"| `{bundle['sha256']}` | {bundle['bytes']} |"
            )
    return jobs, lines


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _timing_file(timing: Path, name: str) -> dict:
    """One timing file's record; {} where that stage has not run on this machine (wall times are not tracked)."""
    path = timing / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _field(record: dict, key: str, arm: str | None = None):
    """A timing record's value; for a stage of two arms (a mapping by arm), the given arm's."""
    value = record.get(key)
    return value.get(arm) if isinstance(value, dict) and arm is not None else value


def _timing_rows(cfg: Params, obj: str, timing: Path) -> list[str]:
    """One object's wall times (measurements, not reproducible: beside the tracked outputs, never in them)."""
    rows = [
        "## Phase E: training",
        "",
        "| dose | view | training wall time (s) | ms per step (the scores logged while training included) | threads | accelerator |",
        "|---:|---|---:|---:|---:|---|",
    ]
    total = 0.0
    for dose in cfg.study.doses:
        for view in cfg.study.views:
            t = _timing_file(timing, f"train-{obj}-{view_tag(dose, view)}.json")
            if t:
                total += t["train_seconds"]
                rows.append(f"| {dose:g} | {view} | {t['train_seconds']:.1f} | {t['ms_per_step']:.0f} | {t['threads']} | {t['accelerator']} |")
    rows.append(f"\nTotal training wall time: {total:.1f} s\n")
    rows += [
        "## Selection, Phases F and G: wall time per cell (s)",
        "",
        "| dose | view | tune (train split) | " + " | ".join(ITERATIVE_ARMS) + " | network inference "
        "| gridsize-1 network inference | refinement (pinn_refined) |",
        "|---:|---|---:|" + "---:|" * len(ITERATIVE_ARMS) + "---:|---:|---:|",
        "",
        "(Arms that share a stage share its run where their settings agree: the time is until each arm's own stop.)",
        "",
    ]

    def seconds(name: str, key: str, arm: str | None = None):
        return _field(_timing_file(timing, name), key, arm)

    for dose in cfg.study.doses:
        for view in cfg.study.views:
            tag = f"{obj}-{view_tag(dose, view)}"
            g = seconds(f"infer-{tag}.json", "inference_seconds") or {}
            rows.append(f"| {dose:g} | {view} | {_fmt(seconds(f'tune-{tag}.json', 'tune_seconds'), '.1f')} | "
                        + " | ".join(_fmt(seconds(f"{_phase_f_stage(arm)}-{tag}.json", "reconstruct_seconds", arm), ".1f")
                                     for arm in ITERATIVE_ARMS)
                        + f" | {_fmt(g.get('pinn'), '.2f')} | {_fmt(g.get('pinn_gs1'), '.2f')} "
                        f"| {_fmt(seconds(f'refine-{tag}.json', 'refine_seconds'), '.1f')} |")
    rows += ["", f"## {REFINED_ARM}: phase r against wall time (refinement steps so far + one inference, s)", "",
             "| dose | view | curve (steps: seconds → phase r) |", "|---:|---|---|"]
    for dose in cfg.study.doses:
        for view in cfg.study.views:
            curve = seconds(f"refine-{obj}-{view_tag(dose, view)}.json", "curve")
            if curve:
                rows.append(f"| {dose:g} | {view} | " + ", ".join(
                    f"{p['steps']}: {p['seconds'] + p['inference_seconds']:.1f} s → {p['phase_pearson_r']:.3f}"
                    for p in curve) + " |")
    rows += ["", "## Network-started solvers: phase r against wall time (s; the network start counts its inference)", "",
             "| dose | view | solver | network start (seconds → phase r) | blank start (seconds → phase r) |",
             "|---:|---|---|---|---|"]
    for dose in cfg.study.doses:
        for view in cfg.study.views:
            tag = f"{obj}-{view_tag(dose, view)}"
            w = _timing_file(timing, f"warmstart-{tag}.json")
            if not w:
                continue
            inference = (seconds(f"infer-{tag}.json", "inference_seconds") or {}).get(w["network"])
            # both blank starts are Phase F's runs (ptychi_tuned, gradient): their seconds are those stages' curve_seconds
            phase_f = {warm_arm: {0: 0.0} | {p.get("epochs", p.get("steps")): p["seconds"]
                                             for p in (seconds(f"{prefix}-{tag}.json", "curve_seconds") or {}).get(twin, [])}
                       for twin, (prefix, warm_arm) in cost.REFERENCES.items()}
            for arm, starts in w["curves"].items():
                def shown(points, extra, arm=arm):
                    def at(p):
                        count = p.get("epochs", p.get("steps"))
                        t = phase_f.get(arm, {}).get(count) if p["seconds"] is None else p["seconds"]
                        return "not timed here" if t is None else f"{t + extra:.1f}"
                    return ", ".join(f"{at(p)} → {p['phase_pearson_r']:.3f}" for p in points)
                network = shown(starts["network"], inference) if inference is not None else "inference not timed here"
                rows.append(f"| {dose:g} | {view} | {arm} | {network} | {shown(starts['blank'], 0.0)} |")
    return rows + _cost_rows(cfg, obj, timing)


def _cost_rows(cfg: Params, obj: str, timing: Path) -> list[str]:
    """Every arm's cost on an equal footing: core-seconds (wall seconds × the stage's torch threads) of what it
    took to choose its settings or train its network, and of its reconstruction of the test split."""
    def read(name: str) -> dict:
        return _timing_file(timing, name)

    of = _field
    base = baseline_view(cfg, obj)
    rows = ["", "## Cost of every arm: core-seconds (wall × threads), setting or training + test-split reconstruction",
            "", "Selection: the tune stage's share of the solver (both protocols' searches together: one cost for the "
            "tuned and the held-out arm); training: the network's Phase E run (the gridsize-1 network: the baseline "
            "view's, once per dose); reconstruction: the arm's own run on the test split (inference for the networks; "
            "refinement plus its last inference for pinn_refined).", "",
            "| dose | view | " + " | ".join(a for a in ARMS if a != FLOOR) + " |",
            "|---:|---|" + "---|" * (len(ARMS) - 1)]
    for dose in cfg.study.doses:
        for view in cfg.study.views:
            tag = f"{obj}-{view_tag(dose, view)}"
            tune, infer, refine = read(f"tune-{tag}.json"), read(f"infer-{tag}.json"), read(f"refine-{tag}.json")
            own, gs1 = read(f"train-{tag}.json"), read(f"train-{obj}-{view_tag(dose, base)}.json") if base else {}
            train_cost = lambda t: (t["train_seconds"] * t["threads"]) if t else None  # noqa: E731
            infer_threads = infer.get("threads", 1)
            cost = {
                "pinn": (train_cost(own), _mul(of(infer, "inference_seconds", "pinn"), infer_threads)),
                "pinn_gs1": (train_cost(gs1), _mul(of(infer, "inference_seconds", "pinn_gs1"), infer_threads)),
                REFINED_ARM: (train_cost(own), _mul(_add(refine.get("refine_seconds"), refine.get("inference_seconds")),
                                                    refine.get("threads", 1))),
            }
            for arm in ITERATIVE_ARMS:
                record = read(f"{_phase_f_stage(arm)}-{tag}.json")
                run = _mul(of(record, "reconstruct_seconds", arm), record.get("threads", 1))
                share = None if arm == "ptychi" else _mul(
                    tune.get("ptychi_seconds" if arm.startswith("ptychi") else "gradient_seconds"), tune.get("threads", 1))
                cost[arm] = (share, run)
            cells = []
            for arm in ARMS:
                if arm == FLOOR:
                    continue
                if arm not in arms(cfg, obj, view):
                    cells.append("–")
                    continue
                first, second = cost.get(arm, (None, None))
                cells.append("–" if second is None else (f"{second:.0f}" if first is None else
                                                        f"{first:.0f} + {second:.0f} = {first + second:.0f}"))
            rows.append(f"| {dose:g} | {view} | " + " | ".join(cells) + " |")
    return rows


def _mul(value, factor):
    return None if value is None else value * factor


def _add(a, b):
    return None if a is None or b is None else a + b


def _phase_f_stage(arm: str) -> str:
    """The timing-file prefix of a Phase F arm (its stage name, and the arm for the pty-chi stages)."""
    if arm.startswith("gradient"):
        return "gradient"
    return "reconstruct-ptychi_tuned" if arm == "ptychi_heldout" else f"reconstruct-{arm}"


# ---------------------------------------------------------------------------------------
# Phases F and G


HEADLINE = (  # (metric, column title): the featured-region measures of summary.md, each beside its floor
    ("phase_pearson_r", "phase r"),
    ("phase_frc50_resolution_px", "phase FRC½ res. (px)"),
    ("phase_detail_r", "phase detail r"),
    ("amplitude_pearson_r", "amp r"),
)
SECONDARY = (("phase_spread_ratio", "phase spread"),)  # shown, without a floor column
PLOTTED = ("phase_pearson_r", "phase_frc50_resolution_px", "amplitude_pearson_r")
PLOT_TITLES = dict(HEADLINE)
SSIM_NOTE = (
    "SSIM and MS-SSIM are not headline measures here: after the phase offset and ramp are fitted, a flat phase "
    "already scores a high phase SSIM on this object (see the floor's rows in `reports/study_metrics.csv`), so "
    "they say little about skill; they stay in the CSV files."
)
CROSS_CPU = 0.035  # phase r: one training run's test score moved this much between two CPU kinds (measured)
SPREAD_MEASURES = ("phase_pearson_r", "phase_frc50_resolution_px", "amplitude_pearson_r")  # the replicate stage's
PLOTS_DIR = "plots"
METRICS_DIR = "metrics"  # reports/metrics/dose_<d>-<view>.json: the DVC metrics (`dvc metrics show`: one row per cell)
FIGURES_DIR = "figures"


def figure_path(obj: str) -> str:
    """The metrics-vs-dose figure of one object, relative to the reports folder."""
    return f"{FIGURES_DIR}/{obj}/metrics_vs_dose.png"


def plot_columns(cfg: Params, obj: str) -> list[str]:
    """The lines of each DVC plot of one object: <model>-<view> for every arm of every view it runs
    (``cfg``: the object's own design, ``object_cfg``)."""
    return [f"{model}-{view}" for model in ARMS for view in cfg.study.views
            if model in arms(cfg, obj, view)]


def read_comparison(path: Path) -> list[dict]:
    if not path.is_file():
        raise StudyError(f"{path} is missing: run its compare stage (dvc repro) first")
    text = path.read_text(encoding="utf-8").splitlines()
    if not text or text[0] != "model,metric,part,value":
        raise StudyError(f"{path}: not a comparison_metrics.csv (header {text[:1]})")
    rows = []
    for line in text[1:]:
        model, metric, part, value = line.split(",")
        rows.append({"model": model, "metric": metric, "part": part, "value": float(value)})
    return rows


METRICS_JSON = (  # (metrics.json key, study_metrics.csv metric): per cell and arm, featured region
    ("phase_r", "phase_pearson_r"),
    ("phase_frc50_px", "phase_frc50_resolution_px"),
    ("phase_detail_r", "phase_detail_r"),
    ("amplitude_r", "amplitude_pearson_r"),
)


def _settings_text(arm: str, rec: dict) -> str:
    s = rec.get("settings", {})
    if arm.startswith("gradient"):
        return ", ".join(f"{steps} steps at {factor} px/sample" for factor, steps in rec["plan"])
    return f"{s['noise_model']}, TV {s['tv_weight']:g}, momentum {s['momentum']:g}, {rec['epochs']} epochs"


def _pick_text(solver: str, pick: dict) -> str:
    if solver == "ptychi":
        return f"{pick['setting']}, {pick['epochs']} epochs"
    return f"stop after {pick['steps']} steps at {pick['level']} px/sample"


def _tuning_lines(cfg: Params, tuning_reports: Path) -> list[str]:
    """The tune stage's picks under both protocols (train split), beside the configured setting and the floor."""
    lines = [
        "",
        "## Selection (tune stage): the tuned arms' settings, chosen on each view's train split, two protocols",
        "",
        "Every fit leaves a fixed random part of the train positions out. *Calibration* (arms ptychi_tuned, gradient) "
        "picks the candidate with the highest phase Pearson r against the train region's truth (a known sample); "
        "*no calibration* (ptychi_heldout, gradient_heldout) the one whose reconstruction predicts the held-out "
        "patterns best (lowest Poisson NLL, the solver's own forward model; no truth). pty-chi: one Optuna search per "
        "protocol, the configured setting its first trial. The test split is never read; every trial and score: "
        "`reports/tuning/dose_<dose>-<view>.json` and `.png`.",
        "",
        "| dose | view | solver | calibration pick | train phase r | no-calibration pick | train phase r | agree "
        "| configured (train phase r) | floor (train) |",
        "|---:|---|---|---|---:|---|---:|---|---:|---:|",
    ]
    for dose in cfg.study.doses:
        for view in cfg.study.views:
            rec = _read(Path(tuning_reports) / f"{view_tag(dose, view)}.json")
            if rec.get("skipped"):
                continue
            for solver in ("ptychi", "gradient"):
                c, h = rec[solver]["selected"], rec[solver]["selected_heldout"]
                configured = rec[solver].get("configured")
                lines.append(f"| {dose:g} | {view} | {solver} | {_pick_text(solver, c)} | {c['phase_r']:.3f} "
                             f"| {_pick_text(solver, h)} | {h['phase_r']:.3f} | {'yes' if rec['agree'][solver] else 'no'} "
                             f"| {_fmt(configured and configured['phase_r'], '.3f')} | {rec['floor_phase_r']:.3f} |")
    return lines


def _spread(cfg: Params, replicate_reports: Path, table: list[dict]) -> dict:
    """(dose, view, arm) -> measure -> every seed's value (the pipeline's own run first, then the replicate
    stage's other seeds), for the cells of ``replicate.*`` that were compared."""
    found = {}
    for dose in cfg.replicate.doses:
        for view in cfg.replicate.views:
            rec = _read(Path(replicate_reports) / f"{view_tag(dose, view)}.json")
            if rec.get("skipped"):
                continue
            for arm, rows in rec["arms"].items():
                own = {m: _value(table, dose, view, arm, m) for m in SPREAD_MEASURES}
                if any(v is None for v in own.values()):
                    continue
                found[(dose, view, arm)] = {m: [own[m]] + [math.nan if row[m] is None else row[m] for row in rows]
                                            for m in SPREAD_MEASURES}  # null in JSON: an FRC that never crossed
    return found


def _stats(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value) and range (max − min) of one arm's seeds, over the seeds
    with a value (an FRC that never crossed has none); NaN where no seed has one."""
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return {"mean": math.nan, "sd": math.nan, "range": math.nan}
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "range": max(values) - min(values)}


def level(spread: dict) -> tuple[float, str]:
    """The smallest difference of phase r the conclusions call: the cross-CPU move of one training run, or
    the largest seed-to-seed range of a network arm plus that of an iterative arm where measured (the
    difference of two arms can move by both), whichever is larger; and a sentence saying which."""
    ranges = {key: _stats(v["phase_pearson_r"])["range"] for key, v in spread.items()}
    networks = NETWORK_ARMS + REFINED  # the refined network is a network, not an iterative arm
    net = max(((r, k) for k, r in ranges.items() if k[2] in networks), default=None)
    it = max(((r, k) for k, r in ranges.items() if k[2] not in networks), default=None)
    if net is None or it is None:
        return CROSS_CPU, (f"one training run per cell moves by up to {CROSS_CPU} between two CPU kinds (README, "
                           "\"Determinism and safety\"); the seed-to-seed spread was not measured")
    measured = net[0] + it[0]
    why = (f"the largest range of phase r measured (replicate stage, {len(next(iter(spread.values()))['phase_pearson_r'])} "
           f"runs: other seeds and Poisson redraws of the test counts) is {net[0]:.3f} for a network ({net[1][2]}, dose {net[1][0]:g}, {net[1][1]}) and {it[0]:.3f} for an "
           f"iterative arm ({it[1][2]}, dose {it[1][0]:g}, {it[1][1]}): together {measured:.3f}; one training run moves by "
           f"up to {CROSS_CPU} between two CPU kinds")
    return max(measured, CROSS_CPU), why


def _cell_records(cfg: Params, obj: str, folder: Path):
    """(dose, view, record) of each cell of ``obj`` whose per-cell report in ``folder`` exists and is not skipped,
    in the design's order."""
    for dose in cfg.study.doses:
        for view in cfg.study.views:
            path = Path(folder) / obj / f"{view_tag(dose, view)}.json"
            if path.is_file():
                rec = _read(path)
                if not rec["skipped"]:
                    yield dose, view, rec


def _refine_lines(cfg: Params, obj: str, reconstruct_reports: Path, table: list[dict]) -> list[str]:
    """The refinement arm's curve per cell (scores by step; its wall times are in reports/timing/summary.md)."""
    lines = [
        "",
        f"## Test-time refinement ({REFINED_ARM}: it saw the test patterns, never their truth)",
        "",
        "Each view's trained network fine-tuned self-supervised (the training's loss through the physics) on the "
        "test split's own patterns for `refine.steps.<view>` steps, settings fixed in params beforehand; the arm is "
        "the last step's object (nothing selected from these scores). Phase r of the featured region at each "
        "checkpoint (step 0 = the trained network as it is), beside the tuned pty-chi arm in the same cell. "
        "Wall times: `reports/timing/summary.md`.",
        "",
        "| dose | view | steps | phase r along the refinement (step: r) | phase FRC½ res. (px), trained → refined "
        "| ptychi_tuned phase r | floor |",
        "|---:|---|---:|---|---|---:|---:|",
    ]
    found = False
    for dose, view, rec in _cell_records(cfg, obj, Path(reconstruct_reports) / REFINED_ARM):
        found = True
        curve = rec["curve"]
        along = ", ".join(f"{p['steps']}: {p['phase_pearson_r']:.3f}" for p in curve)
        frc = " → ".join(_number("frc_px", math.nan if p["phase_frc50_resolution_px"] is None
                                 else p["phase_frc50_resolution_px"]) for p in (curve[0], curve[-1]))
        lines.append(f"| {dose:g} | {view} | {rec['steps']} | {along} | {frc} "
                     f"| {_number('r', _value(table, dose, view, 'ptychi_tuned', 'phase_pearson_r'))} "
                     f"| {_number('r', _value(table, dose, view, FLOOR, 'phase_pearson_r'))} |")
    if not found:
        lines.append("| – | – | – | not run | | | |")
    return lines


def _work(point: dict) -> int:
    return point.get("epochs", point.get("steps", 0))


def _warmstart_lines(cfg: Params, obj: str, reconstruct_reports: Path) -> list[str]:
    """The network-started solvers against the same solvers started blank (scores by epoch or step; their wall
    times are in reports/timing/summary.md): how much of the solver's work the network's start saves."""
    lines = [
        "",
        "## Network-started solvers (pinn_ptychi, pinn_gradient) against the same solvers started blank",
        "",
        "The view's network's test-split object starts pty-chi with the tuned setting and epochs, and the gradient "
        "solver's last tuned level (the network stands in for the coarser levels); started blank, they are the arms "
        "ptychi_tuned and gradient. Phase r of the featured region at the start and the end of each run, and the "
        "solver work (pty-chi epochs; gradient steps, every level counted) after which the network-started run first "
        "reaches the blank run's final phase r (checkpoints `warmstart.checkpoints`; nothing selected from these "
        "scores). Wall times: `reports/timing/summary.md`.",
        "",
        "| dose | view | solver | network start: r at 0 → end | detail r end | blank start: r end | detail r end "
        "| work to the blank run's final r (network start / blank) |",
        "|---:|---|---|---|---:|---:|---:|---|",
    ]
    found = False
    for dose, view, rec in _cell_records(cfg, obj, Path(reconstruct_reports) / "warmstart"):
        found = True
        for arm, entry in rec["arms"].items():
            network, blank = entry["curve"]["network"], entry["curve"]["blank"]
            target = blank[-1]["phase_pearson_r"]
            hit = cost.reached(network, target)
            work = (f"{_work(hit)} / {_work(blank[-1])}" if hit is not None
                    else f"not reached in {_work(network[-1])} (blank needs {_work(blank[-1])})")
            lines.append(
                f"| {dose:g} | {view} | {arm} | {_number('r', network[0]['phase_pearson_r'])} → "
                f"{_number('r', network[-1]['phase_pearson_r'])} | {_number('r', network[-1]['phase_detail_r'])} "
                f"| {_number('r', target)} | {_number('r', blank[-1]['phase_detail_r'])} | {work} |")
    if not found:
        lines.append("| – | – | – | not run | | | | |")
    return lines


def _spread_lines(spread: dict) -> list[str]:
    lines = [
        "",
        "## Seed-to-seed spread (replicate stage)",
        "",
        "Each arm of these cells rerun with other seeds (the network retrained: weights and batch order, and refined "
        "again; pty-chi: its batches; the gradient solver: its batches) and on the test patterns' counts drawn again "
        "(a new Poisson seed: Phase E's network, its refinement and every solver with its own seed), scored on the "
        "test split exactly as Phase G scores; the first value is the pipeline's own run (the Phase G table), then "
        "the other seeds, then the redraws. Nothing is selected from these numbers "
        "(`reports/replicate/dose_<dose>-<view>.json`).",
        "",
        "| dose | view | arm | seeds | phase r (each seed) | mean ± sd | range | phase FRC½ res. (px), range | amp r, range |",
        "|---:|---|---|---:|---|---|---:|---|---|",
    ]
    for (dose, view, arm), values in spread.items():
        r, st = values["phase_pearson_r"], _stats(values["phase_pearson_r"])
        frc, amp = values["phase_frc50_resolution_px"], values["amplitude_pearson_r"]
        lines.append(f"| {dose:g} | {view} | {arm} | {len(r)} | " + ", ".join(f"{v:.3f}" for v in r)
                     + f" | {st['mean']:.3f} ± {st['sd']:.3f} | {st['range']:.3f} | "
                     + ", ".join(_number("frc_px", v) for v in frc) + " "
                     f"| {min(amp):.3f}–{max(amp):.3f} |")
    if not spread:
        lines.append("| – | – | – | – | not measured | | | | |")
    return lines


def _study(cfg: Params, obj: str, reconstruct_reports: Path, tuning_reports: Path, compare_reports: Path,
           replicate_reports: Path, metrics: dict, skips: list, out_dir: Path):
    """Selection, Phase F and G tables, the tidy study table, DVC plots, the dose figure and the conclusion."""
    from ptychostudy import study_figures

    table: list[dict] = []
    f_lines = _tuning_lines(cfg, tuning_reports) + [
        "",
        "## Phase F: the iterative arms on each test split",
        "",
        "| dose | view | arm | positions | settings | cost, first | cost, last |",
        "|---:|---|---|---:|---|---:|---:|",
    ]
    g_lines = [
        "",
        "## Phase G: every arm against the ground truth (test split, featured region)",
        "",
        "Each reconstruction is registered (sub-pixel), its global phase offset and linear phase ramp removed and its "
        "mean amplitude matched to the truth, all the same way (`metrics.score_arm`). pinn = the view's gridsize-2 "
        "network, pinn_gs1 = the gridsize-1 (baseline) network applied to the same patterns, ptychi = pty-chi LSQML "
        "with the original study's options (Gaussian noise model, no regulariser, no momentum, 100 epochs; the "
        "batch size is the tuned arm's), ptychi_tuned = pty-chi LSQML with the settings selected on the train "
        "split's truth (calibration), ptychi_heldout = the same search selected by the held-out patterns' likelihood "
        "(no truth), gradient = the Poisson-likelihood gradient solver (coarse-to-fine object, stop selected on the "
        "train split's truth), gradient_heldout = its stop selected by the held-out likelihood. "
        f"Each measure stands beside its **floor**: the score of a blank object (all ones, arm `{FLOOR}`) in "
        "the same cell and region, aligned the same way; an arm's skill is its distance from the floor. "
        "FRC½ res. = half-period resolution where the FRC (averaged over `compare.frc_smooth_rings` rings) last falls "
        "below 0.5 (1 px = Nyquist; smaller is better; \"never crossed\": above 0.5 up to Nyquist, no resolution "
        "read). Every "
        "metric, both regions (featured and the whole scanned region) and the 1/7 threshold: "
        "`reports/study_metrics.csv` and `reports/compare/<object>/dose_<dose>-<view>/comparison_metrics.csv`.",
        "",
        SSIM_NOTE,
        "",
        "| dose | view | model | " + " | ".join(f"{title} | floor" for _, title in HEADLINE) + " | "
        + " | ".join(title for _, title in SECONDARY) + " |",
        "|---:|---|---|" + "---:|" * (2 * len(HEADLINE) + len(SECONDARY)),
    ]
    for dose in cfg.study.doses:
        for view in cfg.study.views:
            tag = view_tag(dose, view)
            recs = {arm: _read(reconstruct_reports / arm / obj / f"{tag}.json") for arm in ITERATIVE_ARMS}
            comparison = _read(layout.compare_dir(compare_reports, obj, dose, view) / layout.COMPARISON_JSON)
            if comparison["skipped"] or any(rec["skipped"] for rec in recs.values()):
                if not any(s["dose"] == dose and s["view"] == view for s in skips):
                    reason = next((rec.get("reason", "") for rec in recs.values() if rec["skipped"]), "")
                    skips.append({"dose": dose, "view": view, "phase": "F/G", "reason": reason})
                continue
            for arm, rec in recs.items():
                f_lines.append(f"| {dose:g} | {view} | {arm} | {rec['positions']} | {_settings_text(arm, rec)} "
                               f"| {rec['cost_first']:.4g} | {rec['cost_final']:.4g} |")
            rows = read_comparison(layout.compare_dir(compare_reports, obj, dose, view) / layout.COMPARISON_CSV)
            table += [{"dose": dose, "view": view, **row} for row in rows]
            cell = metrics[dose_tag(dose)][view]
            featured = {model: {r["metric"]: r["value"] for r in rows if r["model"] == model and r["part"] == "featured"}
                        for model in comparison["arms"]}
            floor = featured.get(FLOOR, {})
            for model, values in featured.items():
                cell[model] = {key: values[m] for key, m in METRICS_JSON if m in values and math.isfinite(values[m])}
                if model == FLOOR:
                    continue
                g_lines.append(f"| {dose:g} | {view} | {model} | " + " | ".join(
                    f"{_number(m, values.get(m))} | {_number(m, floor.get(m))}" for m, _ in HEADLINE) + " | "
                    + " | ".join(_number(m, values.get(m)) for m, _ in SECONDARY) + " |")
    spread = _spread(cfg, replicate_reports, table)
    for (dose, view, arm), values in spread.items():  # the spread as rows of the tidy table, and headline numbers
        for metric, seeds in values.items():
            table += [{"dose": dose, "view": view, "model": arm, "metric": f"{metric}_seed_{stat}", "part": "featured",
                       "value": _stats(seeds)[stat]} for stat in ("sd", "range")]
        metrics[dose_tag(dose)][view][arm].update(phase_r_seeds=len(values["phase_pearson_r"]),
                                                  phase_r_seed_sd=_stats(values["phase_pearson_r"])["sd"])
    columns = plot_columns(cfg, obj)
    for metric in PLOTTED:
        lines = ["dose," + ",".join(columns)]
        for dose in cfg.study.doses:
            cells = []
            for column in columns:
                model, view = column.split("-", 1)
                value = _value(table, dose, view, model, metric)
                cells.append("" if value is None or not math.isfinite(value) else f"{value:.6g}")
            lines.append(f"{dose}," + ",".join(cells))
        write_text(out_dir / PLOTS_DIR / obj / f"{metric}.csv", "\n".join(lines) + "\n")
    study_figures.dose_figure(table, [(m, PLOT_TITLES[m]) for m in PLOTTED], out_dir / figure_path(obj), spread={
        (arm, view, m, dose): (min(v[m]), max(v[m])) for (dose, view, arm), v in spread.items() for m in PLOTTED})
    lines = (f_lines + g_lines + _refine_lines(cfg, obj, reconstruct_reports, table)
             + _warmstart_lines(cfg, obj, reconstruct_reports) + _spread_lines(spread) + [
        "",
        f"![metrics vs dose of {obj}]({figure_path(obj)})",
        "",
        "*Featured region of the test split. Solid: the view's gridsize-2 network; solid with stars: the view's network "
        "refined on the test patterns (pinn_refined); dashed: the gridsize-1 network; "
        "dotted: pty-chi as configured; dotted with squares: pty-chi tuned (calibration), with diamonds: pty-chi tuned "
        "without truth (held-out NLL); dotted with triangles: the gradient solver (calibration), with downward "
        "triangles: its no-calibration stop; solid with squares / triangles: pty-chi tuned / the gradient solver "
        "started from the view's network (pinn_ptychi, pinn_gradient); dash-dot: the floor (a blank object). Colour: the view. Bars: lowest to highest over the seeds of the "
        "replicate stage (the cells of `replicate.*`). Per-cell images: "
        f"`reports/compare/{obj}/dose_<dose>-<view>/comparison.png`.*",
    ])
    for dose in cfg.study.doses:  # a skipped cell leaves no empty entry in metrics.json
        metrics[dose_tag(dose)] = {v: e for v, e in metrics[dose_tag(dose)].items() if e}
    agree = {}
    for dose in cfg.study.doses:
        for view in cfg.study.views:
            rec = _read(Path(tuning_reports) / f"{view_tag(dose, view)}.json")
            if not rec.get("skipped"):
                agree[(dose, view)] = rec["agree"]
    return table, lines, _conclusion(cfg, table, level(spread), spread, agree)


def _number(metric: str, value) -> str:
    if value is None:
        return "–"
    if not math.isfinite(value):
        return "never crossed" if "frc" in metric else "–"
    return f"{value:.1f}" if metric.endswith("_px") else f"{value:.3f}"


def _value(table, dose, view, model, metric, part="featured"):
    found = [r["value"] for r in table if r["dose"] == dose and r["view"] == view and r["model"] == model
             and r["metric"] == metric and r["part"] == part]
    return found[0] if found else None


def _phase_r_and_floor(table, dose, view, model) -> tuple[float, float] | None:
    """(phase r, the floor's phase r) of one arm in one cell, featured region; None where either is missing."""
    r = _value(table, dose, view, model, "phase_pearson_r")
    floor = _value(table, dose, view, FLOOR, "phase_pearson_r")
    return None if r is None or floor is None else (r, floor)


def _best_skill(cfg: Params, table, dose, models) -> tuple[float, float, float, str, str] | None:
    """(skill, phase r, floor, model, view) of the arm among ``models`` furthest above the floor at ``dose``."""
    found = [(pair[0] - pair[1], *pair, model, view) for model in models for view in cfg.study.views
             if (pair := _phase_r_and_floor(table, dose, view, model)) is not None]
    return max(found) if found else None


def _verdict(gap: float, threshold: float) -> str:
    return "ahead of" if gap > threshold else ("level with" if abs(gap) <= threshold else "behind")


def _cell_level(spread: dict, dose, view: str, a: str, b: str, called: tuple[float, str]) -> tuple[float, str]:
    """The difference of phase r called level when comparing arms ``a`` and ``b`` in one cell: where the cell was
    replicated, both arms' own seed-to-seed ranges added (their difference moves by both), at least the cross-CPU
    move; elsewhere the study-wide level."""
    ra, rb = spread.get((dose, view, a)), spread.get((dose, view, b))
    if ra and rb:
        measured = _stats(ra["phase_pearson_r"])["range"] + _stats(rb["phase_pearson_r"])["range"]
        return max(measured, CROSS_CPU), "this cell's seed ranges"
    return called[0], "study-wide level"


def _cell_verdict(table: list[dict], spread: dict, dose, view: str, called: tuple[float, str]) -> str | None:
    """One cell: the view's network and its refinement against pty-chi tuned and against the gradient solver,
    each compared separately (no best over views or solvers)."""
    def r(model):
        pair = _phase_r_and_floor(table, dose, view, model)
        return None if pair is None else pair[0]

    net = "pinn" if r("pinn") is not None else "pinn_gs1"
    solvers = [(arm, r(arm)) for arm in ("ptychi_tuned", "gradient") if r(arm) is not None]
    if r(net) is None or not solvers:
        return None
    parts = []
    for model in (net, REFINED_ARM):
        if r(model) is None:
            continue
        against = []
        for arm, value in solvers:
            threshold, why = _cell_level(spread, dose, view, model, arm, called)
            verdict = _verdict(r(model) - value, threshold)
            against.append(f"{verdict} {arm} (r {value:.3f})" + ("" if verdict == "level with" else
                                                                f" by {abs(r(model) - value):.3f}")
                           + f" [level ≤ {threshold:.3f}, {why}]")
        parts.append(f"{model} (r {r(model):.3f}) is " + " and ".join(against))
    return f"- {dose:g} photons/pattern, {view} view: " + "; ".join(parts) + "."


def _protocol_verdict(cfg: Params, table: list[dict], agree: dict) -> list[str]:
    """Per solver: in how many cells the two protocols picked the same, and what going without calibration
    costs on the test split (phase r of the no-calibration arm minus the calibration arm's)."""
    out = []
    for solver, (calibrated, heldout) in PROTOCOL_PAIRS.items():
        gaps, same = [], 0
        for dose in cfg.study.doses:
            for view in cfg.study.views:
                a, b = (_phase_r_and_floor(table, dose, view, arm) for arm in (calibrated, heldout))
                if a is None or b is None:
                    continue
                gaps.append((b[0] - a[0], dose, view))
                same += bool(agree.get((dose, view), {}).get("ptychi" if solver == "pty-chi" else "gradient"))
        if not gaps:
            continue
        worst = min(gaps)
        out.append(f"- Without calibration ({heldout}: held-out patterns' likelihood, no truth) against with it "
                   f"({calibrated}: train truth), {solver}: the same pick in {same} of {len(gaps)} cells; test phase r "
                   f"differs by {sum(g for g, _, _ in gaps) / len(gaps):+.3f} on average (from {worst[0]:+.3f} at "
                   f"{worst[1]:g}, {worst[2]} to {max(gaps)[0]:+.3f} at {max(gaps)[1]:g}, {max(gaps)[2]}).")
    return out


def _conclusion(cfg: Params, table: list[dict], called: tuple[float, str] = (CROSS_CPU, ""), spread: dict | None = None,
                agree: dict | None = None) -> list[str]:
    """Plain sentences built from the measured numbers (nothing here is written by hand): each arm's
    phase r beside the floor's (a blank object scored the same way), and its skill above it."""
    if not table:
        return ["No cell was compared (every view was skipped)."]
    doses = sorted(cfg.study.doses)
    top, low = doses[-1], doses[0]
    out = []

    def with_floor(dose, view, model):
        pair = _phase_r_and_floor(table, dose, view, model)
        return None if pair is None else f"r {pair[0]:.2f} (floor {pair[1]:.2f}, skill {pair[0] - pair[1]:+.2f})"

    for view in cfg.study.views:
        models = [m for m in ARMS if m != FLOOR and any(r["model"] == m and r["view"] == view for r in table)]
        parts = []
        for model in models:
            hi = with_floor(top, view, model)
            if hi is None:
                continue
            text = f"{model} phase {hi}"
            lo = with_floor(low, view, model)
            if lo is not None and low != top:
                text += f", at {low:g}: {lo}"
            parts.append(text)
        if parts:
            out.append(f"- **{view}** view, {top:g} photons/pattern: " + "; ".join(parts) + ".")
    for dose in sorted(doses, reverse=True):
        for view in cfg.study.views:
            line = _cell_verdict(table, spread or {}, dose, view, called)
            if line:
                out.append(line)
    out += _protocol_verdict(cfg, table, agree or {})
    out.append(f"- Differences of {called[0]:.3f} phase r or less are called level: {called[1]}.")
    out.append("- Skill = phase r minus the floor's phase r in the same cell (a blank object: with the phase offset "
               "and ramp fitted, a flat phase already correlates with this object's phase). A phase spread ratio "
               "well below 1 means a phase that is right in shape but too weak; well above 1, a phase dominated "
               "by noise.")
    return out


def status_line(cfg: Params, table: list[dict], skips: list) -> str:
    """One computed sentence: what ran, and where each arm stands at the lowest and highest dose."""
    cells = sorted({(r["dose"], r["view"]) for r in table})
    text = (f"{len(cells)} of {len(cfg.study.doses) * len(cfg.study.views)} cells compared "
            f"({len(skips)} skipped)")
    if not table:
        return text + "."
    parts = []
    for dose in (max(cfg.study.doses), min(cfg.study.doses)):
        best = {group: _best_skill(cfg, table, dose, models)
                for group, models in (("network", NETWORK_ARMS), ("network refined on the test patterns", REFINED),
                                      ("tuned iterative", TUNED_ITERATIVE),
                                      ("pty-chi as configured", ("ptychi",)))}
        best = {group: b for group, b in best.items() if b is not None}
        if best:
            parts.append(f"at {dose:g} photons the best phase r is " + ", ".join(
                f"{r:.2f} for {g} ({m}, {view}; floor {f:.2f})" for g, (_, r, f, m, view) in best.items()))
    return text + "; " + "; ".join(dict.fromkeys(parts)) + " (featured region of the test split)."


def cli(args) -> None:
    """``ptychostudy summarize``: the metrics stage."""
    summarize(load_params(args.params, StudyParams, ReplicateParams), args.simulate_reports, args.view_reports, args.train_reports, args.models,
              args.reconstruct_reports, args.tuning_reports, args.compare_reports, args.out_dir, args.timing,
              args.replicate_reports)
    print(f"summary -> {args.out_dir}")


def build_parser(prog: str = "python -m ptychostudy.summary") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="the metrics stage: study summary from the per-stage reports",
                       description="Read the reports of every dose and view in params.yaml and write summary.md (the "
                       "status line, every result table, the conclusion), metrics.json (headline numbers per cell and "
                       "arm, for `dvc metrics show/diff`), study_metrics.csv, the training manifest, skip_summary.json, "
                       "the DVC plots and the metrics-vs-dose figure.")
    stage.add_params(p)
    p.add_argument("--simulate-reports", type=Path, required=True, help="folder of Phase C reports")
    p.add_argument("--view-reports", type=Path, required=True, help="folder of Phase D reports")
    p.add_argument("--train-reports", type=Path, required=True, help="folder of Phase E job records")
    p.add_argument("--models", type=Path, required=True, help="artefact folder of the bundles (dose_<d>/<view>/wts.h5.zip)")
    p.add_argument("--reconstruct-reports", type=Path, required=True, help="folder of Phase F records (<arm>/dose_<d>-<view>.json)")
    p.add_argument("--tuning-reports", type=Path, required=True, help="folder of the tune stage's selections")
    p.add_argument("--replicate-reports", type=Path, required=True,
                   help="folder of the replicate stage's scores (the seed-to-seed spread)")
    p.add_argument("--compare-reports", type=Path, required=True,
                   help="folder of Phase G results (dose_<d>-<view>/comparison_metrics.csv and comparison.json)")
    p.add_argument("--timing", type=Path, required=True,
                   help="folder of timing files (read when present; never a DVC dependency)")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for metrics.json, skip_summary.json, summary.md")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.summary") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
