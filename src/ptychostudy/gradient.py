"""Phase F's classical gradient reference (arm ``gradient``): a Poisson-likelihood solver on ``physics``.

The object is O = exp(a + iφ), with log-amplitude ``a`` and phase ``φ`` held on a grid
``f`` pixels per sample and upsampled bilinearly to the pixel grid. Adam minimises the Poisson
negative log-likelihood of the measured counts k under the study's one forward model,
λ = |F(s · P · O_patch)|² (``physics.expected_intensity``): mean(λ − k log λ). The grid starts
coarse (``gradient.levels[0]``, e.g. 8 px per sample: few unknowns, so photon noise cannot be
fitted) and is refined level by level (each level starts from the previous one's object); where
to stop — level and step — is chosen by the tune stage on the train split, since at low dose
finer levels fit the noise. Known probe and positions, seeded batches, deterministic kernels.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ptychostudy import layout, stage
from ptychostudy.dataset import Split
from ptychostudy.gradient_solver import ARM, read_selection, schedule, setup, solve
from ptychostudy.io import derive_seed, sha256_file, write_json
from ptychostudy.params import Params
from ptychostudy.params import load as load_params
from ptychostudy.params.gradient import GradientParams
from ptychostudy.params.study import StudyParams
from ptychostudy.stored import write_reconstruction

SPLIT = "test"
def run(cfg: Params, dose, view: str, view_dir, tuning, out, report, timing, *, progress: bool = True) -> dict:
    # load: every input read and checked first
    dose = cfg.dose(dose)
    definition = cfg.view(view)
    out, report, timing = map(Path, (out, report, timing))
    summary = layout.read_view_summary(view_dir, dose, view)
    g = cfg.gradient
    record = {"dose": dose, "view": view, "phase": "F", "arm": ARM, "split": SPLIT,
              "solver": "Poisson-likelihood gradient descent (Adam), coarse-to-fine object"}
    if summary["skipped"]:
        record.update(skipped=True, reason=summary["reason"])
        write_reconstruction(out, np.zeros((0, 0)), np.zeros(0), record)
        write_json(report, record)
        return record
    stop = read_selection(tuning, dose, view)
    plan = schedule(g, stop)
    data_path = layout.view_file(view_dir, SPLIT)
    split = Split.read(data_path, 1, require_groups=definition.gridsize > 1)
    # compute
    setup(g.threads)
    start = time.perf_counter()
    obj, cost = solve(split, g, plan, derive_seed(g.seed, dose, view), progress=progress, desc=f"gradient dose {dose} {view}")
    seconds = time.perf_counter() - start
    # write
    record.update(
        skipped=False,
        data={"path": str(data_path), "sha256": sha256_file(data_path)},
        positions=split.patterns,
        plan=[list(p) for p in plan],
        steps=len(cost),
        settings={"learning_rate": g.learning_rate, "batch": g.batch, "seed": g.seed, "threads": g.threads,
                  "chosen_by": f"{tuning}: level and step selected on the train split",
                  "tuning_sha256": sha256_file(tuning)},
        cost_first=float(cost[0]),
        cost_final=float(cost[-1]),
        object_shape=list(obj.shape),
    )
    write_reconstruction(out, obj, cost, record)
    write_json(report, record)
    write_json(timing, {"dose": dose, "view": view, "arm": ARM, "reconstruct_seconds": seconds, "steps": len(cost),
                        "positions": split.patterns, "threads": g.threads, "torch": torch.__version__})
    return {**record, "seconds": seconds}


def cli(args) -> None:
    """``ptychostudy gradient``: one cell, then its headline on stdout."""
    r = run(load_params(args.params, GradientParams, StudyParams), args.dose, args.view, args.view_dir, args.tuning, args.out, args.report,
            args.timing, progress=not args.no_progress)
    if r["skipped"]:
        print(f"gradient dose {r['dose']} {r['view']}: SKIPPED ({r['reason']})")
    else:
        plan = ", ".join(f"{steps} steps at {factor} px/sample" for factor, steps in r["plan"])
        print(f"gradient dose {r['dose']} {r['view']}: {r['positions']} positions, {plan} in {r['seconds']:.1f} s, "
              f"Poisson NLL {r['cost_first']:.4g} -> {r['cost_final']:.4g} -> {args.out}")


def build_parser(prog: str = "python -m ptychostudy.gradient") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="Phase F: the Poisson-likelihood gradient solver on the test split of one dose × view",
                       description="Phase F's classical gradient reference (arm gradient): Adam on the Poisson "
                       "likelihood of the counts under the study's forward model, the object (log-amplitude and phase) "
                       "on a coarse grid refined level by level (gradient.levels), stopping at the level and step the "
                       "tune stage selected on the train split (--tuning). Writes the object and its cost per step "
                       "(.npz, no pickle), a record (JSON) and a timing file.")
    stage.add_cell(p, "folder with test.npz and view.json")
    p.add_argument("--tuning", type=Path, required=True, help="the tune stage's selection (JSON)")
    stage.add_outputs(p)
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.gradient") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
