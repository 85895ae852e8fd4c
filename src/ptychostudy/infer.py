"""The infer stage: each trained network of a cell reconstructs the view's test split (params ``infer``).

Arms ``pinn`` (the view's own network, gridsize > 1 views) and ``pinn_gs1`` (the baseline view's gridsize-1
network, applied to this view's patterns one by one): each bundle is loaded safely, each pattern predicted
once and the patches stitched with the ``infer`` settings (``inference.reconstruct_split``). The objects go
to one ``.npz`` per cell that Phase G (compare.py) scores and the product files (product.py) hold, so each
is computed once; its wall time goes to a timing file, kept out of DVC.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ptychostudy import StudyError, layout, stage
from ptychostudy.arms import NETWORK_ARMS, arms, baseline_view
from ptychostudy.bundle import load_bundle
from ptychostudy.dataset import Split, read_dataset
from ptychostudy.inference import reconstruct_split, setup_torch
from ptychostudy.io import sha256_file, write_json
from ptychostudy.npz import json_array, write_npz
from ptychostudy.params import Params
from ptychostudy.params import load as load_params
from ptychostudy.params.infer import InferParams
from ptychostudy.params.study import StudyParams

SPLIT = "test"


def run(cfg: Params, obj: str, dose, view: str, view_dir, models, out, timing, *, progress: bool = True) -> dict:
    # load: the view's test split and the cell's networks, all checked first
    obj, dose = cfg.object(obj), cfg.dose(dose)
    definition = cfg.view(view)
    out, timing = Path(out), Path(timing)
    summary = layout.read_view_summary(view_dir, dose, view)
    record = {"object": obj, "dose": dose, "view": view, "split": SPLIT}
    if summary["skipped"]:
        record.update(skipped=True, reason=summary["reason"], arms=[])
        write_npz(out, {"_metadata": json_array(record)})
        return record
    names = [name for name in arms(cfg, obj, view) if name in NETWORK_ARMS]
    paths = {"data": layout.view_file(view_dir, SPLIT)}
    if "pinn" in names:
        paths["pinn"] = layout.bundle_path(models, obj, dose, view)
    if "pinn_gs1" in names:
        paths["pinn_gs1"] = layout.bundle_path(models, obj, dose, baseline_view(cfg, obj))
    missing = [f"{path} (needed for the {name} arm)" for name, path in paths.items() if not Path(path).is_file()]
    if missing:
        raise StudyError("missing input: " + "; ".join(missing) + "; run the earlier stages first")
    data = read_dataset(paths["data"], require_groups=definition.gridsize > 1)
    splits = {"pinn_gs1": Split.from_arrays(data, 1)}
    if "pinn" in names:
        splits["pinn"] = Split.from_arrays(data, definition.gridsize)
    networks = {name: load_bundle(paths[name]) for name in names}
    # compute
    device = setup_torch(cfg.infer.threads, cfg.infer.accelerator)
    objects, seconds = {}, {}
    patterns = splits["pinn_gs1"].patterns
    bar = tqdm(total=patterns * len(networks), desc=f"infer {obj} dose {dose} {view}", unit="pattern", disable=not progress)
    for name, loaded in networks.items():
        objects[name], seconds[name] = reconstruct_split(loaded, splits[name], cfg.infer, device, bar)
    bar.close()
    # write
    record.update(skipped=False, arms=names, patterns=patterns,
                  inputs={k: {"path": str(p), "sha256": sha256_file(p)} for k, p in paths.items()})
    write_npz(out, {**{name: np.asarray(obj, dtype=np.complex64) for name, obj in objects.items()},
                    "_metadata": json_array(record)})
    write_json(timing, {"object": obj, "dose": dose, "view": view, "inference_seconds": seconds, "patterns": patterns,
                        "threads": cfg.infer.threads, "torch": torch.__version__})
    return {**record, "inference_seconds": seconds}


def cli(args) -> None:
    """``ptychostudy infer``: one cell's network objects, then one line."""
    r = run(load_params(args.params, StudyParams, InferParams), args.obj, args.dose, args.view, args.view_dir, args.models,
            args.out, args.timing, progress=not args.no_progress)
    if r["skipped"]:
        print(f"infer {r['object']} dose {r['dose']} {r['view']}: SKIPPED ({r['reason']})")
    else:
        print(f"infer {r['object']} dose {r['dose']} {r['view']}: " + ", ".join(
            f"{name} {s:.1f} s" for name, s in r["inference_seconds"].items()) + f" for {r['patterns']} patterns -> {args.out}")


def build_parser(prog: str = "python -m ptychostudy.infer") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="the networks of one dose × view reconstruct its test split (for Phase G and the products)",
                     description="Load the cell's networks (the view's own, gridsize > 1 views; the baseline view's "
                     "gridsize-1 one) safely from their bundles and reconstruct the view's test split with each, "
                     "settings params.yaml infer.* (central fraction stitched, phase sync, batch, threads). Writes "
                     "the stitched objects (.npz, no pickle) that Phase G scores and the product files hold, and a "
                     "timing file.")
    stage.add_cell(p, "folder with test.npz and view.json")
    p.add_argument("--models", type=Path, required=True, help="artefact folder of the bundles (dose_<d>/<view>/wts.h5.zip)")
    p.add_argument("--out", type=Path, required=True, help="the networks' objects (.npz) to write")
    p.add_argument("--timing", type=Path, required=True, help="inference wall times (JSON) to write; kept out of DVC")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.infer") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
