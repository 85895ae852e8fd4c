"""The selection's figure of one cell (stage ``tune_figure``), drawn from the tune stage's record: its own stage,
so that a change to the figure reruns this stage only, never the selection."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ptychostudy import stage
from ptychostudy.figures import _save, plt, skipped_figure
from ptychostudy.io import read_json


def tuning_figure(record: dict, path: Path) -> None:
    """The tune stage's grid: train-split phase r of every setting against its run length, the selection marked."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, solver, x_key, label in ((axes[0], "ptychi", "epochs", "LSQML epochs"),
                                     (axes[1], "gradient", "total_steps", "Adam steps (all levels)")):
        rows = record[solver]["grid"]
        for name in dict.fromkeys(row["setting"] for row in rows):
            points = [(row[x_key], row["phase_r"]) for row in rows if row["setting"] == name]
            ax.plot(*zip(*points), marker="o", ms=3, label=name)
        chosen = record[solver]["selected"]
        ax.plot(chosen[x_key], chosen["phase_r"], "k*", ms=12, label="selected")
        ax.axhline(record["floor_phase_r"], color="grey", ls="-.", lw=0.8, label="floor (blank object)")
        ax.set_xlabel(label)
        ax.set_ylabel("phase r, train split (featured)")
        ax.set_title(f"{solver}: dose {record['dose']}, {record['view']}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
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
    p.add_argument("--figure", type=Path, required=True, help="PNG to write: phase r of every setting, the selection")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.tune_figure") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=False)


if __name__ == "__main__":
    sys.exit(main())
