"""Phase G: every arm of one dose × view against the ground truth, aligned and scored alike.

Arms, all on the view's test split (the same patterns and positions):

* ``pinn``     — the network trained on this view (gridsize > 1 views only);
* ``pinn_gs1`` — the gridsize-1 network of the baseline view at this dose, applied to
  this view's patterns one by one;
* ``ptychi``   — pty-chi LSQML as the original study configured it (Phase F, ``reconstruct``);
* ``ptychi_tuned`` — pty-chi LSQML with the settings the tune stage selected on the train split;
* ``gradient`` — the Poisson-likelihood gradient solver, stopped where the tune stage selected;
* ``pinn_refined`` — the view's network fine-tuned on the test split's own patterns (refine.py; it saw
  the test patterns, never their truth);
* ``blank``    — the floor: a blank object (all ones) scored the same way. With the phase offset and
  ramp fitted, a flat phase already correlates with this object's phase, and flat phase scores a
  high phase SSIM: every arm's skill is its score above this floor.

``run`` is load (every input read and checked first) → compute (inference with the ``infer``
settings, then ``metrics.score_arm`` for each arm: regions, registration once, alignment per
region, metrics) → write (tidy CSV, record, figure, timing).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ptychostudy import StudyError, layout, stage, study_figures
from ptychostudy.arms import FLOOR, arms, baseline_view
from ptychostudy.arms import LABELS as ARM_LABELS
from ptychostudy.bundle import LoadedModel, load_bundle
from ptychostudy.dataset import Split, read_dataset
from ptychostudy.infer import reconstruct_split, setup_torch
from ptychostudy.io import sha256_file, write_json, write_text
from ptychostudy.layout import STORED_ARMS
from ptychostudy.metrics import PARTS, regions, score_arm
from ptychostudy.params import Params
from ptychostudy.params import load as load_params
from ptychostudy.params.compare import CompareParams
from ptychostudy.params.infer import InferParams
from ptychostudy.params.study import StudyParams
from ptychostudy.stored import read_reconstruction

CSV_HEADER = "model,metric,part,value\n"


def _finite(value):
    """JSON has no infinity: a perfect score's PSNR (MSE 0) is stored as null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value if not isinstance(value, float) or np.isfinite(value) else None


@dataclass
class Cell:
    """One cell's inputs, read and checked before any work."""

    dose: int
    view: str
    summary: dict
    arms: list[str]
    paths: dict[str, Path]  # "data" and each arm -> its input file
    splits: dict[str, Split]  # "test" (one pattern per group) and, for the view's network, "groups"
    networks: dict[str, LoadedModel]
    stored: dict[str, tuple[np.ndarray, np.ndarray, dict]]  # arm -> (object, loss, record) of its file (iterative, refined)


def load(cfg: Params, dose, view: str, view_dir, models, reconstructions) -> Cell:
    dose = cfg.dose(dose)
    definition = cfg.view(view)
    summary = layout.read_view_summary(view_dir, dose, view)
    if summary["skipped"]:
        return Cell(dose, view, summary, [], {}, {}, {}, {})
    names = arms(cfg, view)
    paths = {"data": layout.view_file(view_dir, "test")}
    if "pinn" in names:
        paths["pinn"] = layout.bundle_path(models, dose, view)
    if "pinn_gs1" in names:
        paths["pinn_gs1"] = layout.bundle_path(models, dose, baseline_view(cfg))
    stored_arms = [name for name in STORED_ARMS if name in names]
    for name in stored_arms:
        paths[name] = layout.reconstruction_file(reconstructions, name)  # (the blank arm reads nothing)
    missing = [f"{path} (needed for the {name} arm)" for name, path in paths.items() if not Path(path).is_file()]
    if missing:
        raise StudyError("missing input: " + "; ".join(missing) + "; run the earlier stages first")
    data = read_dataset(paths["data"], require_groups=definition.gridsize > 1)
    splits = {"test": Split.from_arrays(data, 1)}
    if "pinn" in names:
        splits["groups"] = Split.from_arrays(data, definition.gridsize)
    truth = splits["test"].truth
    stored = {}
    for name in stored_arms:
        obj, loss, meta = read_reconstruction(paths[name])
        if meta.get("skipped") or obj.shape != truth.shape:
            raise StudyError(f"{paths[name]}: holds no {truth.shape[0]}×{truth.shape[1]} object for dose {dose}, view {view}")
        stored[name] = (obj, loss, meta)
    networks = {name: load_bundle(paths[name]) for name in names if name.startswith("pinn") and name not in stored}
    return Cell(dose, view, summary, names, paths, splits, networks, stored)


def objects(cfg: Params, cell: Cell, *, progress: bool = True) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """(object of every arm, inference seconds of each network) of a loaded cell: the networks'
    stitched test-split objects (``infer`` settings), the iterative arms' and the floor's."""
    device = setup_torch(cfg.infer.threads, cfg.infer.accelerator)
    test = cell.splits["test"]
    reconstructions, seconds = {}, {}
    bar = tqdm(total=test.patterns * len(cell.networks), desc=f"infer dose {cell.dose} {cell.view}", unit="pattern",
               disable=not progress)
    for name, loaded in cell.networks.items():
        split = cell.splits["groups"] if name == "pinn" else test
        reconstructions[name], seconds[name] = reconstruct_split(loaded, split, cfg.infer, device, bar)
    bar.close()
    for name, (obj, _, _) in cell.stored.items():
        reconstructions[name] = obj
    reconstructions[FLOOR] = np.ones(test.truth.shape, dtype=np.complex64)
    return reconstructions, seconds


def compute(cfg: Params, cell: Cell, *, progress: bool = True):
    """(reconstructions, inference seconds, scored arms, masks) of a loaded cell."""
    reconstructions, seconds = objects(cfg, cell, progress=progress)
    test = cell.splits["test"]
    masks = regions(test, cfg.compare.scanned_threshold)
    scored = {name: score_arm(reconstructions[name], test.truth, masks, cfg.compare) for name in cell.arms}
    return reconstructions, seconds, scored, masks


def _csv(scored: dict) -> str:
    rows = [CSV_HEADER]
    for name, result in scored.items():
        for part in PARTS:
            for quantity, metrics in result.scores[part].items():
                rows += [f"{name},{quantity}_{metric},{part},{value:.6g}\n" for metric, value in metrics.items()]
        rows.append(f"{name},registration_dy_px,scanned,{result.shift[0]:.6g}\n")
        rows.append(f"{name},registration_dx_px,scanned,{result.shift[1]:.6g}\n")
    return "".join(rows)


def run(cfg: Params, dose, view: str, view_dir, models, reconstructions, out_dir, timing, *, progress: bool = True) -> dict:
    cell = load(cfg, dose, view, view_dir, models, reconstructions)
    out_dir, timing = Path(out_dir), Path(timing)
    csv_path, json_path, png_path = (out_dir / n for n in (layout.COMPARISON_CSV, layout.COMPARISON_JSON, layout.COMPARISON_PNG))
    record = {"dose": cell.dose, "view": cell.view, "phase": "G", "split": "test"}
    if cell.summary["skipped"]:
        record.update(skipped=True, reason=cell.summary["reason"], arms=[])
        write_text(csv_path, CSV_HEADER)
        write_json(json_path, record)
        study_figures.skipped_figure(record, png_path)
        return record

    _, seconds, scored, masks = compute(cfg, cell, progress=progress)

    record.update(
        skipped=False,
        arms=cell.arms,
        labels={n: ARM_LABELS[n] for n in cell.arms},
        inputs={k: {"path": str(p), "sha256": sha256_file(p)} for k, p in cell.paths.items()},
        patterns=cell.splits["test"].patterns,
        region_pixels={part: int(m.sum()) for part, m in masks.items()},
        registration_px={n: list(r.shift) for n, r in scored.items()},
        stored={name: {"settings": meta.get("settings"), "epochs": meta.get("epochs"), "plan": meta.get("plan"),
                       "steps": meta.get("steps"), "cost_final": meta.get("cost_final")}
                for name, (_, _, meta) in cell.stored.items()},
        scores=_finite({n: r.scores for n, r in scored.items()}),
    )
    write_text(csv_path, _csv(scored))
    write_json(json_path, record)
    study_figures.comparison_figure(record, cell.splits["test"].truth,
                                    {n: r.aligned["featured"] for n, r in scored.items()}, masks, png_path)
    write_json(timing, {"dose": cell.dose, "view": cell.view, "inference_seconds": seconds,
                        "patterns": record["patterns"], "threads": cfg.infer.threads, "torch": torch.__version__})
    return {**record, "inference_seconds": seconds}


def headline(record: dict) -> str:
    if record.get("skipped"):
        return f"compare dose {record['dose']} {record['view']}: SKIPPED ({record['reason']})"
    parts = []
    for name in record["arms"]:
        f = record["scores"][name]["featured"]
        parts.append(f"{name} phase SSIM {f['phase']['ssim']:.3f} r {f['phase']['pearson_r']:.3f} / "
                     f"amplitude SSIM {f['amplitude']['ssim']:.3f}")
    return f"compare dose {record['dose']} {record['view']} (featured region): " + "; ".join(parts)


def cli(args) -> None:
    """``ptychostudy compare``: one cell, then its headline on stdout."""
    record = run(load_params(args.params, StudyParams, InferParams, CompareParams), args.dose, args.view, args.view_dir, args.models, args.reconstructions,
                 args.out_dir, args.timing, progress=not args.no_progress)
    print(headline(record))


def build_parser(prog: str = "python -m ptychostudy.compare") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="Phase G: score every arm of one dose × view against the ground truth",
                       description="Phase G: on the view's test split, reconstruct with the view's network and the "
                       "gridsize-1 baseline network (settings: params.yaml infer.*), take each iterative arm's object "
                       "(pty-chi as configured, pty-chi tuned, the gradient solver), the refined network's (pinn_refined) "
                       "and a blank object (the floor); align "
                       "each the same way (compare.*: scanned region, "
                       "sub-pixel registration, global phase offset and ramp, mean amplitude) and score amplitude and "
                       "phase (MAE, MSE, PSNR, SSIM, MS-SSIM, FRC at 0.5 and 1/7, Pearson r, phase spread ratio) in the "
                       "featured region and the whole scanned region. Writes comparison_metrics.csv (model, metric, "
                       "part, value), a record (JSON) and a figure.")
    stage.add_cell(p, "folder with test.npz and view.json")
    p.add_argument("--models", type=Path, required=True, help="artefact folder of the bundles (dose_<d>/<view>/wts.h5.zip)")
    p.add_argument("--reconstructions", type=Path, required=True,
                   help="Phase F folder of this dose × view (ptychi.npz, ptychi_tuned.npz, gradient.npz, pinn_refined.npz)")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for comparison_metrics.csv, comparison.json, comparison.png")
    p.add_argument("--timing", type=Path, required=True, help="inference wall times (JSON) to write; kept out of DVC")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.compare") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
