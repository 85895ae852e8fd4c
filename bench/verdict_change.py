"""What a change of the study's data or code did to its numbers: the featured-region headline measures of
every cell and arm in two versions of reports/study_metrics.csv, side by side.

    python bench/verdict_change.py OLD_REV [NEW_CSV]   # NEW_CSV defaults to reports/study_metrics.csv

OLD_REV is a git revision whose committed reports/study_metrics.csv is the baseline. Prints a markdown table
(dose, view, arm, then old → new for each measure) and, per dose and view, the arms ordered by phase r in
each version, so a reader sees whether the ranking moved."""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
from pathlib import Path

MEASURES = ("phase_pearson_r", "phase_detail_r", "phase_frc50_resolution_px", "amplitude_pearson_r")
ARMS = ("pinn", "pinn_gs1", "pinn_refined", "ptychi", "ptychi_tuned", "ptychi_heldout", "gradient", "gradient_heldout",
        "blank")


def table(text: str) -> dict:
    out: dict = {}
    for row in csv.DictReader(io.StringIO(text)):
        if row["part"] == "featured" and row["metric"] in MEASURES:
            out[(int(row["dose"]), row["view"], row["model"], row["metric"])] = float(row["value"])
    return out


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old_rev", help="git revision holding the baseline reports/study_metrics.csv")
    p.add_argument("new_csv", nargs="?", type=Path, default=Path("reports/study_metrics.csv"))
    args = p.parse_args(argv)
    old = table(subprocess.run(["git", "show", f"{args.old_rev}:reports/study_metrics.csv"], capture_output=True,
                               text=True, check=True).stdout)
    new = table(args.new_csv.read_text())
    cells = sorted({(d, v) for d, v, _, _ in new})
    print("| dose | view | arm | " + " | ".join(m.replace("_", " ") for m in MEASURES) + " |")
    print("|---:|---|---|" + "---|" * len(MEASURES))
    for dose, view in cells:
        for arm in ARMS:
            if (dose, view, arm, MEASURES[0]) not in new:
                continue
            parts = []
            for m in MEASURES:
                a, b = old.get((dose, view, arm, m)), new.get((dose, view, arm, m))
                parts.append(f"{_fmt(a)} → {_fmt(b)}")
            print(f"| {dose:g} | {view} | {arm} | " + " | ".join(parts) + " |")
    print()
    for dose, view in cells:
        rank = {}
        for name, t in (("old", old), ("new", new)):
            scored = [(t[(dose, view, a, MEASURES[0])], a) for a in ARMS if (dose, view, a, MEASURES[0]) in t]
            rank[name] = " > ".join(a for _, a in sorted(scored, reverse=True))
        print(f"- {dose:g} {view}: phase r order was {rank['old']}; now {rank['new']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
