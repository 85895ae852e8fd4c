"""The networks' inference before and after a change of the stitching or of the forwards (the study's own data).

    python bench/inference_speed.py WORKSPACE [--old-rev 4a5d78d] [--cells run1084:1000:baseline ...] [--threads 1 2]

For each cell, the workspace's trained network (``data/models``) reconstructs the test split twice per thread count:
with the revision ``--old-rev``'s path (its ``stitch.py`` read from git, and its loop of one forward per pattern) and
with today's ``inference.predict_and_stitch``; wall seconds of each and the largest difference of the two objects
after one global phase (the phase synchronisation leaves the object's absolute phase free). Run it alone on the
machine. Prints a table and writes bench/results.json "inference_speed".
"""

from __future__ import annotations

import argparse
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


def old_stitch(rev: str):
    """The revision's stitch module (it imports only ``ptychostudy.physics`` functions that still exist)."""
    text = subprocess.run(["git", "show", f"{rev}:src/ptychostudy/stitch.py"], cwd=HERE.parent, check=True,
                          capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_stitch.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("old_stitch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@torch.no_grad()
def old_predict(stitch_module, net, split, fraction: float, sync: bool, batch: int):
    """The revision's ``predict_and_stitch``: one forward per pattern, of the first group that holds it."""
    from ptychostudy import physics

    net.eval()
    size = net.arch.size
    patterns, choice = split.eval_groups()
    out = torch.zeros((len(patterns), size, size), dtype=torch.complex64)
    for start in range(0, len(patterns), batch):
        sel = choice[start:start + batch]
        groups = split.groups[sel[:, 0]]
        patches = net(split.amplitude[torch.from_numpy(groups)], split.offsets(groups))
        out[start:start + batch] = patches[torch.arange(len(sel)), torch.from_numpy(sel[:, 1])]
    support = physics.central_support(size, fraction)
    canvas, _ = stitch_module.stitch(out, split.positions[patterns, 0], split.positions[patterns, 1], split.truth.shape,
                                     support, sync)
    return canvas.numpy()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workspace", type=Path, help="a study workspace with data/views and data/models")
    p.add_argument("--old-rev", default="4a5d78d", help="the git revision to compare with (default: before the change)")
    p.add_argument("--cells", nargs="+", default=["run1084:1000:baseline", "run1084:1000:dense"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    args = p.parse_args(argv)
    from machine import machine, save_result
    from ptychostudy.bundle import load_bundle
    from ptychostudy.dataset import Split
    from ptychostudy.inference import predict_and_stitch
    from ptychostudy.params import load as load_params
    from ptychostudy.params.infer import InferParams
    from ptychostudy.params.views import ViewsParams

    cfg = load_params(args.workspace / "params.yaml", InferParams, ViewsParams)
    old = old_stitch(args.old_rev)
    rows = []
    for cell in args.cells:
        obj, dose, view = cell.split(":")
        gridsize = cfg.view(view).gridsize
        split = Split.read(args.workspace / f"data/views/{obj}/dose_{dose}/{view}/test.npz", gridsize,
                           require_groups=gridsize > 1)
        net = load_bundle(args.workspace / f"data/models/{obj}/dose_{dose}/{view}/wts.h5.zip").model
        for threads in args.threads:
            torch.set_num_threads(threads)
            start = time.perf_counter()
            before = old_predict(old, net, split, cfg.infer.stitch_fraction, cfg.infer.phase_sync, cfg.infer.batch)
            old_seconds = time.perf_counter() - start
            start = time.perf_counter()
            after, _ = predict_and_stitch(net, split, cfg.infer.stitch_fraction, cfg.infer.phase_sync, cfg.infer.batch)
            new_seconds = time.perf_counter() - start
            covered = np.abs(before) > 0
            turn = np.vdot(after[covered], before[covered])
            turn = turn / abs(turn) if abs(turn) > 0 else 1.0
            rows.append({"cell": cell, "patterns": split.patterns, "threads": threads, "old_seconds": old_seconds,
                         "new_seconds": new_seconds, "speedup": old_seconds / new_seconds,
                         "max_abs_difference": float(np.abs(after[covered] * turn - before[covered]).max())})
            r = rows[-1]
            print(f"{cell} ({r['patterns']} patterns), {threads} thread(s): {args.old_rev} {old_seconds:.2f} s, today "
                  f"{new_seconds:.2f} s ({r['speedup']:.2f}x); largest difference {r['max_abs_difference']:.1e}", flush=True)
    save_result("inference_speed", {"machine": machine(), "old_rev": args.old_rev, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
