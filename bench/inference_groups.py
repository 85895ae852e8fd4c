"""The network's inference cost measured honestly: quality against the number of groups evaluated per position.

    python bench/inference_groups.py WORKSPACE [--cells run1084:1000:dense ...] [--per-pattern 1 2 4 8]

A gridsize-2 network predicts one object per group of C = 4 neighbouring patterns; a view holds up to 35 groups
per seed position (every C-subset of its K = 7 nearest), so each pattern lies in many groups. Each pattern's patch
comes from the first group that holds it (``Split.eval_groups``). Until 2026-12-06 the infer stage ran one forward per
*pattern* (a group forwarded once per member it is first for); since this bench it forwards each such group once
(``distinct`` below became ``inference.predict_and_stitch``). This bench measures, per cell, on the test split with
the trained network of the workspace:

* ``today``: the infer stage's own path (``inference.predict_and_stitch``; today the same as ``distinct``);
* ``distinct``: the same first groups, each forwarded once, every member's patch it is first for kept;
* ``cover``: a greedy cover (groups in the view's order, one taken while it adds an uncovered pattern), every member's
  patch kept: about n / C forwards;
* ``per_pattern_k``: each pattern's patches from its first k groups (k = ``--per-pattern``), and ``all``: every group;
  a pattern's patches are phase-aligned to its first (their own offsets differ) and averaged, then stitched as the
  infer stage stitches (``infer.*``).

Quality: phase r of the featured region against the truth (``metrics.score_arm``, reported), and, without truth,
the held-out criterion of the tune stage: ``tune.heldout_fraction`` of the test positions (seed ``tune.heldout_seed``)
left out of every group used, their counts predicted from the stitched object by the physics forward model, the
Poisson NLL per pixel (``tune.heldout_nll``). The pick is the cheapest setting whose held-out NLL is within one
standard error (over the held-out patterns) of the most expensive setting's; the truth then says whether it is within
0.01 phase r of it. Forwards and wall seconds (``infer.threads``; the stitching included) per setting. Run it alone on
the machine. Writes bench/results.json "inference_groups".
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from machine import machine, save_result  # noqa: E402  (bench/machine.py: the record every benchmark writes)

ROOT = Path(__file__).resolve().parents[1]


def plans(groups: np.ndarray, usable: np.ndarray, per_pattern: list[int]) -> dict[str, list[tuple[int, int]]]:
    """Each setting's (group, member) pairs over the groups whose members are all ``usable``, in the view's order."""
    n = len(usable)
    ok = [g for g in range(len(groups)) if usable[groups[g]].all()]
    first: dict[int, tuple[int, int]] = {}
    for g in ok:
        for m, k in enumerate(groups[g]):
            first.setdefault(int(k), (g, m))
    out = {"today": [first[k] for k in sorted(first)], "distinct": sorted(first.values())}
    covered = np.zeros(n, dtype=bool)
    cover = []
    for g in ok:
        if not covered[groups[g]].all():
            cover += [(g, m) for m in range(groups.shape[1])]
            covered[groups[g]] = True
    out["cover"] = cover
    for k in per_pattern:
        count = np.zeros(n, dtype=np.int64)
        chosen = []
        for g in ok:
            for m, p in enumerate(groups[g]):
                if count[p] < k:
                    chosen.append((g, m))
                    count[p] += 1
        out[f"per_pattern_{k}"] = chosen
    out["all"] = [(g, m) for g in ok for m in range(groups.shape[1])]
    return out


@torch.no_grad()
def reconstruct(net, split, pairs: list[tuple[int, int]], infer, per_call: bool) -> tuple[np.ndarray, int, float]:
    """(stitched object, forwards, seconds): forward the pairs' groups (each once, or once per pair where
    ``per_call``: today's path), align each pattern's patches to its first and average them, stitch."""
    from ptychostudy import physics
    from ptychostudy.stitch import stitch

    start = time.perf_counter()
    order = [g for g, _ in pairs] if per_call else sorted({g for g, _ in pairs})
    size = net.arch.size
    patches: dict[int, list[torch.Tensor]] = {}
    wanted: dict[int, list[int]] = {}
    for g, m in pairs:
        wanted.setdefault(g, []).append(m)
    calls = [(g, [m]) for g, m in pairs] if per_call else [(g, wanted[g]) for g in order]
    for i in range(0, len(calls), infer.batch):
        chunk = calls[i:i + infer.batch]
        groups = split.groups[[g for g, _ in chunk]]
        out = net(split.amplitude[torch.from_numpy(groups)], split.offsets(groups))
        for (g, members), objs, ids in zip(chunk, out, groups):
            for m in members:
                patches.setdefault(int(ids[m]), []).append(objs[m])
    keys = sorted(patches)
    merged = []
    for k in keys:
        first, rest = patches[k][0], patches[k][1:]
        total = first.clone()
        for p in rest:  # the phase that best aligns p to the first patch (their offsets are arbitrary)
            dot = (first.conj() * p).sum()
            total += p * (dot.conj() / dot.abs().clamp_min(1e-30))
        merged.append(total / len(patches[k]))
    support = physics.central_support(size, infer.stitch_fraction)
    canvas, _ = stitch(torch.stack(merged), split.positions[keys, 0], split.positions[keys, 1], split.truth.shape, support,
                       infer.phase_sync)
    return canvas.numpy(), len(calls), time.perf_counter() - start


def measure_cell(workspace: Path, obj: str, dose: int, view: str, per_pattern: list[int]) -> dict:
    from ptychostudy.bundle import load_bundle
    from ptychostudy.config import load_config
    from ptychostudy.dataset import Split
    from ptychostudy.forward import PREDICTORS
    from ptychostudy.gradient_solver import poisson_nll
    from ptychostudy.inference import predict_and_stitch, setup_torch
    from ptychostudy.metrics import regions, score_arm
    from ptychostudy.tune import heldout_nll, holdout
    from ptychostudy.warmstart import starting_object

    cfg = load_config(workspace / "params.yaml")
    definition = cfg.view(view)
    setup_torch(cfg.infer.threads, "cpu")
    split = Split.read(workspace / "data/views" / obj / f"dose_{dose}" / view / "test.npz", definition.gridsize)
    net = load_bundle(workspace / "data/models" / obj / f"dose_{dose}" / view / "wts.h5.zip").model.eval()
    masks = regions(split, cfg.compare.scanned_threshold)
    _, held, held_index = holdout(split, cfg.tune.heldout_fraction, cfg.tune.heldout_seed)
    usable = np.ones(split.patterns, dtype=bool)
    usable[held_index] = False

    def phase_r(o):
        return float(score_arm(o, split.truth, masks, cfg.compare, ("featured",)).scores["featured"]["phase"]["pearson_r"])

    rows = {}
    # the infer stage's own path on every position, for the record (same object as "today" with no positions held out)
    start = time.perf_counter()
    canvas, _ = predict_and_stitch(net, split, cfg.infer.stitch_fraction, cfg.infer.phase_sync, cfg.infer.batch)
    infer_stage = {"seconds": time.perf_counter() - start, "forwards": int(split.eval_groups()[0].size),
                   "phase_r": phase_r(canvas)}
    every = plans(split.groups, np.ones(split.patterns, dtype=bool), per_pattern)
    fit = plans(split.groups, usable, per_pattern)
    for name in fit:
        per_call = name == "today"
        canvas, forwards, seconds = reconstruct(net, split, every[name], cfg.infer, per_call)
        held_canvas, _, _ = reconstruct(net, split, fit[name], cfg.infer, per_call)
        start_obj = starting_object(held_canvas)  # unit modulus where no kept patch reached, as a solver's start
        expected = torch.from_numpy(PREDICTORS["physics"](held, start_obj))
        counts = held.amplitude.double() ** 2
        per_pattern_nll = np.array([float(poisson_nll(expected[i], counts[i])) for i in range(len(counts))])
        rows[name] = {"forwards": forwards, "patches": len(every[name]), "seconds": seconds, "phase_r": phase_r(canvas),
                      "heldout_nll": float(heldout_nll(held, start_obj, "physics")),
                      "heldout_nll_se": float(per_pattern_nll.std(ddof=1) / np.sqrt(len(per_pattern_nll)))}
        print(f"  {obj} {dose} {view} {name:14s} forwards {forwards:6d}  {seconds:6.1f} s  phase r {rows[name]['phase_r']:.4f}  "
              f"held-out NLL {rows[name]['heldout_nll']:.6f} ± {rows[name]['heldout_nll_se']:.6f}", flush=True)
    full = max(rows, key=lambda k: rows[k]["forwards"])
    bound = rows[full]["heldout_nll"] + rows[full]["heldout_nll_se"]
    pick = min((k for k in rows if rows[k]["heldout_nll"] <= bound), key=lambda k: rows[k]["forwards"])
    return {"positions": split.patterns, "groups": int(len(split.groups)), "infer_stage": infer_stage, "settings": rows,
            "full": full, "pick_by_heldout_nll": pick,
            "pick_phase_r_below_full": rows[full]["phase_r"] - rows[pick]["phase_r"],
            "pick_within_0.01": bool(rows[full]["phase_r"] - rows[pick]["phase_r"] <= 0.01)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workspace", type=Path, help="a workspace whose study ran (trained networks, views)")
    p.add_argument("--cells", nargs="+", default=["run1084:1000:dense", "run1084:10000:dense", "run1084:100000:dense",
                                                   "siemens_star:100000:dense"], help="object:dose:view (gridsize > 1)")
    p.add_argument("--per-pattern", nargs="+", type=int, default=[2, 4, 8], help="groups per pattern to try")
    args = p.parse_args(argv)
    cells = {}
    began = time.perf_counter()
    for spec in args.cells:
        obj, dose, view = spec.split(":")
        cells[spec] = measure_cell(args.workspace.resolve(), obj, int(dose), view, args.per_pattern)
    result = {"cpu": machine()["cpu"], "torch": torch.__version__, "measured": time.strftime("%Y-%m-%d"),
              "seconds": time.perf_counter() - began, "cells": cells}
    save_result("inference_groups", result)
    for spec, c in cells.items():
        print(f"{spec}: full = {c['full']} ({c['settings'][c['full']]['forwards']} forwards, r "
              f"{c['settings'][c['full']]['phase_r']:.4f}); pick by held-out NLL = {c['pick_by_heldout_nll']} "
              f"({c['settings'][c['pick_by_heldout_nll']]['forwards']} forwards), {c['pick_phase_r_below_full']:+.4f} r "
              f"below full; today {c['settings']['today']['forwards']} forwards r {c['settings']['today']['phase_r']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
