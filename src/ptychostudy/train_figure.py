"""The training figure of one job (stage ``train_figure``): loss and scores per epoch, and truth beside the
stitched reconstruction of each split, drawn from what the train stage wrote for it (``--data``,
``train.write_shown``). Its own stage: a change to the figure reruns this stage only, never training."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ptychostudy import stage
from ptychostudy.figures import SPLIT_COLOURS, _save, plt, skipped_figure
from ptychostudy.npz import read_metadata, read_npz


def read_shown(path) -> tuple[dict, list[dict], dict]:
    """(record, per-epoch rows, split -> (reconstruction, truth, featured mask)) of ``train.write_shown``."""
    arrays = read_npz(path, "training figure data", hint="run the train stage first")
    meta = read_metadata(arrays, str(path))
    history = []
    columns = meta["columns"]
    for i, epoch in enumerate(arrays["epoch"]):
        row = {"epoch": int(epoch), "loss": float(arrays["loss"][i])}
        if arrays["scored"][i]:
            row.update({c: float(arrays[c][i]) for c in columns})
        history.append(row)
    shown = {s: (arrays[f"{s}_object"], arrays[f"{s}_truth"], arrays[f"{s}_mask"]) for s in meta["splits"]}
    return meta["record"], history, shown


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
        f"Phase E, {record['object']}, dose {record['dose']:g}, view {record['view']} (gridsize {record['gridsize']}): "
        f"{record['steps']} steps, final loss {record['final_loss']:.3f}; featured region, global phase offset and ramp removed"
    )
    fig.tight_layout()
    _save(fig, path, dpi=70)


def cli(args) -> None:
    """``python -m ptychostudy.train_figure``: the figure of one job."""
    record, history, shown = read_shown(args.data)
    if record.get("skipped"):
        skipped_figure(record, args.figure)
    else:
        training_figure(record, history, shown, args.figure)


def build_parser(prog: str = "python -m ptychostudy.train_figure") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="the training figure of one dose × view (from the train stage's figure data)")
    p.add_argument("--data", type=Path, required=True, help="the train stage's figure data (.npz)")
    p.add_argument("--figure", type=Path, required=True, help="PNG to write: loss, scores and reconstructions")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.train_figure") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=False)


if __name__ == "__main__":
    sys.exit(main())
