"""The measured Siemens star, stage ``measured_compare``: the agreement of the reconstructions without a truth (pty-chi
on independent halves, the network against pty-chi, the floor), scored by the study's one scoring path with the
second reconstruction in the place of the truth, a table and a figure."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from tqdm import tqdm

from ptychostudy import StudyError, stage
from ptychostudy.figures import SPLIT_COLOURS, _save, plt  # noqa: F401
from ptychostudy.io import write_json, write_text
from ptychostudy.measured import (
    HALVES,
    MEASURED,
    add_arguments,
    load,
    read_pinn,
    read_result,
)
from ptychostudy.metrics import frc_curve, regions, score_arm
from ptychostudy.params import Params
from ptychostudy.params import load as load_params
from ptychostudy.params.compare import CompareParams
from ptychostudy.params.measured import MeasuredParams

PAIRS = {  # name -> (reconstruction, reference): the agreement scored in measured_compare
    "ptychi_A_vs_ptychi_B": ("ptychi_A", "ptychi_B"),
    "pinn_B_vs_ptychi_B": ("pinn_B", "ptychi_B"),
    "pinn_B_vs_ptychi_A": ("pinn_B", "ptychi_A"),
    "pinn_A_vs_ptychi_A": ("pinn_A", "ptychi_A"),
    "blank_vs_ptychi_B": ("blank", "ptychi_B"),
}
METRIC_PAIRS = {  # arm -> its pair in the DVC metrics row (the columns of the study's per-cell rows)
    "ptychi": "ptychi_A_vs_ptychi_B", "pinn": "pinn_B_vs_ptychi_B", "blank": "blank_vs_ptychi_B"}
PAIR_NOTES = {
    "ptychi_A_vs_ptychi_B": "pty-chi on two independent halves of the scan (the data's own FRC)",
    "pinn_B_vs_ptychi_B": "the network and pty-chi on the same patterns (half B)",
    "pinn_B_vs_ptychi_A": "the network on half B against pty-chi on the independent half A",
    "pinn_A_vs_ptychi_A": "the network on its own training patterns (half A) against pty-chi on them",
    "blank_vs_ptychi_B": "a blank object scored the same way: the floor",
}



def _px(value) -> str:
    """A resolution in px, or "never crossed" (NaN, or null once read from JSON)."""
    return "never crossed" if value is None or not math.isfinite(value) else f"{value:.2f} px"


def _headline(scores: dict) -> dict:
    p, a = scores["phase"], scores["amplitude"]
    return {"phase_r": p["pearson_r"], "phase_frc50_px": p["frc50_resolution_px"], "phase_frc1_7_px": p["frc1_7_resolution_px"],
            "amplitude_r": a["pearson_r"], "amplitude_frc50_px": a["frc50_resolution_px"]}




def run_compare(cfg: Params, data_path, ptychi_dir, pinn, out_dir, *, metrics=None, progress: bool = True) -> dict:
    """``measured_compare``: agreement of the reconstructions (``PAIRS``), a figure, a table."""
    data = load(cfg, data_path)
    ptychi_dir, out_dir = Path(ptychi_dir), Path(out_dir)
    images, probes = {}, {}
    for half in HALVES:
        obj, cost, probe, meta = read_result(ptychi_dir / f"ptychi_{half}.npz", "measured pty-chi result")
        if meta.get("half") != half or obj.shape != data.shape:
            raise StudyError(f"{ptychi_dir / f'ptychi_{half}.npz'}: not pty-chi's {data.shape} object of half {half}")
        images[f"ptychi_{half}"], probes[half] = obj, probe
    images["pinn_B"], images["pinn_A"] = read_pinn(pinn)
    images["blank"] = np.ones(data.shape, dtype=np.complex64)
    scanned = None
    for half in HALVES:  # the region both halves light
        lit = regions(SimpleNamespace(probe=probes[half], positions=data.positions[data.half(half)], truth=images["blank"],
                                      featured=(0, data.shape[0] - 1, 0, data.shape[1] - 1)),
                      cfg.compare.scanned_threshold)["scanned"]
        scanned = lit if scanned is None else scanned & lit
    masks = {"scanned": scanned}
    scored, curves = {}, {}
    for name, (moving, reference) in tqdm(PAIRS.items(), desc="measured agreement", disable=not progress):
        result = score_arm(images[moving], images[reference], masks, cfg.compare, ("scanned",))
        scored[name] = {**_headline(result.scores["scanned"]), "shift_px": list(result.shift), "note": PAIR_NOTES[name]}
        curves[name] = frc_curve(np.angle(result.aligned["scanned"]), np.angle(images[reference]), scanned,
                                 cfg.compare.frc_apodization_px)
    record = {"data": {"path": str(data_path), "sha256": cfg.measured.data_sha256, **data.facts},
              "region": {"name": "scanned by both halves", "pixels": int(scanned.sum())}, "pairs": scored,
              "scoring": "metrics.score_arm with the second reconstruction in the place of the truth (registration, "
                         "phase offset and ramp, mean amplitude); FRC½ as a half-period resolution in object pixels"}
    write_json(out_dir / "measured.json", record)
    if metrics is not None:  # the DVC metrics row: each arm's phase r against the other half's pty-chi
        write_json(metrics, {arm: scored[pair]["phase_r"] for arm, pair in METRIC_PAIRS.items()})
    write_text(out_dir / "measured.md", table(record))
    write_text(out_dir / "frc.csv", "pair,cycles_per_px,phase_frc\n" + "".join(
        f"{name},{f:.6g},{c:.6g}\n" for name, (freqs, curve) in curves.items() for f, c in zip(freqs, curve)))
    measured_figure(images, probes["A"], scanned, curves, record, out_dir / "measured.png")
    return record


def table(record: dict) -> str:
    """The agreement table (markdown), computed from the scores."""
    lines = ["| pair | phase r | phase FRC½ (px) | phase FRC 1/7 (px) | amplitude r | what it measures |",
             "|---|---:|---:|---:|---:|---|"]
    for name, s in record["pairs"].items():
        lines.append(f"| {name} | {s['phase_r']:.3f} | {_px(s['phase_frc50_px'])} | {_px(s['phase_frc1_7_px'])} | "
                     f"{s['amplitude_r']:.3f} | {s['note']} |")
    d = record["data"]
    return (f"# The measured Siemens star: agreement without a truth\n\n{d['patterns']} measured patterns, detector "
            f"cropped to {d['crop_px']} px (object pixel × {d['object_pixel_factor']:g}), halves of "
            f"{d['patterns'] // 2} positions; region: {record['region']['name']} ({record['region']['pixels']} px). "
            "Written by `ptychostudy measured-compare`.\n\n" + "\n".join(lines) + "\n")




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
        ax.plot(freqs, curve, label=f"{name} (FRC½ {_px(s['phase_frc50_px'])})")
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


def cli(args) -> None:
    """``ptychostudy measured-compare``."""
    cfg = load_params(args.params, MeasuredParams, CompareParams)
    progress = not args.no_progress
    r = run_compare(cfg, args.data, args.ptychi_dir, args.pinn, args.out_dir, metrics=args.metrics, progress=progress)
    for name, s in r["pairs"].items():
        print(f"{name}: phase r {s['phase_r']:.3f}, phase FRC½ {_px(s['phase_frc50_px'])}")


def build_parser(prog: str = "python -m ptychostudy.measured_compare") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="measured data: agreement of the reconstructions (FRC, phase r), figure",
                       description=MEASURED + "Score pty-chi A against pty-chi B (independent halves), the network on B "
                       "against pty-chi B and A, the network on A against pty-chi A, and a blank object (the floor), by "
                       "the study's one scoring path with the second reconstruction in the place of the truth, in the "
                       "region both halves light. Writes measured.json, measured.md, frc.csv and measured.png.")
    add_arguments(p)
    p.add_argument("--ptychi-dir", type=Path, required=True, help="folder of ptychi_A.npz and ptychi_B.npz")
    p.add_argument("--pinn", type=Path, required=True, help="measured-pinn's objects (.npz)")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for measured.json, measured.md, frc.csv, measured.png")
    p.add_argument("--metrics", type=Path, help="the DVC metrics row to write (JSON: phase r of pty-chi A against B, "
                   "of the network on B against pty-chi B, and of a blank object)")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.measured_compare") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
