"""Phase F's classical gradient reference (arm ``gradient``): a Poisson-likelihood solver on ``physics``.

The object is O = exp(a + iφ), with log-amplitude ``a`` and phase ``φ`` held on a grid
``f`` pixels per sample and upsampled bilinearly to the pixel grid. Adam minimises the Poisson
negative log-likelihood of the measured counts k under the study's one forward model,
λ = |F(s · P · O_patch)|² (``physics.expected_intensity``): mean(λ − k log λ). The grid starts
coarse (``gradient.levels[0]``, e.g. 8 px per sample: few unknowns, so photon noise cannot be
fitted) and is refined level by level (each level starts from the previous one's object); where
to stop — level and step — is chosen by the tune stage on the train split, since at low dose
finer levels fit the noise. Known probe and positions, seeded batches, deterministic kernels.

With ``--curve-out`` the arm's run also keeps its objects at the warmstart stage's checkpoints
(``gradient_solver.curve_points``: each level's end and ``warmstart.checkpoints`` of the last level's steps):
the blank-started solver the warmstart stage sets beside the network-started one is this run, so the solver
is not run a second time there (as reconstruct_tuned keeps ``ptychi_tuned``'s objects for it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ptychostudy import StudyError, layout, stage
from ptychostudy.dataset import Split
from ptychostudy.gradient_solver import ARM, curve_points, position, read_selection, schedule, setup, solve
from ptychostudy.io import derive_seed, sha256_file, write_json
from ptychostudy.params import Params
from ptychostudy.params import load as load_params
from ptychostudy.params.gradient import GradientParams
from ptychostudy.params.study import StudyParams
from ptychostudy.params.warmstart import WarmstartParams, marks
from ptychostudy.stored import write_curve, write_reconstruction

SPLIT = "test"
HELDOUT_ARM = "gradient_heldout"  # the stop the no-calibration protocol picked (held-out likelihood, no truth)


def _skipped(paths: dict, record: dict, curve_out) -> dict:
    for arm, (out, report) in paths.items():
        rec = {**record, "arm": arm}
        write_reconstruction(out, np.zeros((0, 0)), np.zeros(0), rec)
        write_json(report, rec)
    if curve_out is not None:
        write_curve(curve_out, np.zeros(0), np.zeros((0, 0, 0)), {**record, "arm": ARM})
    return {**record, "arms": list(paths)}


def run(cfg: Params, obj: str, dose, view: str, view_dir, tuning, out, report, timing, *, heldout_out=None, heldout_report=None,
        curve_out=None, progress: bool = True) -> dict:
    """Both gradient arms of one cell from one run: the solver stops at the later of the two protocols' stops
    and the earlier one's object is taken on the way (the same object a run stopping there gives); with
    ``curve_out`` the arm ``gradient``'s objects at the warmstart checkpoints on the way, too."""
    # load: every input read and checked first
    obj, dose = cfg.object(obj), cfg.dose(dose)
    definition = cfg.view(view)
    paths = {ARM: (Path(out), Path(report))}
    if (heldout_out is None) != (heldout_report is None):
        raise StudyError("gradient: --heldout-out and --heldout-report go together (the arm gradient_heldout)")
    if heldout_out is not None:
        paths[HELDOUT_ARM] = (Path(heldout_out), Path(heldout_report))
    timing = Path(timing)
    summary = layout.read_view_summary(view_dir, dose, view)
    g = cfg.gradient
    record = {"object": obj, "dose": dose, "view": view, "phase": "F", "split": SPLIT,
              "solver": "Poisson-likelihood gradient descent (Adam), coarse-to-fine object"}
    if summary["skipped"]:
        record.update(skipped=True, reason=summary["reason"])
        return _skipped(paths, record, curve_out)
    stops = {arm: read_selection(tuning, dose, view, arm) for arm in paths}
    at = {arm: position(g, stop) for arm, stop in stops.items()}
    last = max(paths, key=lambda arm: at[arm])
    plan = schedule(g, stops[last])
    points = curve_points(schedule(g, stops[ARM]), marks(stops[ARM][1], cfg.warmstart.checkpoints)) if curve_out else []
    kept = {(factor, step): total for factor, step, total in points}
    data_path = layout.view_file(view_dir, SPLIT)
    split = Split.read(data_path, 1, require_groups=definition.gridsize > 1)
    # compute
    setup(g.threads)
    objects, seconds, curve = {}, {}, {}
    start = time.perf_counter()

    def checkpoint(level, step, obj):
        now = time.perf_counter() - start
        for arm, stop in stops.items():
            if arm != last and (level, step) == stop:
                objects[arm] = obj
                seconds[arm] = now
        if (level, step) in kept:
            curve[kept[level, step]] = (obj, now)

    earlier = sorted({stop[1] for arm, stop in stops.items() if arm != last} | {step for _, step, _ in points})
    recon, cost = solve(split, g, plan, derive_seed(g.seed, dose, view), progress=progress,
                        desc=f"gradient {obj} dose {dose} {view}", checkpoints=earlier, on_checkpoint=checkpoint)
    objects[last], seconds[last] = recon, time.perf_counter() - start
    # write
    record.update(skipped=False, data={"path": str(data_path), "sha256": sha256_file(data_path)}, positions=split.patterns)
    for arm, (arm_out, arm_report) in paths.items():
        steps = at[arm]
        rec = {**record, "arm": arm, "plan": [list(p) for p in schedule(g, stops[arm])], "steps": steps,
               "settings": {"learning_rate": g.learning_rate, "batch": g.batch, "seed": g.seed, "threads": g.threads,
                            "chosen_by": f"{tuning}: level and step selected on the train split "
                                         f"({'calibration: train truth' if arm == ARM else 'no calibration: held-out NLL'})",
                            "tuning_sha256": sha256_file(tuning)},
               "shared_run": f"one solver run for {', '.join(paths)}; this arm's object after {steps} of its {len(cost)} steps",
               "cost_first": float(cost[0]), "cost_final": float(cost[steps - 1]), "object_shape": list(objects[arm].shape)}
        write_reconstruction(arm_out, objects[arm], cost[:steps], rec)
        write_json(arm_report, rec)
    timed = {}
    if curve_out is not None:
        steps = [total for _, _, total in points]
        if set(curve) != set(steps):  # the solver fires every checkpoint of a level it runs: a missing one is a bug
            raise StudyError(f"gradient: the curve's objects at steps {sorted(curve)}, expected {steps}")
        write_curve(curve_out, steps, np.stack([curve[s][0] for s in steps]),
                    {**record, "arm": ARM, "plan": [list(p) for p in schedule(g, stops[ARM])],
                     "points": [list(p) for p in points], "checkpoints": list(cfg.warmstart.checkpoints),
                     "learning_rate": g.learning_rate, "batch": g.batch, "seed": g.seed,
                     "note": "epochs: the run's steps from its start (across levels) at each object"})
        timed["curve_seconds"] = {ARM: [{"level": f, "steps": total, "seconds": curve[total][1]} for f, _, total in points]}
    write_json(timing, {"object": obj, "dose": dose, "view": view, "arms": list(paths), "reconstruct_seconds": seconds,
                        "steps": {arm: at[arm] for arm in paths}, "positions": split.patterns, "threads": g.threads,
                        "torch": torch.__version__, **timed})
    return {**record, "arms": list(paths), "plans": {arm: schedule(g, stops[arm]) for arm in paths}, "seconds": seconds}


def cli(args) -> None:
    """``ptychostudy gradient``: one cell, then its headline on stdout."""
    r = run(load_params(args.params, GradientParams, StudyParams, WarmstartParams), args.obj, args.dose, args.view, args.view_dir,
            args.tuning, args.out, args.report, args.timing, heldout_out=args.heldout_out, heldout_report=args.heldout_report,
            curve_out=args.curve_out, progress=not args.no_progress)
    if r["skipped"]:
        print(f"gradient {r['object']} dose {r['dose']} {r['view']}: SKIPPED ({r['reason']})")
        return
    for arm, plan in r["plans"].items():
        steps = ", ".join(f"{n} steps at {factor} px/sample" for factor, n in plan)
        print(f"{arm} {r['object']} dose {r['dose']} {r['view']}: {r['positions']} positions, {steps} ({r['seconds'][arm]:.1f} s)")


def build_parser(prog: str = "python -m ptychostudy.gradient") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="Phase F: the Poisson-likelihood gradient solver on the test split of one dose × view",
                       description="Phase F's classical gradient reference (arm gradient): Adam on the Poisson "
                       "likelihood of the counts under the study's forward model, the object (log-amplitude and phase) "
                       "on a coarse grid refined level by level (gradient.levels), stopping at the level and step the "
                       "tune stage selected on the train split (--tuning; with --heldout-out also the no-calibration "
                       "protocol's stop, from the same run). Writes the object and its cost per step "
                       "(.npz, no pickle), a record (JSON) and a timing file.")
    stage.add_cell(p, "folder with test.npz and view.json")
    p.add_argument("--tuning", type=Path, required=True, help="the tune stage's selection (JSON)")
    stage.add_outputs(p)
    p.add_argument("--heldout-out", type=Path, help="the arm gradient_heldout's reconstruction .npz (the no-calibration "
                   "protocol's stop, taken from the same run)")
    p.add_argument("--heldout-report", type=Path, help="the arm gradient_heldout's record (JSON)")
    p.add_argument("--curve-out", type=Path, help="the arm gradient's objects on the way (.npz) at the warmstart "
                   "stage's checkpoints (each level's end, warmstart.checkpoints of the last level): its blank start")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.gradient") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
