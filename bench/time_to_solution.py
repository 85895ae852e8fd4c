"""Time to solution with training included: from how many scans on does the network path pay for its training?

    python bench/time_to_solution.py WORKSPACE     # a workspace whose study ran alone on this machine
    python bench/time_to_solution.py --render      # only redraw the figure from bench/results.json

Reads, per cell, the study's own scores (``reports/compare/<object>/dose_<d>-<view>/comparison.json``, the
warmstart curves) and the wall times its stages measured (``reports/timing/*.json``: they exist only where the
stages ran, so WORKSPACE must be the study run alone on this machine). Costs are core-seconds (wall × the
stage's torch threads). For each iterative reference arm (``ptychi_tuned``, ``gradient``) and each network path:

* ``network``: one inference per scan; one-time cost the training (the iterative arm's one-time cost, its
  settings search on the train split, is subtracted: that path needs none);
* ``network+refinement``: inference and test-time refinement per scan (``pinn_refined``); one-time: training
  minus the search;
* ``network+solver``: inference, then the same tuned solver started from the network's object until it first
  reaches the blank-started arm's final phase r (the warmstart curve's checkpoints); one-time: the training (both
  paths search the settings).

A path is at equal quality where its phase r (featured region) is at least the reference arm's. Its break-even
number of scans is ``one-time / (reference per scan − path per scan)`` rounded up, where the path is cheaper per
scan; otherwise a sentence says why it never pays. Writes bench/results.json "time_to_solution" and
bench/time_to_solution.png.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
FIGURE = ROOT / "bench" / "time_to_solution.png"
REFERENCES = {"ptychi_tuned": ("reconstruct_tuned", "pinn_ptychi"), "gradient": ("gradient", "pinn_gradient")}


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def core_seconds(record: dict, key: str, arm: str | None = None, threads_key: str = "threads") -> float | None:
    """A timing record's wall seconds (``key``; for a stage of several arms, the arm's) × its torch threads."""
    value = record.get(key)
    if isinstance(value, dict):
        value = value.get(arm)
    threads = record.get(threads_key, 1)
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


def _reach(curve: list[dict], target: float) -> dict | None:
    return next((p for p in curve if p.get("phase_pearson_r") is not None and p["phase_pearson_r"] >= target), None)


def cell(workspace: Path, obj: str, tag: str) -> dict | None:
    """One cell's paths against each reference arm, or None where the cell did not run here."""
    reports, timing = workspace / "reports", workspace / "reports" / "timing"
    comparison = _json(reports / "compare" / obj / tag / "comparison.json")
    if not comparison or comparison.get("skipped"):
        return None
    r = {arm: s["featured"]["phase"]["pearson_r"] for arm, s in comparison["scores"].items()}
    stem = f"{obj}-{tag}"
    train_view = tag.split("-", 1)[1]
    warm = _json(reports / "reconstruct" / "warmstart" / obj / f"{tag}.json")
    network = warm.get("network", "pinn" if "pinn" in r else "pinn_gs1")
    trained_tag = tag if network == "pinn" else f"{tag.split('-', 1)[0]}-baseline"
    train = core_seconds(_json(timing / f"train-{obj}-{trained_tag}.json"), "train_seconds")
    tune = core_seconds(_json(timing / f"tune-{stem}.json"), "tune_seconds")
    infer = core_seconds(_json(timing / f"infer-{stem}.json"), "inference_seconds", network)
    refine = core_seconds(_json(timing / f"refine-{stem}.json"), "refine_seconds")
    warm_timing = _json(timing / f"warmstart-{stem}.json")
    if None in (train, tune, infer) or not warm_timing:
        return {"missing": "timing files of this cell (run the study alone on this machine first)"}
    out = {"network_arm": network, "view": train_view, "one_time_core_s": {"training": train, "search": tune}, "references": {}}
    for ref, (stage, warm_arm) in REFERENCES.items():
        per_scan = core_seconds(_json(timing / f"{stage}-{stem}.json"), "reconstruct_seconds", ref)
        target = r[ref]
        paths = {}
        paths["network"] = {"per_scan_core_s": infer, "phase_r": r[network],
                            "break_even_scans": break_even(train - tune, per_scan, infer, r[network] >= target,
                                                           f"phase r {r[network]:.3f} < {target:.3f}")}
        if refine is not None and "pinn_refined" in r:
            cost = infer + refine
            paths["network+refinement"] = {
                "per_scan_core_s": cost, "phase_r": r["pinn_refined"],
                "break_even_scans": break_even(train - tune, per_scan, cost, r["pinn_refined"] >= target,
                                               f"phase r {r['pinn_refined']:.3f} < {target:.3f}")}
        curve = warm.get("arms", {}).get(warm_arm, {}).get("curve", {}).get("network", [])
        seconds = {(p.get("epochs"), p.get("steps")): p["seconds"] for p in warm_timing["curves"][warm_arm]["network"]}
        hit = _reach(curve, target)
        threads = warm_timing.get("threads", 1)
        cost = infer + seconds[(hit.get("epochs"), hit.get("steps"))] * threads if hit else None
        paths["network+solver"] = {
            "per_scan_core_s": cost, "phase_r_final": r.get(warm_arm),
            "reached_at": None if hit is None else {k: hit[k] for k in ("epochs", "steps") if k in hit},
            "break_even_scans": break_even(train, per_scan, cost if cost is not None else math.inf, hit is not None,
                                           f"the network-started {warm_arm} never reaches phase r {target:.3f} "
                                           f"(final {r.get(warm_arm, float('nan')):.3f})")}
        numbers = [p["break_even_scans"] for p in paths.values() if isinstance(p["break_even_scans"], int)]
        out["references"][ref] = {"per_scan_core_s": per_scan, "phase_r": target, "paths": paths,
                                  "break_even_scans": min(numbers) if numbers else
                                  "never: no network path reaches this arm's quality for less per scan"}
    return out


def measure(workspace: Path) -> dict:
    import yaml

    params = yaml.safe_load((workspace / "params.yaml").read_text())
    study = params["study"]
    cells = {}
    for obj in study["objects"]:
        for dose in study["doses"]:
            for view in study["views"]:
                tag = f"dose_{dose}-{view}"
                result = cell(workspace, obj, tag)
                if result is not None:
                    cells[f"{obj}/{tag}"] = result
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=workspace, capture_output=True, text=True).stdout.strip()
    return {"machine": {"cpu": _cpu(), "cores": 2, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
            "workspace_commit": commit, "cost": "core-seconds (wall × the stage's torch threads), this machine",
            "cells": cells}


def figure(entry: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(name, ref, pname, p["break_even_scans"]) for name, c in entry["cells"].items() if "references" in c
            for ref, rc in c["references"].items() for pname, p in rc["paths"].items()]
    labels = sorted({f"{n} vs {ref}" for n, ref, _, _ in rows})
    paths = ["network", "network+refinement", "network+solver"]
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(labels) + 1.5))
    for k, pname in enumerate(paths):
        for i, label in enumerate(labels):
            value = next((v for n, ref, p, v in rows if f"{n} vs {ref}" == label and p == pname), None)
            y = i + (k - 1) * 0.27
            if isinstance(value, int):
                ax.barh(y, value, height=0.25, color=f"C{k}", label=pname if i == 0 else None)
            elif value is not None:
                ax.plot([1], [y], "x", color=f"C{k}")
    ax.set_xscale("log")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("scans until the network path has cost less (×: never at equal quality)")
    ax.set_title(f"Break-even with training included ({entry['machine']['cpu']}, {entry['machine']['date']})", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workspace", nargs="?", type=Path, help="a workspace whose study ran alone on this machine")
    parser.add_argument("--render", action="store_true", help="only redraw the figure from bench/results.json")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text())
    if not args.render:
        if args.workspace is None:
            parser.error("give the workspace, or --render")
        results["time_to_solution"] = measure(args.workspace.resolve())
        RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    entry = results.get("time_to_solution")
    if not entry:
        sys.exit("bench/results.json holds no time_to_solution yet: run with a workspace first")
    figure(entry, FIGURE)
    print(f"time_to_solution: {len(entry['cells'])} cells -> {RESULTS.relative_to(ROOT)}, {FIGURE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
