"""Network design experiments, selected on the TRAIN split only (issue 15.1).

A design (``--set train.KEY=VALUE``) is trained on a view's whole train split exactly as Phase E
trains (physics loss, no truth) and scored by the study's one scoring path (``metrics.score_arm``:
phase r, phase spread ratio and phase FRC½ resolution in the featured region) on a validation set
made from the train region alone (``rotated_validation``): its object turned by 90° and simulated
anew, structure in an orientation the network has not seen, as the test region's is. The test split
is never read. (The first recorded run held out the right half of the train region instead; that
half holds the same upright strokes and showed no gap, so that split was dropped.)

    python bench/network_design.py --dose 100000 --view dense --steps 800 --set "train.object_stride={0: 2}"
    python bench/network_design.py --render     # bench/network_design.md from the recorded runs

It reads ``data/views/dose_<dose>/<view>/train.npz`` (``dvc repro views@<dose>-<view>`` first).

Results are appended to ``bench/network_design.jsonl`` (one line per run, with the machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import ptychostudy  # noqa: F401  (numerical pins before numpy and torch)
import numpy as np
import torch

from ptychostudy import layout, physics
from ptychostudy.params.train import architecture
from ptychostudy.config import config_from_dict
from ptychostudy.dataset import Split
from ptychostudy.inference import predict_and_stitch, setup_torch
from ptychostudy.io import derive_seed
from ptychostudy.metrics import regions, score_arm
from ptychostudy.simulate import split_geometry
from ptychostudy.training import Trainer, cosine_schedule
from machine import machine  # noqa: E402  (bench/machine.py: the record every benchmark writes)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def rotated_validation(split: Split, band_start: int, dose: int, seed: int) -> Split:
    """The train region's object turned by 90° (its vertical strokes become horizontal: structure the
    network has not seen in that orientation), every row from the guard band on blanked so that nothing
    beyond the train region enters, and new patterns simulated at the train positions turned the same
    way, with the same probe (not turned), dose scale and Poisson noise (``physics``, as Phase C does)."""
    blank = np.array(split.truth, dtype=np.complex128)
    blank[band_start:] = 1.0
    height, width = blank.shape
    truth = np.rot90(blank).copy()  # out[i, j] = in[j, W-1-i]: (y, x) -> (W-1-x, y)
    pos = np.stack([width - 1 - split.positions[:, 1], split.positions[:, 0]], axis=1)
    size = split.probe.shape[-1]
    probe = split.probe.to(torch.complex128)
    patches = physics.extract_patches(torch.from_numpy(truth), physics.top_left(torch.from_numpy(pos[:, 0]), size),
                                      physics.top_left(torch.from_numpy(pos[:, 1]), size), size)
    intensity = physics.expected_intensity(probe, patches, split.intensity_scale).numpy()
    counts = physics.poisson_counts(intensity, np.random.default_rng(derive_seed(seed, "rotated", dose)))
    r0, r1, c0, c1 = split.featured
    return dataclasses.replace(
        split, amplitude=torch.from_numpy(np.sqrt(counts).astype(np.float32)), positions=pos,
        truth=truth.astype(np.complex64), featured=(width - 1 - c1, width - 1 - c0, r0, min(r1, band_start - 1)),
    )


def score(net, split: Split, cfg, device) -> dict:
    canvas, _ = predict_and_stitch(net, split, cfg.infer.stitch_fraction, cfg.infer.phase_sync, 64, device)
    masks = regions(split, cfg.compare.scanned_threshold)
    result = score_arm(canvas, split.truth, masks, cfg.compare, ("featured",), full=True)
    s = result.scores["featured"]
    return {"phase_r": s["phase"]["pearson_r"], "phase_spread": s["phase"]["spread_ratio"],
            "phase_frc50_px": s["phase"]["frc50_resolution_px"], "amplitude_r": s["amplitude"]["pearson_r"]}


def render(jsonl: Path, out: Path) -> None:
    """The runs of ``jsonl`` as a markdown table (the record docs/history.md points to)."""
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    lines = [
        "# Network design runs (train split only)", "",
        f"Written by `python bench/network_design.py --render` from `{jsonl.name}`: each row is one run, the network",
        "trained on the view's whole train split and scored on the train region turned by 90° and simulated anew",
        "(`rotated_validation`: unseen orientation, no test data). fit = the train region as trained on.",
        "ms/step: most runs shared the 2 cores two at a time (1 thread each): not speed figures.", "",
        "| label | dose | view | augment | object grid (px/sample) | frame (px) | steps | ms/step (threads) | val phase r | "
        "val phase FRC½ (px) | val spread | fit phase r | fit phase FRC½ (px) | CPU |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        last = r["curve"][-1]
        v, f = last["val"], last["fit"]
        lines.append(
            f"| {r['label']} | {r['dose']} | {r['view']} | {r.get('augment', 'none')} | {r.get('stride', 1)} | {r['canvas']} | "
            f"{r['steps']} | {r['ms_per_step']} ({r['threads']}) | {v['phase_r']:.3f} | {v['phase_frc50_px']:.1f} | "
            f"{v['phase_spread']:.2f} | {f['phase_r']:.3f} | {f['phase_frc50_px']:.1f} | {r['cpu']} |"
        )
    out.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--render", action="store_true", help="only write network_design.md from the runs recorded")
    p.add_argument("--dose", type=int, default=100000)
    p.add_argument("--view", default="dense")
    p.add_argument("--params", default=str(ROOT / "params.yaml"))
    p.add_argument("--set", action="append", default=[], help="train.KEY=VALUE overrides (YAML values)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the view's epochs × steps)")
    p.add_argument("--evals", type=int, default=4, help="validation scores along the run")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--label", default="")
    p.add_argument("--out", default=str(HERE / "network_design.jsonl"))
    args = p.parse_args(argv)
    if args.render:
        render(Path(args.out), Path(args.out).with_suffix(".md"))
        return 0

    import yaml

    raw = yaml.safe_load(Path(args.params).read_text())
    for item in args.set:
        key, value = item.split("=", 1)
        section, *rest = key.split(".")
        node = raw[section]
        for k in rest[:-1]:
            node = node[k]
        node[rest[-1]] = yaml.safe_load(value)
    cfg = config_from_dict(raw)

    device = setup_torch(args.threads, "cpu")
    gridsize = cfg.view(args.view).gridsize
    train = Split.read(layout.view_file(layout.view_dir("run1084", args.dose, args.view, ROOT), "train"), gridsize)
    band_start = split_geometry(train.truth.shape, cfg.base.patch_size, cfg.simulate.guard_band_px,
                                cfg.simulate.split_axis).band_start
    fit, val = train, rotated_validation(train, band_start, args.dose, cfg.simulate.seed)
    t = cfg.train
    steps = args.steps or t.epochs[args.view] * t.steps_per_epoch
    seed = derive_seed(t.seed, args.dose, args.view)
    trainer = Trainer(cfg, fit, architecture(cfg, args.view, args.dose), seed, device)
    opt = trainer.optimizer()
    sched = cosine_schedule(opt, steps, t.learning_rate, t.learning_rate_final)
    batches = trainer.device_batches(steps, t.batch_size, t.steps_per_epoch)
    marks = {round(steps * (k + 1) / args.evals) for k in range(args.evals)}
    curve, losses = [], []
    start = time.perf_counter()
    train_seconds = 0.0
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        losses.append(float(trainer.step(opt, next(batches))))
        sched.step()
        train_seconds += time.perf_counter() - t0
        if step in marks:
            row = {"step": step, "loss": float(np.mean(losses[-50:])), "train_seconds": round(train_seconds, 1),
                   "val": score(trainer.net, val, cfg, device), "fit": score(trainer.net, fit, cfg, device)}
            curve.append(row)
            print(json.dumps(row), flush=True)
    record = {
        "label": args.label, "augment": cfg.train.augment, "stride": trainer.arch.stride, "canvas": trainer.arch.canvas, "dose": args.dose, "view": args.view, "set": args.set, "steps": steps,
        "fit_patterns": fit.patterns, "fit_groups": int(fit.groups.shape[0]), "val_patterns": val.patterns,
        "ms_per_step": round(1000 * train_seconds / steps, 1), "wall_seconds": round(time.perf_counter() - start, 1),
        "threads": args.threads, "cpu": machine()["cpu"], "curve": curve,
    }
    with open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "curve"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
