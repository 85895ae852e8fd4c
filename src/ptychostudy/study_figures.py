"""Figures of Phases G and the study summary (kept apart from the per-stage figures of
``figures.py`` so that editing them never invalidates the training stages)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np

from ptychostudy.figures import _save, plt, skipped_figure  # noqa: F401  (skipped_figure: re-exported)
from ptychostudy.metrics import bounding_box

TITLE_CHARS = 44  # characters per line of a comparison panel's title (3.6 in wide at 8 pt)


def comparison_figure(record: dict, truth: np.ndarray, aligned: dict, masks: dict, path: Path) -> None:
    """Ground truth beside every arm's aligned reconstruction (featured region): amplitude and phase."""
    mask = masks["featured"]
    crop = bounding_box(mask)
    shown = np.where(mask, 1.0, np.nan)[crop]
    columns = [("truth", truth)] + [(name, aligned[name]) for name in record["arms"]]
    fig, axes = plt.subplots(2, len(columns), figsize=(3.6 * len(columns), 5.0), squeeze=False)
    ranges = {
        "amplitude": (np.abs(truth)[mask].min(), np.abs(truth)[mask].max()),
        "phase": (np.angle(truth)[mask].min(), np.angle(truth)[mask].max()),
    }
    for col, (name, image) in enumerate(columns):
        for row, (quantity, fn, cmap) in enumerate((("amplitude", np.abs, "gray"), ("phase", np.angle, "twilight"))):
            ax = axes[row, col]
            lo, hi = ranges[quantity]
            ax.imshow(fn(image)[crop] * shown, cmap=cmap, vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            label = "ground truth" if name == "truth" else record["labels"][name]
            # the arm's label once, above its column, wrapped to the panel's width (labels are sentences)
            ax.set_title(f"{textwrap.fill(label, TITLE_CHARS)}\n{quantity}" if row == 0 else quantity, fontsize=8)
            if name != "truth":
                s = record["scores"][name]["featured"][quantity]
                frc = s["frc50_resolution_px"]
                frc = "never crossed" if frc is None or not math.isfinite(frc) else f"{frc:.1f} px"
                ax.set_xlabel(f"SSIM {s['ssim']:.3f}  r {s['pearson_r']:.3f}  FRC½ {frc}", fontsize=7)
    fig.suptitle(
        f"Phase G, {record['object']}, dose {record['dose']:g}, view {record['view']}: test split, featured region "
        f"({record['region_pixels']['featured']} px); registered, phase offset+ramp removed, mean amplitude matched",
        fontsize=9,
    )
    fig.tight_layout()
    _save(fig, path, dpi=70)


def dose_figure(table: list[dict], metrics: list[tuple[str, str]], path: Path, part: str = "featured",
                spread: dict | None = None) -> None:
    """One panel per (quantity, metric): value vs dose, one line per model and view; where ``spread``
    holds (lowest, highest) of a point over seeds (key (model, view, metric, dose)), a bar spans them."""
    spread = spread or {}
    lines = sorted({(row["model"], row["view"]) for row in table})
    styles = {"pinn": ("-", "o"), "pinn_refined": ("-", "*"), "pinn_gs1": ("--", "o"), "ptychi": (":", "o"), "ptychi_tuned": (":", "s"),
              "ptychi_heldout": (":", "D"), "gradient": (":", "^"), "gradient_heldout": (":", "v"),
              "pinn_ptychi": ("-", "s"), "pinn_gradient": ("-", "^"), "blank": ("-.", "o")}
    colours = {view: f"C{i}" for i, view in enumerate(sorted({v for _, v in lines}))}
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for ax, (metric, title) in zip(axes[0], metrics):
        for model, view in lines:
            points = sorted(
                (row["dose"], row["value"]) for row in table
                if row["model"] == model and row["view"] == view and row["metric"] == metric and row["part"] == part
            )
            if points:
                line, marker = styles.get(model, ("-", "o"))
                ax.plot(*zip(*points), line, marker=marker, color=colours[view], label=f"{model} · {view}")
                for dose, _ in points:
                    if (model, view, metric, dose) in spread:
                        lo, hi = spread[(model, view, metric, dose)]
                        ax.plot([dose, dose], [lo, hi], "-", color=colours[view], linewidth=3, alpha=0.5)
        ax.set_xscale("log")
        ax.set_xlabel("photons per pattern")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="best")
    fig.suptitle(f"Test split, {part} region: solid = view's network (gridsize 2), dashed = gridsize-1 network, "
                 "dotted = iterative (o pty-chi as configured, ■ tuned, ▲ gradient), dash-dot = the floor;\n"
                 "bars: lowest to highest over seeds (replicate stage)", fontsize=9)
    fig.tight_layout()
    _save(fig, path, dpi=80)
