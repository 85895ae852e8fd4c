"""Phase F (``reconstruct``): pty-chi's LSQML on each view's test split, in three arms.

* ``ptychi`` — as the original study configured it (``reconstruct.*``: Gaussian noise model, no
  regulariser): a reference point.
* ``ptychi_tuned`` — the noise model, total-variation weight, momentum and epochs the tune stage
  selected on the view's *train* split (``reports/tuning``) under the calibration protocol (the train
  region's truth); batch size, seed and threads from ``reconstruct.*``.
* ``ptychi_heldout`` — the same under the no-calibration protocol (held-out patterns' likelihood, no
  truth), written by the same stage: one run serves both where the two picks share a setting.

Same patterns, same known probe and same positions as the networks see; a neutral initial
object (ones), positions and probe fixed, seeded, a pinned thread count. The object is
reconstructed directly on the ground truth's pixel grid, so Phase G needs no guessing:

* pty-chi's forward model uses the unnormalised FFT, ours the orthonormal one, so the
  probe handed to pty-chi is ``s · P / N`` (s: the data set's dose scale, P: the unit-power
  probe, N: the pattern side); its predicted counts then equal ``physics.expected_intensity``.
* pty-chi's Fourier-shift patch extractor cuts the patch centred at index ``p`` from
  ``p − (N − 1)/2``; ours at centre ``c`` from ``c − N/2``. With the position origin
  ``SPECIFIED`` as (⌊H/2⌋ − ½, ⌊W/2⌋ − ½) and positions ``c − (⌊H/2⌋, ⌊W/2⌋)``, both cut the same
  pixels. ``tests/test_reconstruct.py`` checks both facts against ``physics``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ptychostudy import StudyError, layout, stage
from ptychostudy.dataset import Split
from ptychostudy.io import derive_seed, sha256_file, write_json
from ptychostudy.params import Params
from ptychostudy.params import load as load_params
from ptychostudy.params.reconstruct import ReconstructParams
from ptychostudy.params.warmstart import WarmstartParams, marks
from ptychostudy.ptychi_solver import reconstruct, settings_of
from ptychostudy.stored import write_curve, write_reconstruction

SPLIT = "test"
ARMS = ("ptychi", "ptychi_tuned", "ptychi_heldout")  # the pty-chi arms of Phase F (layout.ITERATIVE_ARMS lists all)


def _record(cfg: Params, arm: str, setting, epochs: int, chosen: dict, cost: np.ndarray, obj: np.ndarray) -> dict:
    r = cfg.reconstruct
    return {"arm": arm, "epochs": epochs,
            "settings": {"noise_model": setting.noise_model, "tv_weight": setting.tv_weight, "momentum": setting.momentum,
                         "batch_size": r.batch_size, "seed": r.seed, "threads": r.threads, **chosen},
            "cost_first": float(cost[0]), "cost_final": float(cost[epochs - 1]), "object_shape": list(obj.shape)}


def run(cfg: Params, obj: str, dose, view: str, view_dir, out, report, timing, *, arm: str = "ptychi", tuning=None,
        heldout_out=None, heldout_report=None, curve_out=None, progress: bool = True) -> dict:
    """One pty-chi arm of one cell; with ``arm`` ptychi_tuned and ``heldout_out`` also the arm ptychi_heldout (the
    no-calibration protocol's pick): one run serves both where the picks share a setting (the earlier epoch count's
    object taken on the way, as a run stopping there gives it). With ``curve_out`` (ptychi_tuned) the run's objects
    at the fractions ``warmstart.checkpoints`` of its epochs go there: the blank start's curve the warmstart stage
    scores (its network-started twin runs there), so that no stage runs this arm twice."""
    # load: every input read and checked first
    if arm not in ARMS[:2]:
        raise StudyError(f"unknown pty-chi arm {arm!r}; choose ptychi or ptychi_tuned (which writes ptychi_heldout too)")
    if (heldout_out is None) != (heldout_report is None) or (heldout_out is not None and arm != "ptychi_tuned"):
        raise StudyError("reconstruct: --heldout-out and --heldout-report go together, with --arm ptychi_tuned")
    if curve_out is not None and arm != "ptychi_tuned":
        raise StudyError("reconstruct: --curve-out goes with --arm ptychi_tuned (the warmstart stage's blank start)")
    obj, dose = cfg.object(obj), cfg.dose(dose)
    definition = cfg.view(view)
    paths = {arm: (Path(out), Path(report))}
    if heldout_out is not None:
        paths["ptychi_heldout"] = (Path(heldout_out), Path(heldout_report))
    timing = Path(timing)
    summary = layout.read_view_summary(view_dir, dose, view)
    record = {"object": obj, "dose": dose, "view": view, "phase": "F", "split": SPLIT, "solver": "pty-chi LSQML"}
    if summary["skipped"]:
        record.update(skipped=True, reason=summary["reason"])
        for name, (arm_out, arm_report) in paths.items():
            write_reconstruction(arm_out, np.zeros((0, 0)), np.zeros(0), {**record, "arm": name})
            write_json(arm_report, {**record, "arm": name})
        if curve_out is not None:
            write_curve(curve_out, np.zeros(0), np.zeros((0, 0, 0)), {**record, "arm": arm})
        return {**record, "arms": list(paths)}
    settings = {name: settings_of(cfg, name, dose, view, tuning) for name in paths}
    curve_marks = [] if curve_out is None else [m for m in marks(settings[arm][1], cfg.warmstart.checkpoints) if m > 0]
    data_path = layout.view_file(view_dir, SPLIT)
    split = Split.read(data_path, 1, require_groups=definition.gridsize > 1)
    # compute: one run per distinct setting, as long as the longest arm on it
    r = cfg.reconstruct
    torch.set_num_threads(r.threads)
    seed = derive_seed(r.seed, dose, view) % (2**31)
    results, seconds, curve = {}, {}, {}
    for setting in dict.fromkeys(s for s, _, _ in settings.values()):
        names = [name for name, (s, _, _) in settings.items() if s == setting]
        epochs = max(settings[name][1] for name in names)
        start = time.perf_counter()
        taken = {}
        kept = curve_marks if arm in names else []

        def checkpoint(epoch, obj, names=names, taken=taken, start=start, kept=kept):
            now = time.perf_counter() - start
            for name in names:
                if settings[name][1] == epoch:
                    taken[name] = obj
                    seconds[name] = now
            if epoch in kept:
                curve[epoch] = (np.array(obj, dtype=np.complex64), now)

        recon, cost, _ = reconstruct(setting, r.batch_size, split, epochs, seed, progress=progress,
                                   desc=f"{'/'.join(names)} {obj} dose {dose} {view}",
                                   checkpoints=sorted({settings[name][1] for name in names} | set(kept)),
                                   on_checkpoint=checkpoint)
        for name in names:
            results[name] = (taken.get(name, recon), cost)
            seconds.setdefault(name, time.perf_counter() - start)
    # write
    record.update(skipped=False, ptychi_version=importlib.metadata.version("ptychi"),
                  data={"path": str(data_path), "sha256": sha256_file(data_path)}, positions=split.patterns)
    written = {}
    for name, (arm_out, arm_report) in paths.items():
        setting, epochs, chosen = settings[name]
        recon, cost = results[name]
        shared = [other for other in paths if other != name and settings[other][0] == setting]
        rec = {**record, **_record(cfg, name, setting, epochs, chosen, cost, recon)}
        if shared:
            rec["shared_run"] = f"one LSQML run for {', '.join(sorted([name, *shared]))} (the same setting)"
        write_reconstruction(arm_out, recon, cost[:epochs], rec)
        write_json(arm_report, rec)
        written[name] = rec
    timed = {}
    if curve_out is not None:
        write_curve(curve_out, curve_marks, np.stack([curve[m][0] for m in curve_marks]),
                    {**record, "arm": arm, "setting": written[arm]["settings"], "epochs": settings[arm][1],
                     "checkpoints": list(cfg.warmstart.checkpoints), "seed": r.seed})
        timed["curve_seconds"] = {arm: [{"epochs": m, "seconds": curve[m][1]} for m in curve_marks]}
    write_json(timing, {"object": obj, "dose": dose, "view": view, "arms": list(paths), "reconstruct_seconds": seconds,
                        "epochs": {name: settings[name][1] for name in paths}, "positions": split.patterns,
                        "threads": r.threads, "torch": torch.__version__, **timed})
    return {**record, "arms": list(paths), "records": written, "seconds": seconds}


def cli(args) -> None:
    """``ptychostudy reconstruct``: one arm of one cell (two with --heldout-out), then a headline each on stdout."""
    r = run(load_params(args.params, ReconstructParams, WarmstartParams), args.obj, args.dose, args.view, args.view_dir, args.out, args.report,
            args.timing, arm=args.arm, tuning=args.tuning, heldout_out=args.heldout_out, heldout_report=args.heldout_report,
            curve_out=args.curve_out, progress=not args.no_progress)
    if r["skipped"]:
        print(f"reconstruct {', '.join(r['arms'])} {r['object']} dose {r['dose']} {r['view']}: SKIPPED ({r['reason']})")
        return
    for name, rec in r["records"].items():
        s = rec["settings"]
        print(f"reconstruct {name} {r['object']} dose {r['dose']} {r['view']}: {r['positions']} positions, {rec['epochs']} LSQML "
              f"epochs ({s['noise_model']}, TV {s['tv_weight']:g}, momentum {s['momentum']:g}) in {r['seconds'][name]:.1f} s, "
              f"cost {rec['cost_first']:.4g} -> {rec['cost_final']:.4g}")


def build_parser(prog: str = "python -m ptychostudy.reconstruct") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="Phase F: pty-chi LSQML on the test split of one dose × view (one arm)",
                       description="Phase F: reconstruct the view's test split with pty-chi's LSQML: all positions, "
                       "initial object ones, the known probe, positions fixed, seeded, reconstruct.threads threads, the "
                       "object on the ground truth's pixel grid. --arm ptychi: as the original study configured it "
                       "(reconstruct.*); --arm ptychi_tuned: noise model, TV weight, momentum and epochs from --tuning "
                       "(the tune stage's calibration pick on the train split; with --heldout-out also ptychi_heldout, "
                       "the no-calibration pick). Writes the object and its cost per epoch "
                       "(.npz, no pickle), a record (JSON) and a timing file.")
    stage.add_cell(p, "folder with test.npz and view.json")
    p.add_argument("--arm", choices=("ptychi", "ptychi_tuned"), default="ptychi", help="which pty-chi arm (default: ptychi)")
    p.add_argument("--tuning", type=Path, help="the tune stage's selection (JSON; required by --arm ptychi_tuned)")
    stage.add_outputs(p)
    p.add_argument("--heldout-out", type=Path, help="with --arm ptychi_tuned: the arm ptychi_heldout's reconstruction "
                   "(the no-calibration protocol's pick; one run serves both where the picks share a setting)")
    p.add_argument("--heldout-report", type=Path, help="the arm ptychi_heldout's record (JSON)")
    p.add_argument("--curve-out", type=Path, help="with --arm ptychi_tuned: its objects at the fractions "
                   "warmstart.checkpoints of its epochs (.npz): the blank start the warmstart stage scores")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.reconstruct") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
