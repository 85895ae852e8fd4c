"""Time to solution with training included: from how many scans on does a network path pay for its training?

Read per cell from the study's own scores (Phase G's ``comparison.json``, the warmstart stage's curves) and the wall
times the stages measured on this machine (``reports/timing/*.json``: outside DVC, present only where a stage ran
here). Costs are core-seconds (wall × the stage's torch threads). For each iterative reference arm
(``ptychi_tuned``, ``gradient``) and each network path:

* ``network``: one inference per scan; one-time cost the training, less the reference arm's settings search on the
  train split (the network path needs none);
* ``network+refinement``: inference and test-time refinement per scan (``pinn_refined``); one-time as above;
* ``network+solver``: inference, then the same tuned solver started from the network's object until it first
  reaches the blank-started arm's final phase r (the warmstart curve's checkpoints); one-time: the training (both
  paths search the settings). Where it gets there only after as many epochs or steps as the blank-started run
  takes in all, it has done the reference's whole work: its solver seconds are the reference's own (two timings of
  the same work differ by run-to-run noise, 10 % or so, which would otherwise read as a saving).

A path is at equal quality where its phase r (featured region) is at least the reference arm's. Its break-even
number of scans is ``one-time / (reference per scan − path per scan)`` rounded up, where the path is cheaper per
scan; otherwise a sentence says why it never pays. Used by the timing summary (``reports/timing/summary.md``) and
``bench/time_to_solution.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

REFERENCES = {  # reference arm -> (its timing file's prefix, the network-started arm of the same solver)
    "ptychi_tuned": ("reconstruct-ptychi_tuned", "pinn_ptychi"), "gradient": ("gradient", "pinn_gradient")}
PATHS = ("network", "network+refinement", "network+solver")


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def core_seconds(record: dict, key: str, arm: str | None = None) -> float | None:
    """A timing record's wall seconds (``key``; for a stage of several arms, the arm's) × its torch threads."""
    value = record.get(key)
    if isinstance(value, dict):
        value = value.get(arm)
    threads = record.get("threads", 1)
    if isinstance(threads, dict):
        threads = max(threads.values())
    return None if value is None else float(value) * int(threads)


def break_even(one_time: float, reference: float, path: float, reaches: bool, why_not: str) -> int | str:
    """Scans from which the path's total cost is below the reference's, or a sentence why never."""
    if not reaches:
        return f"never: {why_not}"
    if path >= reference:
        return f"never: {path:.1f} core-s per scan against {reference:.1f}"
    return max(1, math.ceil(max(one_time, 0.0) / (reference - path)))


def reached(curve: list[dict], target: float) -> dict | None:
    """The first point of ``curve`` whose phase r is at least ``target`` (None: never)."""
    return next((p for p in curve if p.get("phase_pearson_r") is not None and p["phase_pearson_r"] >= target), None)


def _count(point: dict):
    """A curve point's epochs (pty-chi) or steps (the gradient solver: from the run's start)."""
    return point.get("epochs", point.get("steps"))


def cell(compare_reports: Path, reconstruct_reports: Path, timing: Path, obj: str, tag: str) -> dict | None:
    """One cell's network paths against each reference arm; None where the cell is skipped or not compared;
    ``{"missing": ...}`` where its stages did not run on this machine."""
    comparison = _json(Path(compare_reports) / obj / tag / "comparison.json")
    if not comparison or comparison.get("skipped"):
        return None
    r = {arm: s["featured"]["phase"]["pearson_r"] for arm, s in comparison["scores"].items()}
    stem = f"{obj}-{tag}"
    timing = Path(timing)
    warm = _json(Path(reconstruct_reports) / "warmstart" / obj / f"{tag}.json")
    network = warm.get("network", "pinn" if "pinn" in r else "pinn_gs1")
    trained_tag = tag if network == "pinn" else f"{tag.split('-', 1)[0]}-baseline"
    train = core_seconds(_json(timing / f"train-{obj}-{trained_tag}.json"), "train_seconds")
    tune = core_seconds(_json(timing / f"tune-{stem}.json"), "tune_seconds")
    infer = core_seconds(_json(timing / f"infer-{stem}.json"), "inference_seconds", network)
    refine = core_seconds(_json(timing / f"refine-{stem}.json"), "refine_seconds")
    warm_timing = _json(timing / f"warmstart-{stem}.json")
    if None in (train, tune, infer) or not warm_timing or network not in r:
        return {"missing": "timing files of this cell (its stages did not run on this machine)"}
    out = {"network_arm": network, "one_time_core_s": {"training": train, "search": tune}, "references": {}}
    for ref, (prefix, warm_arm) in REFERENCES.items():
        per_scan = core_seconds(_json(timing / f"{prefix}-{stem}.json"), "reconstruct_seconds", ref)
        if per_scan is None or ref not in r:
            continue
        target = r[ref]
        paths = {"network": {"per_scan_core_s": infer, "phase_r": r[network],
                             "break_even_scans": break_even(train - tune, per_scan, infer, r[network] >= target,
                                                            f"phase r {r[network]:.3f} < {target:.3f}")}}
        if refine is not None and "pinn_refined" in r:
            cost = infer + refine
            paths["network+refinement"] = {
                "per_scan_core_s": cost, "phase_r": r["pinn_refined"],
                "break_even_scans": break_even(train - tune, per_scan, cost, r["pinn_refined"] >= target,
                                               f"phase r {r['pinn_refined']:.3f} < {target:.3f}")}
        curve = warm.get("arms", {}).get(warm_arm, {}).get("curve", {}).get("network", [])
        seconds = {(p.get("epochs"), p.get("steps")): p["seconds"]
                   for p in warm_timing.get("curves", {}).get(warm_arm, {}).get("network", [])}
        hit = reached(curve, target)
        threads = warm_timing.get("threads", 1)
        solver = seconds.get((hit.get("epochs"), hit.get("steps"))) if hit else None
        cost = infer + solver * threads if solver is not None else None
        blank = warm.get("arms", {}).get(warm_arm, {}).get("curve", {}).get("blank", [])
        whole = _count(blank[-1]) if blank else None
        same_work = hit is not None and whole is not None and _count(hit) >= whole
        if same_work:  # the blank run's whole work: the reference's own seconds
            cost = infer + per_scan
        paths["network+solver"] = {
            "per_scan_core_s": cost, "phase_r": r.get(warm_arm), "same_work_as_reference": same_work,
            "reached_at": None if hit is None else {k: hit[k] for k in ("epochs", "steps") if k in hit},
            "break_even_scans": break_even(train, per_scan, cost if cost is not None else math.inf, cost is not None,
                                           f"the network-started {warm_arm} never reaches phase r {target:.3f} "
                                           f"(final {r.get(warm_arm, float('nan')):.3f})")}
        numbers = [p["break_even_scans"] for p in paths.values() if isinstance(p["break_even_scans"], int)]
        out["references"][ref] = {"per_scan_core_s": per_scan, "phase_r": target, "paths": paths,
                                  "break_even_scans": min(numbers) if numbers else
                                  "never: no network path reaches this arm's quality for less per scan"}
    return out


def lines(study, obj: str, compare_reports: Path, reconstruct_reports: Path, timing: Path) -> list[str]:
    """The timing summary's section for one object: per dose and view, each path's quality, cost per scan and
    break-even against each reference arm."""
    rows = ["## Time to solution with training included (core-seconds on this machine)", "",
            "Per scan: the path's own work (inference; + refinement; + the network-started solver until it reaches the "
            "reference arm's phase r). One-time: the network's training (less the reference's settings search where "
            "the path needs none). Break-even: the number of scans from which the network path has cost less in all "
            "(`ptychostudy.cost`; `bench/time_to_solution.py` keeps the figure).", "",
            "| dose | view | reference (r, core-s per scan) | network: r, core-s, scans | network+refinement | "
            "network+solver |", "|---:|---|---|---|---|---|"]
    found = False
    for dose in study.doses:
        for view in study.views:
            if not study.runs(obj, dose, view):
                continue
            c = cell(compare_reports, reconstruct_reports, timing, obj, f"dose_{dose}-{view}")
            if not c or "missing" in c:
                continue
            found = True
            for ref, rc in c["references"].items():
                def shown(name):
                    p = rc["paths"].get(name)
                    if p is None:
                        return "–"
                    r, per = p.get("phase_r"), p["per_scan_core_s"]
                    scans = p["break_even_scans"]
                    return (f"{'–' if r is None else f'{r:.3f}'}, {'–' if per is None else f'{per:.1f}'}, "
                            + (f"{scans}" if isinstance(scans, int) else scans))
                rows.append(f"| {dose:g} | {view} | {ref} ({rc['phase_r']:.3f}, {rc['per_scan_core_s']:.1f}) | "
                            + " | ".join(shown(name) for name in PATHS) + " |")
    return rows if found else rows + ["| – | – | no cell ran all its stages on this machine | | | |"]
