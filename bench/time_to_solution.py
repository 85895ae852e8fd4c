"""Time to solution with training included: from how many scans on does the network path pay for its training?

    python bench/time_to_solution.py WORKSPACE     # a workspace whose study ran alone on this machine
    python bench/time_to_solution.py --render      # only redraw the figure from bench/results.json

The rules (which paths, what counts once and per scan, equal quality, the break-even formula) are
``ptychostudy.cost``'s, which also writes them per cell into the timing summary (``reports/timing/summary.md``);
this script collects every cell of WORKSPACE (a study run alone on this machine: its timing files) into
bench/results.json "time_to_solution", named by CPU, and draws bench/time_to_solution.png.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from ptychostudy import cost

from machine import RESULTS, load_results, machine, save_result  # noqa: E402  (bench/machine.py: the record every benchmark writes)

ROOT = Path(__file__).resolve().parents[1]
FIGURE = ROOT / "bench" / "time_to_solution.png"


def measure(workspace: Path) -> dict:
    import yaml

    params = yaml.safe_load((workspace / "params.yaml").read_text())
    study = params["study"]
    cells = {}
    for obj in study["objects"]:
        for dose in study["doses"]:
            for view in study["views"]:
                tag = f"dose_{dose}-{view}"
                result = cost.cell(workspace / "reports" / "compare", workspace / "reports" / "reconstruct",
                                   workspace / "reports" / "timing", obj, tag)
                if result is not None:
                    cells[f"{obj}/{tag}"] = result
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=workspace, capture_output=True, text=True).stdout.strip()
    return {"machine": {"cpu": machine()["cpu"], "cores": 2, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
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
                ax.barh(y, value, height=0.25, color=f"C{k}")
            elif value is not None:
                ax.plot([1], [y], "x", color=f"C{k}")
    ax.set_xscale("log")
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("scans until the network path has cost less (×: never at equal quality)")
    ax.set_title(f"Break-even with training included ({entry['machine']['cpu']}, {entry['machine']['date']})", fontsize=9)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=f"C{k}", label=p) for k, p in enumerate(paths)], fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workspace", nargs="?", type=Path, help="a workspace whose study ran alone on this machine")
    parser.add_argument("--render", action="store_true", help="only redraw the figure from bench/results.json")
    args = parser.parse_args()
    if not args.render:
        if args.workspace is None:
            parser.error("give the workspace, or --render")
        save_result("time_to_solution", measure(args.workspace.resolve()))
    entry = load_results().get("time_to_solution")
    if not entry:
        sys.exit("bench/results.json holds no time_to_solution yet: run with a workspace first")
    figure(entry, FIGURE)
    print(f"time_to_solution: {len(entry['cells'])} cells -> {RESULTS.relative_to(ROOT)}, {FIGURE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
