"""The selection's figure of one cell (stage ``tune_figure``), drawn from the tune stage's record: its own stage,
so that a change to the figure reruns this stage only, never the selection."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ptychostudy import stage
from ptychostudy.figures import _save, plt, skipped_figure
from ptychostudy.io import read_json


def _ptychi_rows(record: dict) -> list[dict]:
    """Every distinct (setting, epochs) point of both searches (a setting run in both appears once)."""
    seen = {}
    for search in record["ptychi"]["searches"].values():
        for trial in search["trials"]:
            for row in trial["rows"]:
                seen.setdefault((trial["setting"], row["epochs"]), {"setting": trial["setting"], **row})
    return list(seen.values())


def tuning_figure(record: dict, path: Path) -> None:
    """Both criteria of every candidate against its run length (top: train phase r, the calibration protocol;
    bottom: held-out patterns' NLL, no truth), each protocol's pick marked."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.4), sharex="col")
    picks = (("selected", "k*", "calibration pick"), ("selected_heldout", "rD", "no-calibration pick"))
    for col, (solver, x_key, label) in enumerate((("ptychi", "epochs", "LSQML epochs"),
                                                  ("gradient", "total_steps", "Adam steps (all levels)"))):
        rows = _ptychi_rows(record) if solver == "ptychi" else record[solver]["grid"]
        for row_index, (y_key, y_label) in enumerate((("phase_r", "phase r, train truth (featured)"),
                                                      ("heldout_nll", "held-out Poisson NLL / pixel"))):
            ax = axes[row_index, col]
            for name in dict.fromkeys(row["setting"] for row in rows):
                points = sorted((row[x_key], row[y_key]) for row in rows if row["setting"] == name)
                ax.plot(*zip(*points), marker="o", ms=3, lw=0.9, label=name)
            for key, style, pick_label in picks:
                chosen = record[solver][key]
                ax.plot(chosen[x_key], chosen[y_key], style, ms=10 if style == "k*" else 6, label=pick_label,
                        mfc="none" if style == "rD" else None)
            if y_key == "phase_r":
                ax.axhline(record["floor_phase_r"], color="grey", ls="-.", lw=0.8, label="floor (blank object)")
                ax.set_title(f"{solver}: {record['object']}, dose {record['dose']}, {record['view']}", fontsize=9)
            ax.set_ylabel(y_label, fontsize=8)
            ax.grid(alpha=0.3)
            if row_index == 1:
                ax.set_xlabel(label)
            else:
                ax.legend(fontsize=5, loc="best")
    fig.tight_layout()
    _save(fig, path, dpi=80)


def cli(args) -> None:
    """``python -m ptychostudy.tune_figure``: the figure of one cell's selection."""
    record = read_json(args.report, "tune stage selection", hint="run the tune stage first")
    if record.get("skipped"):
        skipped_figure({**record, "phase": "tune"}, args.figure)
    else:
        tuning_figure(record, args.figure)


def build_parser(prog: str = "python -m ptychostudy.tune_figure") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="the selection's figure of one dose × view (from the tune stage's record)")
    p.add_argument("--report", type=Path, required=True, help="the tune stage's selection (JSON)")
    p.add_argument("--figure", type=Path, required=True, help="PNG to write: both criteria of every candidate, both picks")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.tune_figure") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=False)


if __name__ == "__main__":
    sys.exit(main())
