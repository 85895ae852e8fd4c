"""Phase F (``reconstruct``): pty-chi's LSQML on each view's test split, in two arms.

* ``ptychi`` — as the original study configured it (``reconstruct.*``: Gaussian noise model, no
  regulariser): a reference point.
* ``ptychi_tuned`` — the noise model, total-variation weight, momentum and epochs the tune stage
  selected on the view's *train* split (``reports/tuning``); batch size, seed and threads from
  ``reconstruct.*``.

Same patterns, same known probe and same positions as the networks see; a neutral initial
object (ones), positions and probe fixed, seeded, a pinned thread count. The object is
reconstructed directly on the ground truth's pixel grid, so Phase G needs no guessing:

* pty-chi's forward model uses the unnormalised FFT, ours the orthonormal one, so the
  probe handed to pty-chi is ``s · P / N`` (s: the data set's dose scale, P: the unit-power
  probe, N: the pattern side); its predicted counts then equal ``physics.expected_intensity``.
* pty-chi's Fourier-shift patch extractor cuts the patch centred at index ``p`` from
  ``p − (N − 1)/2``; ours at centre ``c`` from ``c − N/2``. With the position origin
  ``SPECIFIED`` as (H/2 − ½, W/2 − ½) and positions ``c − (H/2, W/2)``, both cut the same
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
from ptychostudy.ptychi_solver import reconstruct, settings_of
from ptychostudy.stored import write_reconstruction

SPLIT = "test"
ARMS = ("ptychi", "ptychi_tuned")  # the pty-chi arms of Phase F (layout.ITERATIVE_ARMS lists all)


def run(cfg: Params, dose, view: str, view_dir, out, report, timing, *, arm: str = "ptychi", tuning=None,
        progress: bool = True) -> dict:
    # load: every input read and checked first
    if arm not in ARMS:
        raise StudyError(f"unknown pty-chi arm {arm!r}; choose one of {', '.join(ARMS)}")
    dose = cfg.dose(dose)
    definition = cfg.view(view)
    out, report, timing = map(Path, (out, report, timing))
    summary = layout.read_view_summary(view_dir, dose, view)
    record = {"dose": dose, "view": view, "phase": "F", "arm": arm, "split": SPLIT, "solver": "pty-chi LSQML"}
    if summary["skipped"]:
        record.update(skipped=True, reason=summary["reason"])
        write_reconstruction(out, np.zeros((0, 0)), np.zeros(0), record)
        write_json(report, record)
        return record
    setting, epochs, chosen = settings_of(cfg, arm, dose, view, tuning)
    data_path = layout.view_file(view_dir, SPLIT)
    split = Split.read(data_path, 1, require_groups=definition.gridsize > 1)
    # compute
    r = cfg.reconstruct
    torch.set_num_threads(r.threads)
    seed = derive_seed(r.seed, dose, view) % (2**31)
    start = time.perf_counter()
    obj, cost, _ = reconstruct(setting, r.batch_size, split, epochs, seed, progress=progress,
                            desc=f"{arm} dose {dose} {view}")
    seconds = time.perf_counter() - start
    # write
    record.update(
        skipped=False,
        ptychi_version=importlib.metadata.version("ptychi"),
        data={"path": str(data_path), "sha256": sha256_file(data_path)},
        positions=split.patterns,
        epochs=epochs,
        settings={"noise_model": setting.noise_model, "tv_weight": setting.tv_weight, "momentum": setting.momentum,
                  "batch_size": r.batch_size, "seed": r.seed, "threads": r.threads, **chosen},
        cost_first=float(cost[0]),
        cost_final=float(cost[-1]),
        object_shape=list(obj.shape),
    )
    write_reconstruction(out, obj, cost, record)
    write_json(report, record)
    write_json(timing, {"dose": dose, "view": view, "arm": arm, "reconstruct_seconds": seconds, "epochs": epochs,
                        "positions": record["positions"], "threads": r.threads, "torch": torch.__version__})
    return {**record, "seconds": seconds}


def cli(args) -> None:
    """``ptychostudy reconstruct``: one arm of one cell, then its headline on stdout."""
    r = run(load_params(args.params, ReconstructParams), args.dose, args.view, args.view_dir, args.out, args.report, args.timing,
            arm=args.arm, tuning=args.tuning, progress=not args.no_progress)
    if r["skipped"]:
        print(f"reconstruct {r['arm']} dose {r['dose']} {r['view']}: SKIPPED ({r['reason']})")
    else:
        s = r["settings"]
        print(f"reconstruct {r['arm']} dose {r['dose']} {r['view']}: {r['positions']} positions, {r['epochs']} LSQML "
              f"epochs ({s['noise_model']}, TV {s['tv_weight']:g}, momentum {s['momentum']:g}) in {r['seconds']:.1f} s, "
              f"cost {r['cost_first']:.4g} -> {r['cost_final']:.4g} -> {args.out}")


def build_parser(prog: str = "python -m ptychostudy.reconstruct") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="Phase F: pty-chi LSQML on the test split of one dose × view (one arm)",
                       description="Phase F: reconstruct the view's test split with pty-chi's LSQML: all positions, "
                       "initial object ones, the known probe, positions fixed, seeded, reconstruct.threads threads, the "
                       "object on the ground truth's pixel grid. --arm ptychi: as the original study configured it "
                       "(reconstruct.*); --arm ptychi_tuned: noise model, TV weight, momentum and epochs from --tuning "
                       "(the tune stage's selection on the train split). Writes the object and its cost per epoch "
                       "(.npz, no pickle), a record (JSON) and a timing file.")
    stage.add_cell(p, "folder with test.npz and view.json")
    p.add_argument("--arm", choices=("ptychi", "ptychi_tuned"), default="ptychi", help="which pty-chi arm (default: ptychi)")
    p.add_argument("--tuning", type=Path, help="the tune stage's selection (JSON; required by --arm ptychi_tuned)")
    stage.add_outputs(p)
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.reconstruct") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
