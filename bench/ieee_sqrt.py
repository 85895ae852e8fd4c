"""What pty-chi's IEEE square root costs and changes (``ptychi_solver.IeeeSqrt``), on the study's own data.

    python bench/ieee_sqrt.py WORKSPACE [--epochs 10] [--rounds 2] [--cells run1084:1000:dense ...]

For each cell, the test split is reconstructed by LSQML (the configured setting, and the Poisson noise model with TV
and momentum) for ``--epochs`` epochs with torch's own ``sqrt`` in pty-chi (``ptychi_solver.EXACT_SQRT`` off) and with
the IEEE root (on), alternating for ``--rounds``, in this process on one torch thread; it prints the least seconds of
each, their ratio, how many of the float32 roots pty-chi took were not the IEEE root with torch's own (a dispatch-mode
count in a separate epoch), and how far the two objects lie apart (the largest |difference| and the phase r between
them after those epochs). Writes bench/results.json "ieee_sqrt". Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import ptychostudy  # noqa: E402,F401  (first: its numerical pins must precede numpy and torch)


def load_split(workspace: Path, obj: str, dose: int, view: str):
    from ptychostudy import layout
    from ptychostudy.dataset import Split

    return Split.read(layout.view_file(layout.view_dir(obj, dose, view, workspace), "test"), 1)


def inexact_roots(split, setting, batch_size: int) -> tuple[int, int]:
    """(float32 roots pty-chi takes in one epoch, how many of them are not the IEEE root) with torch's own sqrt."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from ptychostudy.ptychi_solver import build_task

    counts = [0, 0]

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is torch.ops.aten.sqrt.default and args[0].dtype == torch.float32:
                counts[0] += out.numel()
                counts[1] += int(np.count_nonzero(out.detach().numpy() != np.sqrt(args[0].detach().numpy())))
            return out

    task = build_task(setting, batch_size, split, 1, 7)
    with Count():
        task.run(n_epochs=1)
    return counts[0], counts[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workspace", type=Path, help="a study workspace with the views")
    p.add_argument("--epochs", type=int, default=10, help="pty-chi epochs per cell, setting and version")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds (torch's root, IEEE root) per setting")
    p.add_argument("--cells", nargs="*", default=["run1084:1000:baseline", "run1084:1000:dense", "run1084:100000:dense"],
                   help="OBJECT:DOSE:VIEW")
    args = p.parse_args(argv)
    from kernel_speed import alternate, digest  # bench/: the same alternation and digest as the kernels' bench
    from machine import machine, save_result

    from ptychostudy import ptychi_solver
    from ptychostudy.params import load as load_params
    from ptychostudy.params.reconstruct import PtychiSetting, ReconstructParams

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    batch = load_params(args.workspace / "params.yaml", ReconstructParams).reconstruct.batch_size
    rows = []
    for cell in args.cells:
        obj, dose, view = cell.split(":")
        split = load_split(args.workspace, obj, int(dose), view)
        for setting in (PtychiSetting(noise_model="gaussian", tv_weight=0.0, momentum=0.0),
                        PtychiSetting(noise_model="poisson", tv_weight=1.0, momentum=0.5)):
            ptychi_solver.EXACT_SQRT = False
            roots, inexact = inexact_roots(split, setting, batch)
            objects = {}

            def run(exact, setting=setting, split=split, objects=objects):
                ptychi_solver.EXACT_SQRT = exact
                start = time.perf_counter()
                recon, _, _ = ptychi_solver.reconstruct(setting, batch, split, args.epochs, 7, progress=False)
                objects[exact] = recon
                return {"run_s": time.perf_counter() - start, "object": digest([recon])}

            got = alternate(args.rounds, {"torch": False, "ieee": True}, run)  # the first round pays the warm-up
            ptychi_solver.EXACT_SQRT = True
            seconds = {name: got[name]["run_s"] for name in got}
            a, b = objects[False], objects[True]
            phase_r = float(np.corrcoef(np.angle(a).ravel(), np.angle(b).ravel())[0, 1])
            row = {"cell": cell, "setting": f"{setting.noise_model}, TV {setting.tv_weight}, momentum {setting.momentum}",
                   "epochs": args.epochs, "seconds_torch_sqrt": seconds["torch"], "seconds_ieee_sqrt": seconds["ieee"],
                   "ratio": seconds["ieee"] / seconds["torch"], "roots_per_epoch": roots,
                   "inexact_roots_per_epoch": inexact,
                   "objects_equal": got["torch"]["object"] == got["ieee"]["object"] != "differs between rounds",
                   "max_abs_difference": float(np.abs(a - b).max()), "phase_r_between": phase_r}
            rows.append(row)
            print(f"{cell} {row['setting']}: {args.epochs} epochs {seconds['torch']:.2f} s (torch's sqrt) -> "
                  f"{seconds['ieee']:.2f} s (IEEE) = {row['ratio']:.3f}x; {inexact:,} of {roots:,} roots an epoch "
                  f"not IEEE; objects max |diff| {row['max_abs_difference']:.2e}, phase r between {phase_r:.6f}",
                  flush=True)
    save_result("ieee_sqrt", {"machine": machine(), "threads": 1, "rounds": args.rounds, "cells": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
