"""Network-started solvers (arms ``pinn_ptychi`` and ``pinn_gradient``): where the network earns its place.

The view's own network (``pinn``, or ``pinn_gs1`` on a gridsize-1 view) gives an object of the test split
in one pass (the infer stage's file). Here that object is the starting guess of the tuned iterative solvers,
and each is set beside the same solver started blank, on the same test patterns:

* ``pinn_ptychi``: pty-chi LSQML with the calibration protocol's setting and epochs (the tune stage's pick,
  as ``ptychi_tuned`` runs it, same seed); blank-started it is ``ptychi_tuned`` itself, so its blank curve is
  Phase F's run: the reconstruct_tuned stage keeps that run's objects at the checkpoints (its curve file) and
  they are scored here — the arm is not run twice (on the baseline view it costs 140 s a cell).
* ``pinn_gradient``: the gradient solver's **last** tuned level with its steps, started from the network's
  object on that level's grid: the network stands in for the coarser levels. Blank-started it is the whole
  tuned schedule (coarse to fine), the ``gradient`` arm itself: Phase F's gradient stage keeps that run's
  objects at the checkpoints (its curve file, ``gradient_solver.curve_points``) and they are scored here.

At the fractions ``warmstart.checkpoints`` of each run (pty-chi's epochs; each gradient level's steps) the
object so far is scored by the study's one scoring path (featured region, against the truth: a measurement
of the curve, nothing is selected from it); the wall time of the solver steps up to there (scoring excluded)
goes to the timing file, so that quality against time — and the time the network saves to reach a quality —
can be drawn once the inference's own time (the infer stage's timing) is added. The arms are the runs'
last objects, scored in Phase G like every arm.

``run`` is load (params, test split, the infer stage's object, the tuning selection, Phase F's two curve files;
all checked first) → compute → write (two object files beside Phase F's, the record with both curves, the timing file).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ptychostudy import StudyError, gradient_solver, layout, ptychi_solver, stage
from ptychostudy.arms import network_arm
from ptychostudy.cell import read_inferred
from ptychostudy.dataset import Split
from ptychostudy.io import derive_seed, sha256_file, write_json
from ptychostudy.metrics import regions, score_arm
from ptychostudy.params import Params
from ptychostudy.params import load as load_params
from ptychostudy.params.compare import CompareParams
from ptychostudy.params.gradient import GradientParams
from ptychostudy.params.reconstruct import ReconstructParams
from ptychostudy.params.study import StudyParams
from ptychostudy.params.warmstart import WarmstartParams, marks
from ptychostudy.stored import read_curve, write_reconstruction

ARMS = layout.WARMSTART_ARMS  # ("pinn_ptychi", "pinn_gradient")
BLANK_TWIN = {"pinn_ptychi": "ptychi_tuned", "pinn_gradient": "gradient"}  # the arm its blank-started run reproduces
STARTS = ("blank", "network")
SPLIT = "test"
MIN_MODULUS = 1e-3  # the starting object's smallest amplitude (the gradient solver fits the log-amplitude)


def starting_object(canvas: np.ndarray) -> np.ndarray:
    """The network's stitched object as a solver's start: where no patch reached (zero in the canvas) a
    unit-modulus object at the covered part's mean phase (a blank object there would put a phase step at the
    coverage's edge: the network's phase has an arbitrary offset); amplitudes at least ``MIN_MODULUS``."""
    canvas = np.asarray(canvas, dtype=np.complex128)
    covered = np.abs(canvas) > 0
    if not covered.any():
        raise StudyError("the network's object is zero everywhere: nothing to start a solver from")
    total = canvas[covered].sum()
    fill = total / abs(total) if abs(total) > 0 else 1.0
    start = np.where(covered, canvas, fill)
    modulus = np.abs(start)
    start = np.where(modulus < MIN_MODULUS, MIN_MODULUS * np.exp(1j * np.angle(start)), start)
    return start.astype(np.complex64)


class Curve:
    """Scores and solver seconds at the checkpoints of one run (the scoring's own time excluded)."""

    def __init__(self, score):
        self.score, self.points, self.start, self.paused = score, [], time.perf_counter(), 0.0

    def mark(self, obj: np.ndarray, **where) -> None:
        now = time.perf_counter()
        self.points.append({**where, "seconds": now - self.start - self.paused, **self.score(obj)})
        self.paused += time.perf_counter() - now


def _blank_curve(path, expected: dict, points: list, what: str, stage_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Phase F's run of the blank-started twin at the checkpoints, checked against what this cell needs."""
    counts, objects, meta = read_curve(path)
    found = {k: meta.get(k) for k in expected}
    if found != expected or [int(c) for c in counts] != points:
        raise StudyError(f"{path}: the blank start's curve of {found} at {what} {[int(c) for c in counts]}, this cell "
                         f"needs {expected} at {what} {points} (warmstart.checkpoints): rerun its {stage_name} stage")
    return counts, objects


def run(cfg: Params, obj: str, dose, view: str, view_dir, inferred, tuning, blank_curve, gradient_curve, ptychi_out,
        gradient_out, report, timing, *, progress: bool = True) -> dict:
    # load: every input read and checked first
    obj, dose = cfg.object(obj), cfg.dose(dose)
    definition = cfg.view(view)
    outs = {"pinn_ptychi": Path(ptychi_out), "pinn_gradient": Path(gradient_out)}
    report, timing = Path(report), Path(timing)
    summary = layout.read_view_summary(view_dir, dose, view)
    network = network_arm(cfg, view)
    record = {"object": obj, "dose": dose, "view": view, "phase": "F", "split": SPLIT, "network": network}
    if summary["skipped"]:
        record.update(skipped=True, reason=summary["reason"])
        for path in outs.values():
            write_reconstruction(path, np.zeros((0, 0)), np.zeros(0), record)
        write_json(report, record)
        return record
    objects, inferred_record = read_inferred(inferred, obj, dose, view)
    if network not in objects:
        raise StudyError(f"{inferred}: holds no object of the view's network {network!r} (arms: "
                         f"{', '.join(objects) or 'none'}); rerun its infer stage")
    setting, epochs, chosen = ptychi_solver.settings_of(cfg, "ptychi_tuned", dose, view, tuning)
    p_marks = [m for m in marks(epochs, cfg.warmstart.checkpoints) if m > 0]
    blank_epochs, blank_objects = _blank_curve(
        blank_curve, {"object": obj, "dose": dose, "view": view, "arm": BLANK_TWIN["pinn_ptychi"], "epochs": epochs},
        p_marks, "epochs", "reconstruct_tuned")
    g = cfg.gradient
    stop = gradient_solver.read_selection(tuning, dose, view, gradient_solver.ARM)
    plans = {"blank": gradient_solver.schedule(g, stop)}
    plans["network"] = plans["blank"][-1:]
    g_marks = [m for m in marks(stop[1], cfg.warmstart.checkpoints) if m > 0]
    points = {start: gradient_solver.curve_points(plans[start], g_marks) for start in STARTS}
    g_steps, g_objects = _blank_curve(
        gradient_curve, {"object": obj, "dose": dose, "view": view, "arm": BLANK_TWIN["pinn_gradient"],
                         "plan": [list(p) for p in plans["blank"]], "learning_rate": g.learning_rate, "batch": g.batch,
                         "seed": g.seed}, [total for _, _, total in points["blank"]], "steps", "gradient")
    data_path = layout.view_file(view_dir, SPLIT)
    split = Split.read(data_path, 1, require_groups=definition.gridsize > 1)
    start_obj = starting_object(objects[network])
    if start_obj.shape != tuple(split.truth.shape):
        raise StudyError(f"{inferred}: the network's object is {start_obj.shape}, the test split's grid "
                         f"{tuple(split.truth.shape)}")
    # compute: each solver from both starts, scored at the checkpoints
    masks = regions(split, cfg.compare.scanned_threshold)

    def score(o: np.ndarray) -> dict:  # the curve: measured with the truth, never selected on
        s = score_arm(o, split.truth, masks, cfg.compare, ("featured",)).scores["featured"]
        return {"phase_pearson_r": s["phase"]["pearson_r"], "phase_detail_r": s["phase"].get("detail_r", float("nan")),
                "phase_frc50_resolution_px": s["phase"]["frc50_resolution_px"],
                "amplitude_pearson_r": s["amplitude"]["pearson_r"]}

    w, r = cfg.warmstart, cfg.reconstruct
    torch.set_num_threads(w.threads)  # as reconstruct.py runs pty-chi (the gradient runs below: setup)
    blank = np.ones(split.truth.shape, dtype=np.complex64)
    curves: dict[str, dict[str, Curve]] = {arm: {} for arm in ARMS}
    finals: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    p_seed = derive_seed(r.seed, dose, view) % (2**31)  # as reconstruct.py seeds ptychi_tuned
    # pty-chi from blank is Phase F's ptychi_tuned run itself: its objects on the way (the curve file) are scored
    # here, so that the arm runs once in the study; its seconds are in Phase F's timing file (curve_seconds)
    curve = curves["pinn_ptychi"]["blank"] = Curve(score)
    curve.mark(blank, epochs=0)
    for e, o in zip(blank_epochs, blank_objects):
        curve.mark(o, epochs=int(e))
    curve = curves["pinn_ptychi"]["network"] = Curve(score)
    curve.mark(start_obj, epochs=0)
    recon, cost, _ = ptychi_solver.reconstruct(
        setting, r.batch_size, split, epochs, p_seed, progress=progress, checkpoints=p_marks,
        on_checkpoint=lambda e, o, c=curve: c.mark(o, epochs=e), initial_object=start_obj,
        desc=f"warmstart pty-chi from the network {obj} dose {dose} {view}")
    finals["pinn_ptychi"] = (recon, cost)
    # the gradient solver from blank is Phase F's gradient run (its curve file), as pty-chi's above
    curve = curves["pinn_gradient"]["blank"] = Curve(score)
    curve.mark(blank, level=plans["blank"][0][0], steps=0)
    for (level, _, total), o in zip(points["blank"], g_objects):
        curve.mark(o, level=level, steps=total)
    gradient_solver.setup(w.threads)  # fixed threads, deterministic kernels, as gradient.py runs it
    g_seed = derive_seed(g.seed, dose, view)  # as gradient.py seeds the gradient arm
    curve = curves["pinn_gradient"]["network"] = Curve(score)
    curve.mark(start_obj, level=plans["network"][0][0], steps=0)
    at = {(level, step): total for level, step, total in points["network"]}
    recon, cost = gradient_solver.solve(
        split, g, plans["network"], g_seed, progress=progress, checkpoints=sorted({step for _, step in at}),
        on_checkpoint=lambda level, step, o, c=curve: c.mark(o, level=level, steps=at[level, step]), initial=start_obj,
        desc=f"warmstart gradient from the network {obj} dose {dose} {view}")
    finals["pinn_gradient"] = (recon, cost)
    # write: the tracked record holds what is reproducible (scores by epoch or step); wall times go to the timing file
    shared = {"data": {"path": str(data_path), "sha256": sha256_file(data_path)},
              "inferred": {"path": str(inferred), "sha256": sha256_file(inferred)},
              "tuning": {"path": str(tuning), "sha256": sha256_file(tuning)},
              "blank_curve": {"path": str(blank_curve), "sha256": sha256_file(blank_curve)},
              "gradient_curve": {"path": str(gradient_curve), "sha256": sha256_file(gradient_curve)}}
    record.update(skipped=False, positions=split.patterns, **shared)
    settings = {
        "pinn_ptychi": {"noise_model": setting.noise_model, "tv_weight": setting.tv_weight, "momentum": setting.momentum,
                        "epochs": epochs, "batch_size": r.batch_size, "seed": r.seed, **chosen,
                        "plan": f"{epochs} LSQML epochs from each start (blank: the arm {BLANK_TWIN['pinn_ptychi']})"},
        "pinn_gradient": {"plans": {s: [list(p) for p in plans[s]] for s in STARTS}, "learning_rate": g.learning_rate,
                          "batch": g.batch, "seed": g.seed,
                          "plan": "network: the last tuned level only, from the network's object on its grid; blank: "
                                  f"the whole tuned schedule (the arm {BLANK_TWIN['pinn_gradient']})"},
    }
    records = {}
    for arm in ARMS:
        recon, cost = finals[arm]
        rec = {**record, "arm": arm, "blank_twin": BLANK_TWIN[arm], "settings": settings[arm],
               "curve": {s: [{k: v for k, v in p.items() if k != "seconds"} for p in curves[arm][s].points] for s in STARTS},
               "cost_first": float(cost[0]), "cost_final": float(cost[-1]), "object_shape": list(recon.shape)}
        write_reconstruction(outs[arm], recon, cost, rec)
        records[arm] = rec
    write_json(report, {**record, "arms": {arm: {k: v for k, v in rec.items() if k not in record} for arm, rec in records.items()}})
    seconds = {arm: {s: [{k: p[k] for k in p if k in ("epochs", "level", "steps", "seconds", "phase_pearson_r")}
                         for p in curves[arm][s].points] for s in STARTS} for arm in ARMS}
    for arm in ARMS:  # both blank starts are Phase F's runs: their seconds are those stages' (curve_seconds)
        seconds[arm]["blank"] = [{k: p[k] for k in ("epochs", "level", "steps", "phase_pearson_r") if k in p} | {"seconds": None}
                                 for p in curves[arm]["blank"].points]
    write_json(timing, {"object": obj, "dose": dose, "view": view, "network": network, "curves": seconds,
                        "threads": w.threads, "torch": torch.__version__,
                        "note": "solver seconds from each run's start at each checkpoint, scoring excluded; add the "
                                "infer stage's inference seconds for the time from the start of inference. Both "
                                "solvers from blank ran in Phase F: their seconds are curve_seconds of "
                                "reconstruct-ptychi_tuned-<cell>.json and gradient-<cell>.json"})
    return {**record, "records": records, "seconds": seconds}


def cli(args) -> None:
    """``ptychostudy warmstart``: one cell, then each solver's two curves on stdout."""
    r = run(load_params(args.params, WarmstartParams, ReconstructParams, GradientParams, CompareParams, StudyParams),
            args.obj, args.dose, args.view, args.view_dir, args.inferred, args.tuning, args.blank_curve, args.gradient_curve,
            args.ptychi_out, args.gradient_out, args.report, args.timing, progress=not args.no_progress)
    if r["skipped"]:
        print(f"warmstart {r['object']} dose {r['dose']} {r['view']}: SKIPPED ({r['reason']})")
        return
    for arm, starts in r["seconds"].items():
        for start, points in starts.items():
            shown = "; ".join(("Phase F" if p["seconds"] is None else f"{p['seconds']:.1f} s")
                              + f" r {p['phase_pearson_r']:.3f}" for p in points)
            print(f"{arm} {r['object']} dose {r['dose']} {r['view']} from {start}: {shown}")


def build_parser(prog: str = "python -m ptychostudy.warmstart") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="the network-started solvers of one cell (arms pinn_ptychi, pinn_gradient)",
                     description="Network-started solvers (params warmstart.*): the view's network's test-split object "
                     "(--inferred, the infer stage's file) starts pty-chi LSQML with the tuned setting and epochs "
                     "(--tuning, calibration protocol) and the gradient solver's last tuned level; beside each the same solver "
                     "from a blank object: Phase F's runs, pty-chi's ptychi_tuned (--blank-curve) and the gradient arm "
                     "(--gradient-curve). Both starts are scored at the fractions warmstart.checkpoints (featured region; "
                     "nothing is selected from these scores). Writes the two arms' objects (.npz, no pickle, beside "
                     "Phase F's), a record with both curves (JSON) and a timing file (solver seconds per checkpoint).")
    stage.add_cell(p, "folder with test.npz and view.json")
    p.add_argument("--inferred", type=Path, required=True, help="the infer stage's file of this cell (.npz)")
    p.add_argument("--tuning", type=Path, required=True, help="the tune stage's selection (JSON)")
    p.add_argument("--blank-curve", type=Path, required=True, help="Phase F's ptychi_tuned objects on the way (.npz, "
                   "its reconstruct_tuned stage's --curve-out): pty-chi's blank start")
    p.add_argument("--gradient-curve", type=Path, required=True, help="Phase F's gradient objects on the way (.npz, "
                   "its gradient stage's --curve-out): the gradient solver's blank start")
    p.add_argument("--ptychi-out", type=Path, required=True, help="the arm pinn_ptychi's reconstruction .npz")
    p.add_argument("--gradient-out", type=Path, required=True, help="the arm pinn_gradient's reconstruction .npz")
    p.add_argument("--report", type=Path, required=True, help="record with both starts' curves (JSON)")
    p.add_argument("--timing", type=Path, required=True, help="solver seconds per checkpoint (JSON); kept out of DVC")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.warmstart") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
