"""Figures people look at instead of reading numbers (matplotlib, Agg, PNG written atomically)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ptychostudy.io import atomic_path  # noqa: E402

SPLIT_COLOURS = {"train": "tab:blue", "test": "tab:orange"}


def _save(fig, path: Path, dpi: int = 90) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)


def _featured_box(ax, featured) -> None:
    r0, r1, c0, c1 = featured
    ax.add_patch(plt.Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1, fill=False, ec="white", ls="--", lw=0.8))


def simulation_figure(base, positions: dict, examples: dict, geometry, facts: dict, path: Path) -> None:
    """The ground-truth object with the scan of each split, and one diffraction pattern per split."""
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    obj = base.obj
    im = axes[0].imshow(np.abs(obj), cmap="gray")
    fig.colorbar(im, ax=axes[0], fraction=0.046)
    axes[0].set_title("object amplitude (ground truth)")
    im = axes[1].imshow(np.angle(obj), cmap="twilight")
    fig.colorbar(im, ax=axes[1], fraction=0.046, label="rad")
    axes[1].set_title("object phase, scan positions")
    for split, pos in positions.items():
        axes[1].plot(pos[:, 0], pos[:, 1], ".", ms=1.5, color=SPLIT_COLOURS[split], label=f"{split} ({len(pos)})")
    if geometry.axis == 0:
        axes[1].axhspan(geometry.band_start - 0.5, geometry.band_stop - 0.5, color="red", alpha=0.15, label="guard band")
    else:
        axes[1].axvspan(geometry.band_start - 0.5, geometry.band_stop - 0.5, color="red", alpha=0.15, label="guard band")
    for ax in axes[:2]:
        _featured_box(ax, base.featured)
    axes[1].legend(loc="lower right", fontsize=7, markerscale=5)
    for ax, split in zip(axes[2:], ("train", "test")):
        counts = examples[split].astype(np.float64) ** 2
        im = ax.imshow(np.log10(1 + counts), cmap="magma")
        fig.colorbar(im, ax=ax, fraction=0.046, label="log10(1 + counts)")
        ax.set_title(f"{split} pattern 0: {counts.sum():.0f} counts")
    fig.suptitle(
        f"Phase C, {facts['object']}, dose {facts['dose']:g} photons/pattern: measured mean {facts['mean_counts_per_pattern']:.1f} "
        f"counts per pattern, scale s = {facts['scale']:.4g}"
    )
    fig.tight_layout()
    _save(fig, path)


def view_figure(summary: dict, data: dict, kept: dict, path: Path) -> None:
    """Positions kept by a view over the object phase, with probe-diameter discs."""
    fig, ax = plt.subplots(figsize=(6, 6))
    obj = data["train"]["objectGuess"]
    ax.imshow(np.angle(obj), cmap="gray")
    radius = summary["probe_diameter_px"] / 2
    for split, arrays in data.items():
        idx = kept[split]
        x, y = arrays["xcoords"][idx], arrays["ycoords"][idx]
        ax.plot(x, y, ".", ms=2, color=SPLIT_COLOURS[split], label=f"{split}: {len(idx)} positions")
        if len(idx) <= 400:
            for cx, cy in zip(x, y):
                ax.add_patch(plt.Circle((cx, cy), radius, fill=False, lw=0.4, color=SPLIT_COLOURS[split], alpha=0.6))
    title = (
        f"{summary['object']}, view {summary['view']} (gridsize {summary['gridsize']}), dose {summary['dose']:g}: "
        f"D = {summary['probe_diameter_px']:.1f} px, S = {summary['min_spacing_px']:.1f} px"
    )
    if summary["skipped"]:
        title += "\nSKIPPED: too few positions"
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8, markerscale=4)
    fig.tight_layout()
    _save(fig, path, dpi=70)


def skipped_figure(record: dict, path: Path) -> None:
    """A declared figure of a skipped job says so, instead of being missing."""
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, f"{record.get('object', '')} dose {record['dose']:g}, view {record['view']}: SKIPPED\n{record['reason']}",
            ha="center", va="center", wrap=True)
    _save(fig, path, dpi=70)
