"""The test-time refinement arm ``pinn_refined``: a view's trained network fine-tuned on the test split's patterns.

The network of each view (Phase E, trained on the train split) is trained further, self-supervised
through the same physics and loss as in training (``train.Trainer``: Poisson deviance of the predicted
diffraction against the measured counts), on the **test split's own patterns** — never their truth —
for ``refine.steps`` Adam steps under a cosine decay. Its object at the end is the arm; on the way,
at the fractions ``refine.checkpoints`` of the steps, the stitched object is scored by the study's one
scoring path (``metrics.score_arm``) to draw phase r against wall time (the arm's cost: the refinement
steps so far plus one inference). Nothing is selected from those scores: the settings are fixed in
params beforehand and the arm is always the last step's object. The arm's name says what it saw.

``run`` is load (params, the view's test split, the view's bundle, all checked first) → compute →
write (object file beside Phase F's, record with the curve, timing).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ptychostudy import StudyError, layout, stage
from ptychostudy.bundle import load_bundle
from ptychostudy.dataset import Split
from ptychostudy.inference import predict_and_stitch, require_channels, setup_torch
from ptychostudy.io import derive_seed, sha256_file, write_json
from ptychostudy.metrics import regions, score_arm
from ptychostudy.params import Params
from ptychostudy.params import load as load_params
from ptychostudy.params.compare import CompareParams
from ptychostudy.params.infer import InferParams
from ptychostudy.params.refine import RefineParams
from ptychostudy.params.train import TrainParams
from ptychostudy.stored import write_reconstruction
from ptychostudy.training import Trainer, cosine_schedule

ARM = layout.REFINED_ARM
SPLIT = "test"  # the patterns it is refined on (and scored on): the test split's, never their truth


def checkpoint_steps(cfg: Params, view: str) -> list[int]:
    """The step counts at which the curve is recorded (0 = the trained network; the last = the arm)."""
    steps = cfg.refine.steps[view]
    return sorted({round(f * steps) for f in cfg.refine.checkpoints})


def load(cfg: Params, obj: str, dose, view: str, view_dir, bundle):
    """(dose, view summary, test split with the view's groups, loaded bundle or None if skipped)."""
    obj, dose = cfg.object(obj), cfg.dose(dose)
    gridsize = cfg.view(view).gridsize
    summary = layout.read_view_summary(view_dir, dose, view)
    if summary["skipped"]:
        return dose, summary, None, None
    split = Split.read(layout.view_file(view_dir, SPLIT), gridsize, require_groups=gridsize > 1)
    loaded = load_bundle(bundle)
    d = loaded.description
    if (d.get("object"), d.get("dose"), d.get("view")) != (obj, dose, view):
        raise StudyError(f"{bundle}: the network of {d.get('object')}, dose {d.get('dose')}, view {d.get('view')}, not "
                         f"of {obj}, dose {dose}, view {view}")
    require_channels(loaded.model, split, str(bundle))
    if not np.isclose(loaded.intensity_scale, split.intensity_scale, rtol=1e-6) or not torch.allclose(
            loaded.probe, split.probe, rtol=1e-5, atol=1e-7):
        raise StudyError(f"{bundle}: its probe or intensity scale is not the test split's ({view_dir}): "
                         "refine a network with the data it was made for")
    return dose, summary, split, loaded


def refine(cfg: Params, dose: int, view: str, split: Split, loaded, *, progress: bool = True,
           on_checkpoint=None, seed: int | None = None, curve: bool = True) -> tuple[np.ndarray, np.ndarray, list[dict], float]:
    """Fine-tune ``loaded``'s network on ``split``'s patterns (no truth is read here).

    Returns (final object, loss per step, checkpoints [{steps, seconds, inference_seconds, loss}],
    refinement seconds). ``on_checkpoint(steps, canvas)`` receives each checkpoint's stitched object.
    ``seed`` (batch order) defaults to the arm's own, derived from ``refine.seed`` (the replicates pass others).
    Without ``curve`` only the last step's object is inferred (the replicates keep nothing else).
    """
    r, i = cfg.refine, cfg.infer
    device = setup_torch(r.threads, r.accelerator)
    total = r.steps[view]
    marks = checkpoint_steps(cfg, view) if curve else [total]
    seed = derive_seed(r.seed, dose, view) if seed is None else seed
    trainer = Trainer(cfg, split, loaded.model.arch, seed, device, net=loaded.model)
    trainer.net.train()
    opt = trainer.optimizer(r.learning_rate)
    sched = cosine_schedule(opt, total, r.learning_rate, r.learning_rate_final)
    batches = trainer.device_batches(total, r.batch_size, total)
    losses: list[float] = []
    points: list[dict] = []
    spent = 0.0  # seconds of refinement steps (checkpoint inference timed apart)
    canvas = None
    bar = tqdm(total=total, desc=f"refine dose {dose} {view}", unit="step", disable=not progress)
    for k in range(total + 1):
        if k in marks:
            start = time.perf_counter()
            canvas, _ = predict_and_stitch(trainer.net, split, i.stitch_fraction, i.phase_sync, i.batch, device)
            points.append({"steps": k, "seconds": spent, "inference_seconds": time.perf_counter() - start,
                           "loss": losses[-1] if losses else None})
            if on_checkpoint is not None:
                on_checkpoint(k, canvas)
        if k == total:
            break
        start = time.perf_counter()
        losses.append(float(trainer.step(opt, next(batches))))  # read at once: the step's wall time is timed
        sched.step()
        spent += time.perf_counter() - start
        bar.update()
    bar.close()
    return canvas, np.asarray(losses, dtype=np.float64), points, spent


def run(cfg: Params, obj: str, dose, view: str, view_dir, bundle, out, report, timing, *, progress: bool = True) -> dict:
    dose, summary, split, loaded = load(cfg, obj, dose, view, view_dir, bundle)
    obj = cfg.object(obj)
    out, report, timing = map(Path, (out, report, timing))
    r = cfg.refine
    record = {"object": obj, "dose": dose, "view": view, "phase": "F", "arm": ARM, "split": SPLIT,
              "solver": "the view's trained network fine-tuned self-supervised (Poisson deviance through the physics) "
                        "on the test split's own patterns; their truth is never read"}
    if summary["skipped"]:
        record.update(skipped=True, reason=summary["reason"])
        write_reconstruction(out, np.zeros((0, 0)), np.zeros(0), record)
        write_json(report, record)
        return record
    masks = regions(split, cfg.compare.scanned_threshold)
    scores: dict[int, dict] = {}

    def score(steps: int, canvas: np.ndarray) -> None:  # the curve: measured with the truth, never selected on
        s = score_arm(canvas, split.truth, masks, cfg.compare, ("featured",)).scores["featured"]
        frc = s["phase"]["frc50_resolution_px"]
        scores[steps] = {"phase_pearson_r": s["phase"]["pearson_r"],
                         "phase_frc50_resolution_px": frc,  # NaN (null in the record): never crossed
                         "amplitude_pearson_r": s["amplitude"]["pearson_r"]}

    recon, losses, points, seconds = refine(cfg, dose, view, split, loaded, progress=progress, on_checkpoint=score)
    # the tracked record holds what is reproducible (scores by step); the wall times go to the timing file
    curve = [{"steps": p["steps"], "loss": p["loss"], **scores[p["steps"]]} for p in points]
    data_path = layout.view_file(view_dir, SPLIT)
    record.update(
        skipped=False,
        data={"path": str(data_path), "sha256": sha256_file(data_path)},
        bundle={"path": str(bundle), "sha256": sha256_file(bundle)},
        positions=split.patterns, groups=int(split.groups.shape[0]),
        steps=len(losses),
        settings={"steps": r.steps[view], "batch_size": r.batch_size, "learning_rate": r.learning_rate,
                  "learning_rate_final": r.learning_rate_final, "seed": r.seed, "threads": r.threads,
                  "chosen_by": "fixed in params beforehand (training's schedule, half its steps); nothing selected "
                               "from scores"},
        cost_first=float(losses[0]), cost_final=float(losses[-1]),
        curve=curve,
        object_shape=list(recon.shape),
    )
    write_reconstruction(out, recon, losses, record)
    write_json(report, record)
    write_json(timing, {"object": obj, "dose": dose, "view": view, "arm": ARM, "refine_seconds": seconds,
                        "inference_seconds": points[-1]["inference_seconds"],
                        "ms_per_step": 1000 * seconds / max(len(losses), 1), "steps": len(losses),
                        "curve": [{"steps": p["steps"], "seconds": p["seconds"],
                                   "inference_seconds": p["inference_seconds"],
                                   "phase_pearson_r": scores[p["steps"]]["phase_pearson_r"]} for p in points],
                        "threads": r.threads, "accelerator": r.accelerator, "torch": torch.__version__})
    return {**record, "seconds": seconds}


def cli(args) -> None:
    """``ptychostudy refine``: one cell, then its curve on stdout."""
    r = run(load_params(args.params, RefineParams, TrainParams, InferParams, CompareParams), args.obj, args.dose, args.view, args.view_dir, args.bundle, args.out, args.report,
            args.timing, progress=not args.no_progress)
    if r["skipped"]:
        print(f"refine {r['object']} dose {r['dose']} {r['view']}: SKIPPED ({r['reason']})")
        return
    points = "; ".join(f"{p['steps']} steps r {p['phase_pearson_r']:.3f}" for p in r["curve"])
    print(f"refine {r['object']} dose {r['dose']} {r['view']}: {r['positions']} test patterns, loss {r['cost_first']:.4g} -> "
          f"{r['cost_final']:.4g} in {r['seconds']:.1f} s; phase r (featured): {points} -> {args.out}")


def build_parser(prog: str = "python -m ptychostudy.refine") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="the pinn_refined arm: the view's network fine-tuned on the test split's own patterns",
                       description="Test-time refinement (arm pinn_refined, params refine.*): the view's trained network "
                       "(--bundle) trained further, self-supervised through the physics (Poisson deviance of its "
                       "diffraction against the counts), on the view's test split's patterns, never their truth, for "
                       "refine.steps.<view> Adam steps under a cosine decay. At the fractions refine.checkpoints of the "
                       "steps the stitched object (infer.*) is scored (featured region) to record phase r against wall "
                       "time; the arm is always the last step's object. Writes the object and its loss per step (.npz, "
                       "no pickle, beside Phase F's), a record with the curve (JSON) and a timing file.")
    stage.add_cell(p, "folder with test.npz and view.json")
    p.add_argument("--bundle", type=Path, required=True, help="the view's trained network (wts.h5.zip)")
    stage.add_outputs(p)
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.refine") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
