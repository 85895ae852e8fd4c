"""The tune stage: the tuned iterative arms' settings, selected on each view's *train* split.

The fairness protocol (README "A fair study"): no setting of any arm is chosen from test-split
scores. This stage reads only the view's train file (its ``dvc.yaml`` entry depends on nothing
else of the view, and a test runs it with the test file absent), runs

* pty-chi LSQML for every setting of ``tune.ptychi_grid`` (noise model, TV weight, momentum), one
  run per setting as long as the last of ``tune.ptychi_epochs.<view>``, scored after each listed
  epoch count; and
* the gradient solver (``gradient.py``) through all of ``gradient.levels``, scored after each of
  ``tune.gradient_checkpoints`` steps of every level,

all on ``tune.threads`` torch threads (one: a selection stage that a parallel run can pair with another
single-threaded stage; the gradient arm itself runs on ``gradient.threads``), scores each against the
train split's own truth (featured region, phase Pearson r, by the study's
one scoring path ``metrics.score_arm``) and selects the best of each solver. The selection and every
score it rests on go to ``reports/tuning/<cell>.json`` (its figure: stage ``tune_figure``); the ``reconstruct_tuned``
and ``gradient`` stages read it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ptychostudy import gradient_solver, layout, stage
from ptychostudy.dataset import Split
from ptychostudy.io import derive_seed, sha256_file, write_json
from ptychostudy.metrics import regions, score_arm
from ptychostudy.params import Params
from ptychostudy.params import load as load_params
from ptychostudy.params.compare import CompareParams
from ptychostudy.params.reconstruct import ReconstructParams
from ptychostudy.params.tune import TuneParams
from ptychostudy.ptychi_solver import reconstruct

SPLIT = "train"
CRITERION = "phase Pearson r in the featured region of the view's train split (metrics.score_arm)"


def _scorer(cfg: Params, split: Split):
    masks = regions(split, cfg.compare.scanned_threshold)

    def score(obj: np.ndarray) -> tuple[float, float]:
        featured = score_arm(obj, split.truth, masks, cfg.compare, parts=("featured",), full=False).scores["featured"]
        return float(featured["phase"]["pearson_r"]), float(featured["amplitude"]["pearson_r"])

    return score


def _timed(rows: list[dict], seconds: list[float], row: dict, start: float) -> None:
    """Add a grid row; its wall time goes to a list for the timing file (the report must stay byte-stable)."""
    rows.append(row)
    seconds.append(time.perf_counter() - start)


def _best(rows: list[dict]) -> dict:
    """The highest train phase r (the first such row on a tie: cheaper settings come first)."""
    return max(rows, key=lambda row: row["phase_r"])


def tune_ptychi(cfg: Params, split: Split, dose: int, view: str, score, seconds: list, *, progress: bool = True) -> dict:
    epochs = cfg.tune.ptychi_epochs[view]
    seed = derive_seed(cfg.reconstruct.seed, dose, view, SPLIT) % (2**31)
    torch.set_num_threads(cfg.tune.threads)
    rows = []
    for setting in cfg.tune.ptychi_grid:
        name = f"{setting.noise_model}, TV {setting.tv_weight:g}, momentum {setting.momentum:g}"
        start = time.perf_counter()

        def checkpoint(epoch, obj, setting=setting, name=name, start=start):
            phase_r, amplitude_r = score(obj)
            _timed(rows, seconds, {"setting": name, "noise_model": setting.noise_model, "tv_weight": setting.tv_weight,
                                   "momentum": setting.momentum, "epochs": epoch, "phase_r": phase_r,
                                   "amplitude_r": amplitude_r}, start)

        reconstruct(setting, cfg.reconstruct.batch_size, split, epochs[-1], seed, progress=progress,
                    desc=f"tune pty-chi ({name})", checkpoints=epochs, on_checkpoint=checkpoint)
    return {"grid": rows, "selected": _best(rows)}


def tune_gradient(cfg: Params, split: Split, dose: int, view: str, score, seconds: list, *, progress: bool = True) -> dict:
    g = cfg.gradient
    gradient_solver.setup(cfg.tune.threads)
    rows = []
    done = {factor: i * g.steps_per_level for i, factor in enumerate(g.levels)}  # steps before each level
    start = time.perf_counter()

    def checkpoint(level, step, obj):
        phase_r, amplitude_r = score(obj)
        _timed(rows, seconds, {"setting": f"{level} px/sample", "level": level, "steps": step,
                               "total_steps": done[level] + step, "phase_r": phase_r, "amplitude_r": amplitude_r}, start)

    gradient_solver.solve(split, g, gradient_solver.schedule(g), derive_seed(g.seed, dose, view, SPLIT), progress=progress,
                   desc="tune gradient", checkpoints=cfg.tune.gradient_checkpoints, on_checkpoint=checkpoint)
    return {"grid": rows, "selected": _best(rows)}


def run(cfg: Params, dose, view: str, view_dir, report, timing, *, progress: bool = True) -> dict:
    # load: the train split only
    dose = cfg.dose(dose)
    definition = cfg.view(view)
    report, timing = map(Path, (report, timing))
    summary = layout.read_view_summary(view_dir, dose, view)
    record = {"dose": dose, "view": view, "split": SPLIT, "criterion": CRITERION}
    if summary["skipped"]:
        record.update(skipped=True, reason=summary["reason"])
        write_json(report, record)
        return record
    data_path = layout.view_file(view_dir, SPLIT)
    split = Split.read(data_path, 1, require_groups=definition.gridsize > 1)
    score = _scorer(cfg, split)
    # compute
    start = time.perf_counter()
    floor_phase_r, floor_amplitude_r = score(np.ones(split.truth.shape, dtype=np.complex64))
    row_seconds = {"ptychi": [], "gradient": []}  # wall time of each grid row (timing file only)
    ptychi = tune_ptychi(cfg, split, dose, view, score, row_seconds["ptychi"], progress=progress)
    ptychi_seconds = time.perf_counter() - start
    grad = tune_gradient(cfg, split, dose, view, score, row_seconds["gradient"], progress=progress)
    seconds = time.perf_counter() - start
    # write
    record.update(skipped=False, data={"path": str(data_path), "sha256": sha256_file(data_path)},
                  positions=split.patterns, floor_phase_r=floor_phase_r, floor_amplitude_r=floor_amplitude_r,
                  ptychi=ptychi, gradient=grad)
    write_json(report, record)
    write_json(timing, {"dose": dose, "view": view, "tune_seconds": seconds, "ptychi_seconds": ptychi_seconds,
                        "gradient_seconds": seconds - ptychi_seconds, "grid_seconds": row_seconds,
                        "positions": split.patterns,
                        "torch": torch.__version__})
    return {**record, "seconds": seconds}


def cli(args) -> None:
    """``ptychostudy tune``: one cell's selection, then its headline on stdout."""
    r = run(load_params(args.params, TuneParams, ReconstructParams, CompareParams), args.dose, args.view, args.view_dir, args.report, args.timing,
            progress=not args.no_progress)
    if r["skipped"]:
        print(f"tune dose {r['dose']} {r['view']}: SKIPPED ({r['reason']})")
        return
    p, g = r["ptychi"]["selected"], r["gradient"]["selected"]
    print(f"tune dose {r['dose']} {r['view']} (train split, {r['seconds']:.0f} s): pty-chi {p['setting']}, "
          f"{p['epochs']} epochs (phase r {p['phase_r']:.3f}); gradient stops after {g['steps']} steps at "
          f"{g['level']} px/sample (phase r {g['phase_r']:.3f}); floor {r['floor_phase_r']:.3f} -> {args.report}")


def build_parser(prog: str = "python -m ptychostudy.tune") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="select the tuned iterative arms' settings on the train split of one dose × view",
                       description="The selection stage (fairness protocol: no setting is chosen from test-split scores). "
                       "On the view's TRAIN split only: pty-chi LSQML for every setting of tune.ptychi_grid (noise model, "
                       "TV weight, momentum), scored after each of tune.ptychi_epochs.<view>, and the gradient solver "
                       "through gradient.levels, scored after each of tune.gradient_checkpoints steps of every level; "
                       "scores are phase Pearson r against the train split's truth (featured region). Writes the "
                       "selection with every score (JSON) and a timing file (its figure: stage tune_figure).")
    stage.add_cell(p, "folder with train.npz and view.json (test.npz is never read)")
    p.add_argument("--report", type=Path, required=True, help="selection and scores (JSON) to write (reports/tuning)")
    p.add_argument("--timing", type=Path, required=True, help="wall time (JSON) to write; kept out of DVC")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.tune") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
