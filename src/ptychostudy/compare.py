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

``run`` is load (every input read and checked first, ``cell.load``: the networks' objects come from the
infer stage) → compute (``metrics.score_arm`` for each arm: regions, registration once, alignment per
region, metrics) → write (tidy CSV, record, figure).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


from ptychostudy import layout, stage, study_figures
from ptychostudy.arms import LABELS as ARM_LABELS
from ptychostudy.cell import Cell
from ptychostudy.cell import load as load_cell
from ptychostudy.io import finite, sha256_file, write_json, write_text
from ptychostudy.metrics import PARTS, regions, score_arm
from ptychostudy.params import Params
from ptychostudy.params import load as load_params
from ptychostudy.params.compare import CompareParams
from ptychostudy.params.study import StudyParams

CSV_HEADER = "model,metric,part,value\n"


def compute(cfg: Params, cell: Cell):
    """(reconstructions, scored arms, masks) of a loaded cell."""
    reconstructions = cell.objects()
    masks = regions(cell.test, cfg.compare.scanned_threshold)
    scored = {name: score_arm(reconstructions[name], cell.test.truth, masks, cfg.compare) for name in cell.arms}
    return reconstructions, scored, masks


def _csv(scored: dict) -> str:
    rows = [CSV_HEADER]
    for name, result in scored.items():
        for part in PARTS:
            for quantity, metrics in result.scores[part].items():
                rows += [f"{name},{quantity}_{metric},{part},{value:.6g}\n" for metric, value in metrics.items()]
        rows.append(f"{name},registration_dy_px,scanned,{result.shift[0]:.6g}\n")
        rows.append(f"{name},registration_dx_px,scanned,{result.shift[1]:.6g}\n")
    return "".join(rows)


def run(cfg: Params, obj: str, dose, view: str, view_dir, inferred, reconstructions, out_dir) -> dict:
    cell = load_cell(cfg, obj, dose, view, view_dir, inferred, reconstructions)
    out_dir = Path(out_dir)
    csv_path, json_path, png_path = (out_dir / n for n in (layout.COMPARISON_CSV, layout.COMPARISON_JSON, layout.COMPARISON_PNG))
    record = {"object": cell.obj, "dose": cell.dose, "view": cell.view, "phase": "G", "split": "test"}
    if cell.summary["skipped"]:
        record.update(skipped=True, reason=cell.summary["reason"], arms=[])
        write_text(csv_path, CSV_HEADER)
        write_json(json_path, record)
        study_figures.skipped_figure(record, png_path)
        return record

    _, scored, masks = compute(cfg, cell)

    record.update(
        skipped=False,
        arms=cell.arms,
        labels={n: ARM_LABELS[n] for n in cell.arms},
        inputs={k: {"path": str(p), "sha256": sha256_file(p)} for k, p in cell.paths.items()},
        patterns=cell.test.patterns,
        region_pixels={part: int(m.sum()) for part, m in masks.items()},
        registration_px={n: list(r.shift) for n, r in scored.items()},
        stored={name: {"settings": meta.get("settings"), "epochs": meta.get("epochs"), "plan": meta.get("plan"),
                       "steps": meta.get("steps"), "cost_final": meta.get("cost_final")}
                for name, (_, _, meta) in cell.stored.items()},
        scores=finite({n: r.scores for n, r in scored.items()}),  # JSON has no infinity or NaN: null
    )
    write_text(csv_path, _csv(scored))
    write_json(json_path, record)
    study_figures.comparison_figure(record, cell.test.truth,
                                    {n: r.aligned["featured"] for n, r in scored.items()}, masks, png_path)
    return record


def headline(record: dict) -> str:
    if record.get("skipped"):
        return f"compare {record['object']} dose {record['dose']} {record['view']}: SKIPPED ({record['reason']})"
    parts = []
    for name in record["arms"]:
        f = record["scores"][name]["featured"]
        parts.append(f"{name} phase SSIM {f['phase']['ssim']:.3f} r {f['phase']['pearson_r']:.3f} / "
                     f"amplitude SSIM {f['amplitude']['ssim']:.3f}")
    return f"compare {record['object']} dose {record['dose']} {record['view']} (featured region): " + "; ".join(parts)


def cli(args) -> None:
    """``ptychostudy compare``: one cell, then its headline on stdout."""
    record = run(load_params(args.params, StudyParams, CompareParams), args.obj, args.dose, args.view, args.view_dir, args.inferred,
                 args.reconstructions, args.out_dir)
    print(headline(record))


def build_parser(prog: str = "python -m ptychostudy.compare") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="Phase G: score every arm of one dose × view against the ground truth",
                       description="Phase G: on the view's test split, take the objects of the view's network and the "
                       "gridsize-1 baseline network (the infer stage's file), each iterative arm's object "
                       "(pty-chi as configured, pty-chi tuned, the gradient solver), the refined network's (pinn_refined) "
                       "and a blank object (the floor); align "
                       "each the same way (compare.*: scanned region, "
                       "sub-pixel registration, global phase offset and ramp, mean amplitude) and score amplitude and "
                       "phase (MAE, MSE, PSNR, SSIM, MS-SSIM, FRC at 0.5 and 1/7, Pearson r, phase spread ratio) in the "
                       "featured region and the whole scanned region. Writes comparison_metrics.csv (model, metric, "
                       "part, value), a record (JSON) and a figure.")
    stage.add_cell(p, "folder with test.npz and view.json")
    p.add_argument("--inferred", type=Path, required=True, help="the infer stage's file of this cell (the networks' objects)")
    p.add_argument("--reconstructions", type=Path, required=True,
                   help="Phase F folder of this dose × view (ptychi.npz, ptychi_tuned.npz, gradient.npz, pinn_refined.npz)")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for comparison_metrics.csv, comparison.json, comparison.png")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.compare") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
