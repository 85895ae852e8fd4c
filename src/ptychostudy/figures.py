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
        f"Phase C, dose {facts['dose']:g} photons/pattern: measured mean {facts['mean_counts_per_pattern']:.1f} "
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
        f"view {summary['view']} (gridsize {summary['gridsize']}), dose {summary['dose']:g}: "
        f"D = {summary['probe_diameter_px']:.1f} px, S = {summary['min_spacing_px']:.1f} px"
    )
    if summary["skipped"]:
        title += "\nSKIPPED: too few positions"
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8, markerscale=4)
    fig.tight_layout()
    _save(fig, path, dpi=70)


def training_figure(record: dict, history: list[dict], reconstructions: dict, path: Path) -> None:
    """Loss and scores per epoch, and truth beside the stitched reconstruction of each split."""
    fig = plt.figure(figsize=(16, 7.5))
    grid = fig.add_gridspec(2, 5)
    epochs = [row["epoch"] for row in history]
    ax = fig.add_subplot(grid[0, 0])
    ax.plot(epochs, [row["loss"] for row in history], "k.-")
    ax.set_xlabel("epoch")
    ax.set_ylabel("Poisson deviance per pixel")
    ax.set_title("training loss")
    ax = fig.add_subplot(grid[1, 0])
    scored = [row for row in history if any(key.startswith(tuple(SPLIT_COLOURS)) for key in row)]
    for split, colour in SPLIT_COLOURS.items():
        for key, style in (("amplitude_r", "-"), ("phase_r", "--"), ("phase_spread_ratio", ":")):
            ax.plot([row["epoch"] for row in scored], [row[f"{split}_{key}"] for row in scored], style, marker=".",
                    color=colour, label=f"{split} {key}")
    ax.set_xlim(0.5, max(epochs) + 0.5)
    ax.set_xlabel("epoch (scored: train.eval_every and the last)")
    ax.set_ylim(-0.1, 1.1)
    ax.legend(fontsize=6)
    ax.set_title("featured region: r and spread")
    for row, (split, (recon, truth, mask)) in enumerate(reconstructions.items()):
        rows = np.nonzero(mask.any(axis=1))[0]
        cols = np.nonzero(mask.any(axis=0))[0]
        crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        shown = np.where(mask, 1.0, np.nan)[crop]
        amp_range = (np.abs(truth)[mask].min(), np.abs(truth)[mask].max())
        phase_range = (np.angle(truth)[mask].min(), np.angle(truth)[mask].max())
        panels = (
            (np.abs(truth), "gray", amp_range, "true amplitude"),
            (np.abs(recon), "gray", amp_range, "network amplitude"),
            (np.angle(truth), "twilight", phase_range, "true phase"),
            (np.angle(recon), "twilight", phase_range, "network phase"),
        )
        s = record["scores"][split]
        for col, (image, cmap, (lo, hi), title) in enumerate(panels, start=1):
            ax = fig.add_subplot(grid[row, col])
            ax.imshow(image[crop] * shown, cmap=cmap, vmin=lo, vmax=hi)
            ax.set_title(f"{split}: {title}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_xlabel(
            f"amp r {s['amplitude_r']:.2f}, phase r {s['phase_r']:.2f}, spread {s['phase_spread_ratio']:.2f}", fontsize=8
        )
    fig.suptitle(
        f"Phase E, dose {record['dose']:g}, view {record['view']} (gridsize {record['gridsize']}): "
        f"{record['steps']} steps, final loss {record['final_loss']:.3f}; featured region, global phase offset and ramp removed"
    )
    fig.tight_layout()
    _save(fig, path, dpi=70)


def skipped_figure(record: dict, path: Path) -> None:
    """A declared figure of a skipped job says so, instead of being missing."""
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, f"dose {record['dose']:g}, view {record['view']}: SKIPPED\n{record['reason']}",
            ha="center", va="center", wrap=True)
    _save(fig, path, dpi=70)


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


def measured_figure(images: dict, probe: np.ndarray, region: np.ndarray, curves: dict, record: dict, path: Path) -> None:
    """The measured Siemens star: pty-chi on each half, the network on half B, the refined probe, the FRC curves."""
    rows = np.nonzero(region.any(axis=1))[0]
    cols = np.nonzero(region.any(axis=0))[0]
    crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    shown = np.where(region, 1.0, np.nan)[crop]
    reference = np.angle(images["ptychi_B"])[region]
    lo, hi = np.percentile(reference, [1, 99])
    fig, axes = plt.subplots(2, 3, figsize=(13, 8.5))
    panels = (("ptychi_A", "pty-chi, half A"), ("ptychi_B", "pty-chi, half B"), ("pinn_B", "network (trained on A), half B"),
              ("pinn_A", "network on its training half A"))
    for ax, (key, title) in zip(axes.ravel(), panels):
        phase = np.angle(images[key])
        phase = phase - np.angle(np.sum(np.exp(1j * (phase - np.angle(images["ptychi_B"])))[region]))  # common offset
        ax.imshow(np.angle(np.exp(1j * phase))[crop] * shown, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(f"{title}: phase", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    ax = axes[1, 1]
    ax.imshow(np.abs(probe), cmap="magma")
    ax.set_title("probe refined by pty-chi (half A), amplitude", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax = axes[1, 2]
    for name, (freqs, curve) in curves.items():
        s = record["pairs"][name]
        ax.plot(freqs, curve, label=f"{name} (FRC½ {s['phase_frc50_px']:.1f} px)")
    ax.axhline(0.5, color="k", lw=0.6, ls=":")
    ax.set_xlabel("cycles per object pixel")
    ax.set_ylabel("phase FRC")
    ax.set_ylim(-0.2, 1.05)
    ax.legend(fontsize=7)
    ax.set_title("agreement (no ground truth)", fontsize=10)
    d = record["data"]
    fig.suptitle(f"Measured Siemens star (APS Velociprobe): {d['patterns']} patterns cropped to {d['crop_px']} px, "
                 f"two halves of {d['patterns'] // 2} positions")
    fig.tight_layout()
    _save(fig, path, dpi=70)
