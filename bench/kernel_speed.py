"""Two kernels before and after a change, on the study's own data: ``physics.place_patches`` (the networks) and
pty-chi's complex exp (``ptychi_solver.TorchWithPolarExp``).

    python bench/kernel_speed.py WORKSPACE [--old-rev 0fb0d86] [--steps 40] [--epochs 10] [--rounds 2]
                                 [--cells run1084:1000:dense ...]

``place_patches`` puts each member's feature map on the network's common frame (``model.place_members``) in every
forward pass, and stitches the patches of an inference. For each cell this bench runs, in this process on one torch
thread, ``--steps`` Phase E training steps of the view's network (fresh, seeded, as the train stage builds it) and
one inference of the test split by the workspace's trained network (``data/models``), with the revision
``--old-rev``'s ``place_patches`` (its physics.py read from git) and with today's, alternating for ``--rounds``; it prints the seconds of each,
their ratio, and whether the trained weights and the inferred objects agree bit for bit. Run it alone on the machine.

For pty-chi, each cell's test split is reconstructed by LSQML (the configured setting, and the Poisson noise model
with TV and momentum) for ``--epochs`` epochs with torch's complex exp in pty-chi's Fourier shifts and with
``torch.polar`` (``ptychi_solver.POLAR_EXP``); seconds, ratio, and whether object and cost agree byte for byte.
Writes bench/results.json "kernel_speed".
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def old_place(rev: str):
    """The revision's ``place_patches`` (its physics.py imports nothing of ptychostudy)."""
    text = subprocess.run(["git", "show", f"{rev}:src/ptychostudy/physics.py"], cwd=HERE.parent, check=True,
                          capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_physics.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("old_physics", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.place_patches


def digest(arrays) -> str:
    """A short hash of the bytes of tensors or arrays (equal hashes: equal bit for bit)."""
    h = hashlib.sha256()
    for a in arrays:
        h.update((a.detach().contiguous().numpy() if isinstance(a, torch.Tensor) else np.ascontiguousarray(a)).tobytes())
    return h.hexdigest()[:16]


def measure(workspace: Path, obj: str, dose: int, view: str, steps: int) -> dict:
    from ptychostudy import inference, layout
    from ptychostudy.bundle import load_bundle
    from ptychostudy.dataset import Split
    from ptychostudy.params import load as load_params
    from ptychostudy.params.infer import InferParams
    from ptychostudy.params.train import TrainParams, architecture
    from ptychostudy.params.views import ViewsParams
    from ptychostudy.training import Trainer

    cfg = load_params(workspace / "params.yaml", TrainParams, ViewsParams, InferParams)
    gridsize = cfg.view(view).gridsize
    view_dir = workspace / "data" / "views" / obj / f"dose_{dose}" / view
    train = Split.read(layout.view_file(view_dir, "train"), gridsize)
    trainer = Trainer(cfg, train, architecture(cfg, view, dose), 0, torch.device("cpu"))
    opt = trainer.optimizer()
    batches = trainer.device_batches(steps, cfg.train.batch_size, cfg.train.steps_per_epoch)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step(opt, next(batches))
    train_s = time.perf_counter() - start
    weights = digest(v for _, v in sorted(trainer.net.state_dict().items()))
    test = Split.read(layout.view_file(view_dir, "test"), gridsize, require_groups=gridsize > 1)
    model = load_bundle(workspace / "data" / "models" / obj / f"dose_{dose}" / view / "wts.h5.zip").model
    i = cfg.infer
    start = time.perf_counter()
    canvas, _ = inference.predict_and_stitch(model, test, i.stitch_fraction, i.phase_sync, i.batch)
    infer_s = time.perf_counter() - start
    return {"train_s": train_s, "infer_s": infer_s, "weights": weights, "object": digest([canvas])}


def ptychi_seconds(workspace: Path, obj: str, dose: int, view: str, setting, epochs: int) -> tuple[float, str]:
    from ptychostudy import layout
    from ptychostudy.dataset import Split
    from ptychostudy.params import load as load_params
    from ptychostudy.params.reconstruct import ReconstructParams
    from ptychostudy.ptychi_solver import reconstruct

    r = load_params(workspace / "params.yaml", ReconstructParams).reconstruct
    split = Split.read(layout.view_file(workspace / "data" / "views" / obj / f"dose_{dose}" / view, "test"), 1)
    start = time.perf_counter()
    recon, cost, _ = reconstruct(setting, r.batch_size, split, epochs, 7, progress=False)
    return time.perf_counter() - start, digest([recon, cost])


def alternate(rounds: int, versions: dict, run) -> dict:
    """Each version run ``rounds`` times, alternating: the least seconds, and the digest (or that it varied)."""
    got: dict[str, dict] = {}
    for _ in range(rounds):  # the first run pays the warm-up
        for name, version in versions.items():
            m = run(version)
            best = got.setdefault(name, dict(m))
            for key in m:
                if key.endswith("_s"):
                    best[key] = min(best[key], m[key])
                elif m[key] != best[key]:
                    best[key] = "differs between rounds"
    return got


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workspace", type=Path, help="a study workspace with views and trained networks")
    p.add_argument("--old-rev", default="0fb0d86", help="the revision whose place_patches is the baseline")
    p.add_argument("--steps", type=int, default=40, help="training steps per cell and version")
    p.add_argument("--epochs", type=int, default=10, help="pty-chi epochs per cell, setting and version")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds (old, new) per cell")
    p.add_argument("--cells", nargs="*", default=["run1084:1000:baseline", "run1084:1000:dense", "run1084:1000:sparse"],
                   help="OBJECT:DOSE:VIEW")
    args = p.parse_args(argv)
    from machine import machine, save_result

    from ptychostudy import physics

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    versions = {"old": old_place(args.old_rev), "new": physics.place_patches}
    from ptychostudy import ptychi_solver
    from ptychostudy.params.reconstruct import PtychiSetting

    def place(function, obj, dose, view):
        physics.place_patches = function
        try:
            return measure(args.workspace, obj, int(dose), view, args.steps)
        finally:
            physics.place_patches = versions["new"]

    ptychi_solver._ptychi()  # pty-chi imported (and its image_proc given the polar exp)
    from ptychi import image_proc

    def ptychi(polar, obj, dose, view, setting):
        ptychi_solver.POLAR_EXP = polar  # off: the solver leaves image_proc's torch as set here
        image_proc.torch = ptychi_solver.TorchWithPolarExp() if polar else torch
        try:
            seconds, result = ptychi_seconds(args.workspace, obj, int(dose), view, setting, args.epochs)
            return {"ptychi_s": seconds, "result": result}
        finally:
            ptychi_solver.POLAR_EXP = True
            image_proc.torch = ptychi_solver.TorchWithPolarExp()

    rows, ok = [], True
    for cell in args.cells:
        obj, dose, view = cell.split(":")
        got = alternate(args.rounds, versions, lambda f: place(f, obj, dose, view))
        row = {"cell": cell, "steps": args.steps,
               **{f"{k}_{name}": got[name][k] for name in versions for k in ("train_s", "infer_s")},
               "train_speedup": got["old"]["train_s"] / got["new"]["train_s"],
               "infer_speedup": got["old"]["infer_s"] / got["new"]["infer_s"],
               "same_weights": got["old"]["weights"] == got["new"]["weights"] != "differs between rounds",
               "same_object": got["old"]["object"] == got["new"]["object"] != "differs between rounds", "ptychi": []}
        print(f"{cell}: {args.steps} training steps {row['train_s_old']:.2f} -> {row['train_s_new']:.2f} s "
              f"({row['train_speedup']:.2f}x), inference {row['infer_s_old']:.2f} -> {row['infer_s_new']:.2f} s "
              f"({row['infer_speedup']:.2f}x); same weights {row['same_weights']}, same object {row['same_object']}",
              flush=True)
        ok &= row["same_weights"] and row["same_object"]
        for setting in (PtychiSetting(noise_model="gaussian", tv_weight=0.0, momentum=0.0),
                        PtychiSetting(noise_model="poisson", tv_weight=1.0, momentum=0.5)):
            got = alternate(args.rounds, {"complex_exp": False, "polar": True},
                            lambda polar: ptychi(polar, obj, dose, view, setting))
            entry = {"setting": f"{setting.noise_model}, TV {setting.tv_weight}, momentum {setting.momentum}",
                     "epochs": args.epochs, "seconds_complex_exp": got["complex_exp"]["ptychi_s"],
                     "seconds_polar": got["polar"]["ptychi_s"],
                     "speedup": got["complex_exp"]["ptychi_s"] / got["polar"]["ptychi_s"],
                     "same_bytes": got["complex_exp"]["result"] == got["polar"]["result"] != "differs between rounds"}
            row["ptychi"].append(entry)
            ok &= entry["same_bytes"]
            print(f"{cell}: pty-chi {entry['setting']}, {args.epochs} epochs {entry['seconds_complex_exp']:.2f} -> "
                  f"{entry['seconds_polar']:.2f} s ({entry['speedup']:.2f}x); same bytes {entry['same_bytes']}", flush=True)
        rows.append(row)
    save_result("kernel_speed", {"machine": machine(), "old_rev": args.old_rev, "threads": 1, "rounds": args.rounds,
                                 "cells": rows})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
