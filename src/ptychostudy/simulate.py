"""Phase C: simulate one diffraction data set per dose.

Seeded continuous scan positions (identical for every dose, so that dose is the only change),
the simulator's finer forward model (simulator.py: object and probe ``simulate.fine_factor``× finer,
far field cropped to the detector), dose scaling, seeded Poisson counts, amplitude sqrt(counts)
stored as float32. The positions are split along one axis with a guard band of object rows that
neither split touches; each split's file holds the truth of its own region only (blank elsewhere).
The report measures how well each arm's own forward model predicts the noise-free intensities from
the truth (mismatch.py).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ptychostudy import StudyError, figures, mismatch, physics, stage
from ptychostudy.dataset import Split, build_arrays, write_dataset
from ptychostudy.io import derive_seed, write_json
from ptychostudy.layout import SPLITS, simulated_file
from ptychostudy.params import Params, as_dict
from ptychostudy.params import load as load_params
from ptychostudy.params.base import BaseParams
from ptychostudy.params.simulate import SimulateParams
from ptychostudy.params.study import StudyParams
from ptychostudy.prepared import Base, read_base
from ptychostudy.simulator import fine_model, unscaled_intensities

CHUNK = 256  # patterns per step; fixed so that the random stream is consumed identically


@dataclass(frozen=True)
class SplitGeometry:
    """Where each split's patch centres may lie, along the split axis (object pixels)."""

    axis: int  # 0: split along y (rows), 1: along x (columns)
    band_start: int  # first object row (or column) of the guard band
    band_stop: int  # one past its last
    train_range: tuple[float, float]  # half-open range of centres along the split axis
    test_range: tuple[float, float]
    other_range: tuple[float, float]  # range of centres along the other axis


def split_geometry(shape: tuple[int, int], patch: int, guard: int, axis_name: str) -> SplitGeometry:
    """Train patches touch only rows < band_start, test patches only rows ≥ band_stop.

    A bilinear patch whose top-left sample is at t touches rows floor(t) … floor(t) + N,
    so a centre c = t + N/2 touches rows floor(c - N/2) … floor(c - N/2) + N.
    """
    axis = 0 if axis_name == "y" else 1
    length, other = shape[axis], shape[1 - axis]
    half = patch / 2
    band_start = int(math.floor((length - 1) / 2 - guard / 2 + 0.5))
    band_stop = band_start + guard
    train = (half, band_start - half)
    test = (band_stop + half, length - 1 - half)
    across = (half, other - 1 - half)
    for name, (lo, hi) in (("train", train), ("test", test), ("the other axis", across)):
        if not hi > lo:
            raise StudyError(
                f"no room for {name} positions: a {shape[0]}×{shape[1]} object with {patch}-px patches and a "
                f"{guard}-px guard band along {axis_name}; make the object larger or lower simulate.guard_band_px"
            )
    return SplitGeometry(axis, band_start, band_stop, train, test, across)


def scan_positions(cfg: Params, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Seeded uniform random patch centres per split: {split: (n, 2) array of (x, y)}."""
    s = cfg.simulate
    geometry = split_geometry(shape, cfg.base.patch_size, s.guard_band_px, s.split_axis)
    rng = np.random.default_rng(derive_seed(s.seed, "positions"))
    positions = {}
    for split in SPLITS:
        lo, hi = geometry.train_range if split == "train" else geometry.test_range
        along = rng.uniform(lo, hi, size=s.positions_per_split)
        across = rng.uniform(*geometry.other_range, size=s.positions_per_split)
        y, x = (along, across) if geometry.axis == 0 else (across, along)
        positions[split] = np.stack([x, y], axis=1)
    return positions


def touched_range(centres: np.ndarray, patch: int) -> tuple[int, int]:
    """First and last object row (or column) that bilinear patches at ``centres`` read."""
    start = np.floor(centres - patch / 2).astype(np.int64)
    return int(start.min()), int(start.max()) + patch


TRUTH_MARGIN = 2  # rows kept beyond what a split's bilinear patches read (pty-chi's extractor cuts N + 2 pixels)


def own_truth(obj: np.ndarray, axis: int, first: int, last: int) -> np.ndarray:
    """The truth of one split's region only: rows (columns for an x split) first − margin … last + margin
    of ``obj``, blank (1 + 0j) elsewhere."""
    kept = np.ones_like(obj)
    lo, hi = max(first - TRUTH_MARGIN, 0), last + TRUTH_MARGIN + 1
    index = (slice(lo, hi), slice(None)) if axis == 0 else (slice(None), slice(lo, hi))
    kept[index] = obj[index]
    return kept


def simulate_dose(
    cfg: Params, base: Base, dose: int, out_dir: Path, report: Path, figure: Path, *, progress: bool = True
) -> dict:
    """Write ``out_dir/patched_{train,test}.npz`` and the measured facts to ``report`` (the object: the base's)."""
    torch.set_num_threads(cfg.simulate.threads)
    n, factor = cfg.base.patch_size, cfg.simulate.fine_factor
    if base.probe.shape != (n, n):
        raise StudyError(f"the prepared probe is {base.probe.shape}, base.patch_size is {n}; rerun the base stage")
    positions = scan_positions(cfg, base.obj.shape)
    model = fine_model(base.obj, base.probe, factor)
    bar = tqdm(total=2 * sum(len(p) for p in positions.values()), desc=f"simulate dose {dose}", unit="pattern",
               disable=not progress)
    unit = {}
    for split in SPLITS:  # intensities at scale 1, on the fine grid, cropped to the detector
        pos = positions[split]
        unit[split] = np.empty((len(pos), n, n))
        for start in range(0, len(pos), CHUNK):
            unit[split][start : start + CHUNK] = unscaled_intensities(model, pos[start : start + CHUNK])
            bar.update(len(pos[start : start + CHUNK]))
    # One dose scale per data set: the mean expected counts per pattern over both splits equal the dose.
    mean_power = float(np.concatenate([u.sum(axis=(1, 2)) for u in unit.values()]).mean())
    scale = physics.dose_scale(mean_power, dose)

    facts = {"object": base.metadata["object"], "dose": dose,
             "phase_power_above_1_16": base.metadata["phase_power_above_1_16"], "scale": scale, "patch_size": n, "mean_far_field_power": mean_power,
             "simulation": {"fine_factor": factor, "grid": f"{factor}× finer than the study's pixel",
                            "object": "trigonometric (DFT) interpolation of the base object (itself the band-limited "
                                      "interpolant of the real array, or a pattern band-limited to the study's grid)",
                            "positions": "continuous",
                            "far_field": f"central {n}×{n} of the {n * factor}-point far field (band −N/2…N/2−1)"}}
    geometry = split_geometry(base.obj.shape, n, cfg.simulate.guard_band_px, cfg.simulate.split_axis)
    axis_index = 1 if geometry.axis == 0 else 0  # column of (x, y) along the split axis
    examples, pairs = {}, []
    for split in SPLITS:
        rng = np.random.default_rng(derive_seed(cfg.simulate.seed, "poisson", dose, split))
        pos = positions[split]
        amplitudes = np.empty((len(pos), n, n), dtype=np.float32)
        totals = np.empty(len(pos))
        max_counts = 0.0
        intensity = unit[split] * scale**2
        for start in range(0, len(pos), CHUNK):
            counts = physics.poisson_counts(intensity[start : start + CHUNK], rng)
            amplitudes[start : start + len(counts)] = np.sqrt(counts)
            totals[start : start + len(counts)] = counts.sum(axis=(1, 2))
            max_counts = max(max_counts, float(counts.max()))
            bar.update(len(counts))
        examples[split] = amplitudes[0]
        first, last = touched_range(pos[:, axis_index], n)
        meta = {
            "phase": "C",
            "split": split,
            "object": base.metadata["object"],
            "dose": dose,
            "intensity_scale": scale,
            "expected_counts": f"|F_ortho(intensity_scale · probe · object)|², simulated {factor}× finer than the "
                               "object's grid (simulator.py); physics.py on this grid predicts them up to the "
                               "model mismatch in the simulate report",
            "split_axis": cfg.simulate.split_axis,
            "guard_band": [geometry.band_start, geometry.band_stop],
            "truth_rows" if geometry.axis == 0 else "truth_columns": [max(first - TRUTH_MARGIN, 0),
                                                                     last + TRUTH_MARGIN],
            "featured_region": base.metadata["featured_region"],
            "base": base.metadata,
            "params": {"base": {"patch_size": n}, "simulate": as_dict(cfg.simulate)},  # what simulate declares
        }
        arrays = build_arrays(
            diffraction=amplitudes,
            xcoords=pos[:, 0],
            ycoords=pos[:, 1],
            scan_index=np.arange(len(pos)),
            probe=base.probe,
            obj=own_truth(base.obj, geometry.axis, first, last),
            metadata=meta,
        )
        write_dataset(simulated_file(out_dir, split), arrays)
        pairs.append((Split.from_arrays(arrays, 1), intensity))
        facts[split] = {
            "positions": int(len(pos)),
            "mean_counts_per_pattern": float(totals.mean()),
            "std_counts_per_pattern": float(totals.std()),
            "zero_count_pixel_fraction": float(np.mean(amplitudes == 0)),
            "max_counts_per_pixel": max_counts,
            "first_touched_along_split_axis": first,
            "last_touched_along_split_axis": last,
        }
    bar.close()
    train, test = facts["train"], facts["test"]
    facts["mean_counts_per_pattern"] = (
        train["mean_counts_per_pattern"] * train["positions"] + test["mean_counts_per_pattern"] * test["positions"]
    ) / (train["positions"] + test["positions"])
    # Object rows (columns for an x split) between the two splits that neither split reads.
    facts["guard_band_untouched"] = test["first_touched_along_split_axis"] - train["last_touched_along_split_axis"] - 1
    if facts["guard_band_untouched"] < 2 * TRUTH_MARGIN + 1:
        raise StudyError(f"the splits' truth regions would meet: only {facts['guard_band_untouched']} rows between "
                         "them; raise simulate.guard_band_px")
    models = mismatch.measure(pairs, base.obj)
    facts["model_mismatch"] = mismatch.per_arm(models)
    write_json(report, facts)
    figures.simulation_figure(base, positions, examples, geometry, facts, figure)
    return facts


def run(cfg: Params, base_path, obj: str, dose, out_dir, report, figure, *, progress: bool = True) -> dict:
    base = read_base(Path(base_path))
    if base.metadata.get("object") != cfg.object(obj):
        raise StudyError(f"{base_path} holds the object {base.metadata.get('object')!r}, not {obj!r}")
    return simulate_dose(cfg, base, cfg.dose(dose), Path(out_dir), Path(report), Path(figure), progress=progress)


def cli(args) -> None:
    """``ptychostudy simulate``: one dose, then its facts on stdout."""
    facts = run(load_params(args.params, StudyParams, BaseParams, SimulateParams), args.base, args.obj, args.dose, args.out_dir, args.report, args.figure,
                progress=not args.no_progress)
    print(f"{facts['object']}, dose {facts['dose']}: mean {facts['mean_counts_per_pattern']:.1f} counts/pattern, "
          f"{facts['train']['positions']} train + {facts['test']['positions']} test positions -> {args.out_dir}")


def build_parser(prog: str = "python -m ptychostudy.simulate") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="Phase C: simulate the diffraction data of one dose",
                       description="Phase C: seeded scan positions split along simulate.split_axis with a guard band, "
                       "bilinear sub-pixel patches, ψ = P·O, orthonormal far field scaled to the dose, seeded Poisson "
                       "counts; writes patched_train.npz and patched_test.npz (amplitude = sqrt(counts), float32) in "
                       "the PtychoPINN data contract, a JSON of measured facts and a figure.")
    stage.add_dose_stage(p, "folder for patched_{train,test}.npz", "JSON of measured facts to write")
    p.add_argument("--base", type=Path, required=True, help="prepared base .npz (from `ptychostudy base`)")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.simulate") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
