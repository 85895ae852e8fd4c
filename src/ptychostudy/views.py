"""Phase D: overlap views of each simulated data set, and the groups used for training.

The overlap fraction f refers to the probe: D is the diameter of the disc around the
probe's centroid that holds ``views.probe_power_fraction`` of its power, and kept
positions are at least S = (1 − f)·D apart (seeded random-order Poisson-disc
selection). A view with ``overlap: null`` keeps every position. Groups for gridsize g
are C = g² of a seed position's K nearest neighbours (the seed included), all C-subsets
("K choose C"), at most ``views.groups_per_seed`` per seed. Grouping lives here only;
Phase E reads the groups from the view file.

The positions kept by a view depend on the seeds, the view and the split, not on the
dose, so every dose of a view sees the same scan.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ptychostudy import StudyError, figures, physics, stage
from ptychostudy.dataset import build_arrays, metadata, read_dataset, write_dataset
from ptychostudy.grouping import make_groups, nearest_neighbours  # noqa: F401
from ptychostudy.io import derive_seed, write_json
from ptychostudy.layout import SPLITS, VIEW_SUMMARY, simulated_file, view_file
from ptychostudy.params import Params, as_dict
from ptychostudy.params import load as load_params
from ptychostudy.params.study import StudyParams
from ptychostudy.params.views import ViewsParams


def select_spaced(points: np.ndarray, spacing: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a subset whose pairwise distances are all ≥ ``spacing``.

    Candidates are visited in a seeded random order and kept when no kept point lies
    closer than ``spacing`` (random sequential adsorption, a Poisson-disc sample).
    """
    points = np.asarray(points, dtype=np.float64)
    if spacing <= 0:
        return np.arange(len(points))
    cell = spacing
    grid: dict[tuple[int, int], list[int]] = {}
    kept: list[int] = []
    for index in rng.permutation(len(points)):
        x, y = points[index]
        cx, cy = int(np.floor(x / cell)), int(np.floor(y / cell))
        too_close = False
        for gx in (cx - 1, cx, cx + 1):
            for gy in (cy - 1, cy, cy + 1):
                for other in grid.get((gx, gy), ()):
                    if np.hypot(*(points[other] - points[index])) < spacing:
                        too_close = True
                        break
                if too_close:
                    break
            if too_close:
                break
        if not too_close:
            grid.setdefault((cx, cy), []).append(int(index))
            kept.append(int(index))
    return np.sort(np.asarray(kept, dtype=np.int64))


def overlap_facts(points: np.ndarray, diameter: float, neighbours: int) -> dict:
    """Measured spacing and overlap of probe discs between neighbouring positions."""
    if len(points) < 2:
        return {"positions": int(len(points))}
    _, distances = nearest_neighbours(points, max(2, neighbours))
    nn = distances[:, 1]
    ring = distances[:, 1:]
    return {
        "positions": int(len(points)),
        "nn_distance_min_px": float(nn.min()),
        "nn_distance_median_px": float(np.median(nn)),
        "nn_distance_mean_px": float(nn.mean()),
        "linear_overlap_nn_mean": float(np.mean(np.clip(1.0 - nn / diameter, 0.0, None))),
        "area_overlap_nn_mean": float(np.mean(physics.disc_overlap(nn, diameter))),
        "area_overlap_neighbourhood_mean": float(np.mean(physics.disc_overlap(ring, diameter))),
    }


def build_view(
    cfg: Params, obj: str, dose: int, view: str, sim_dir: Path, out_dir: Path, report: Path, figure: Path, *,
    progress: bool = True
) -> dict:
    """One view of one object's data at one dose. A cell the object's subset leaves out (study.subsets) is written
    as a skipped view, with its reason: its positions, no groups; every later stage does nothing for it."""
    definition = cfg.view(view)
    excluded = not cfg.study.runs(obj, dose, view)
    v = cfg.views
    data = {split: read_dataset(simulated_file(sim_dir, split)) for split in SPLITS}
    held = {metadata(arrays).get("object") for arrays in data.values()}
    if held != {obj}:
        raise StudyError(f"{sim_dir}: simulated data of {', '.join(map(str, sorted(held, key=str)))}, not of the object {obj!r}")
    probe = data["train"]["probeGuess"]
    diameter = physics.probe_diameter(probe, v.probe_power_fraction)
    spacing = 0.0 if definition.overlap is None else (1.0 - definition.overlap) * diameter
    needed = v.min_positions if definition.group_size == 1 else max(v.min_positions, v.neighbours)

    summary = {
        "object": obj,
        "dose": dose,
        "view": view,
        "gridsize": definition.gridsize,
        "group_size": definition.group_size,
        "overlap_requested": definition.overlap,
        "probe_diameter_px": diameter,
        "probe_power_fraction": v.probe_power_fraction,
        "min_spacing_px": spacing,
        "min_positions_to_train": needed,
        "skipped": False,
        "reason": "",
    }
    kept, groups = {}, {}
    if excluded:
        subset = cfg.study.subsets[obj]
        summary["skipped"] = True
        summary["reason"] = (f"not in the study: study.subsets.{obj} runs doses {', '.join(map(str, subset.doses))} × "
                             f"views {', '.join(subset.views)} only. ")
    for split in tqdm(SPLITS, desc=f"view {obj} {view} dose {dose}", disable=not progress):
        arrays = data[split]
        points = np.stack([arrays["xcoords"], arrays["ycoords"]], axis=1)
        rng = np.random.default_rng(derive_seed(v.subsample_seed, view, split))
        kept[split] = select_spaced(points, spacing, rng) if definition.overlap is not None else np.arange(len(points))
        facts = overlap_facts(points[kept[split]], diameter, v.neighbours)
        facts["pool_positions"] = int(len(points))
        if excluded:
            facts["groups"] = 0
        elif len(kept[split]) < needed:
            summary["skipped"] = True
            summary["reason"] += (
                f"{split}: {len(kept[split])} positions survive a {spacing:.1f}-px minimum spacing, "
                f"fewer than the {needed} needed to train (views.min_positions, views.neighbours). "
            )
            facts["groups"] = 0
        else:
            grng = np.random.default_rng(derive_seed(v.grouping_seed, view, split))
            groups[split] = make_groups(points[kept[split]], definition.group_size, v.neighbours, v.groups_per_seed, grng)
            facts["groups"] = int(len(groups[split]))
        summary[split] = facts
    summary["reason"] = summary["reason"].strip()

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Both split files are written even for a skipped view (the positions that survived, groups only where
    # they could be formed, "skipped" in the metadata): later stages read view.json first and do nothing for a
    # skipped view, and the tune stage can depend on the train file alone (DVC needs it to exist).
    for split in SPLITS:
        arrays, index = data[split], kept[split]
        meta = {
            "phase": "D",
            "source": simulated_file(".", split).name,
            "source_metadata": metadata(arrays),
            "view": view,
            "split": split,
            "object": obj,
            "dose": dose,
            "gridsize": definition.gridsize,
            "probe_diameter_px": diameter,
            "min_spacing_px": spacing,
            "params": {"views": as_dict(v)},
            **({"skipped": True, "reason": summary["reason"]} if summary["skipped"] else {}),
        }
        write_dataset(
            view_file(out_dir, split),
            build_arrays(
                diffraction=arrays["diffraction"][index],
                xcoords=arrays["xcoords"][index],
                ycoords=arrays["ycoords"][index],
                scan_index=arrays["scan_index"][index],
                probe=arrays["probeGuess"],
                obj=arrays["objectGuess"],
                metadata=meta,
                groups=groups.get(split),
            ),
        )
    write_json(out_dir / VIEW_SUMMARY, summary)
    write_json(report, summary)
    figures.view_figure(summary, {s: data[s] for s in SPLITS}, kept, figure)
    return summary


def run(cfg: Params, obj: str, dose, view: str, sim_dir, out_dir, report, figure, *, progress: bool = True) -> dict:
    return build_view(cfg, cfg.object(obj), cfg.dose(dose), view, Path(sim_dir), Path(out_dir), Path(report), Path(figure), progress=progress)


def cli(args) -> None:
    """``ptychostudy views``: one view of one dose, then its facts on stdout."""
    s = run(load_params(args.params, StudyParams, ViewsParams), args.obj, args.dose, args.view, args.sim_dir, args.out_dir, args.report, args.figure,
            progress=not args.no_progress)
    state = f"SKIPPED ({s['reason']})" if s["skipped"] else "ok"
    print(f"view {s['view']} of {s['object']} dose {s['dose']}: D = {s['probe_diameter_px']:.1f} px, S = {s['min_spacing_px']:.1f} px, "
          f"train {s['train']['positions']} / test {s['test']['positions']} positions, "
          f"{s['train']['groups']} / {s['test']['groups']} groups: {state}")


def build_parser(prog: str = "python -m ptychostudy.views") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="Phase D: one overlap view (baseline, dense, sparse, ...) of one dose",
                       description="Phase D: measure the probe diameter D, keep positions at least S = (1 − overlap)·D "
                       "apart (all positions when overlap is null), form the training groups (C of the K nearest "
                       "neighbours), measure the overlap, and write {train,test}.npz and view.json; a view with too "
                       "few positions is recorded as skipped, with its reason.")
    stage.add_dose_stage(p, "folder for {train,test}.npz and view.json", "JSON of the view's measured overlap")
    p.add_argument("--view", required=True, help="a view defined in views.definitions")
    p.add_argument("--sim-dir", type=Path, required=True, help="folder with patched_{train,test}.npz of this dose")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.views") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
