"""A cross-check of our own Poisson solver: one cell reconstructed with pty-chi's autodiff reconstructor on the Poisson
likelihood, beside the study's gradient arm (and its replicate range where the cell is replicated).

    python bench/crosscheck_autodiff.py WORKSPACE [--object run1084 --dose 1000 --view dense]

pty-chi's ``AutodiffPtychography`` fits the object by Adam on the Poisson negative log-likelihood through pty-chi's
own forward model (the probe known and fixed, the positions as Phase F hands them over: ``ptychi_solver``'s
geometry). Its settings are chosen like every arm's, on the view's **train** split against the train region's truth
(calibration protocol): the learning rates ``--rates`` at the epoch checkpoints ``--epochs``; the test split is then
reconstructed once with the pick and scored by the study's scoring path. If its phase r agrees with the gradient
arm's within the replicate range (or within ``--tolerance`` where the cell has no replicates), the two Poisson
solvers agree. Writes bench/results.json "crosscheck_autodiff" (one entry per cell).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


ROOT = Path(__file__).resolve().parents[1]


def autodiff(split, lr: float, epochs: list[int], batch_size: int, seed: int, on_checkpoint, poisson_rate: bool = True,
             start=None) -> None:
    """pty-chi's autodiff Poisson reconstruction of ``split``; ``on_checkpoint(epoch, object)`` at each of ``epochs``.
    The object starts blank unless ``start`` (on the truth's grid)."""
    from ptychostudy.ptychi_solver import _ptychi, ieee_sqrt, origin, ptychi_probe

    api, PtychographyTask = _ptychi()
    shape = tuple(split.truth.shape)
    o = api.AutodiffPtychographyOptions()
    r = o.reconstructor_options
    r.default_device = api.Devices.CPU
    r.num_epochs = epochs[-1]
    r.batch_size = batch_size
    r.loss_function = api.LossFunctions.POISSON
    r.random_seed = seed
    o.data_options.fft_shift = True
    ob = o.object_options
    ob.optimizable = True
    ob.optimizer = api.Optimizers.ADAM
    ob.step_size = lr
    ob.pixel_size_m = 1.0
    ob.patch_interpolation_method = api.PatchInterpolationMethods.FOURIER
    ob.determine_position_origin_coords_by = api.ObjectPosOriginCoordsMethods.SPECIFIED
    pos_origin, dy, dx = origin(shape)
    ob.position_origin_coords = pos_origin
    o.probe_options.optimizable = False
    o.probe_position_options.optimizable = False
    counts = split.amplitude.double() ** 2
    torch.manual_seed(seed)
    task = PtychographyTask(o, diffraction_data=counts.to(torch.float32),
                            object_data=torch.ones((1, *shape), dtype=torch.complex64) if start is None else
                            torch.from_numpy(np.asarray(start, dtype=np.complex64)[None].copy()),
                            probe_data=torch.from_numpy(ptychi_probe(split)),
                            probe_position_x_px=torch.from_numpy(split.positions[:, 1] - dx),
                            probe_position_y_px=torch.from_numpy(split.positions[:, 0] - dy))
    if poisson_rate:  # pty-chi 2.2 maps LossFunctions.POISSON to torch.nn.PoissonNLLLoss() whose default log_input=True
        # reads the forward model's intensity as the LOG of the rate; the Poisson likelihood of the counts needs the
        # intensity itself as the rate (found by this cross-check: with the default the fit moved away from the truth)
        task.reconstructor.loss_function = torch.nn.PoissonNLLLoss(log_input=False)
    for epoch in range(1, epochs[-1] + 1):
        with ieee_sqrt():  # as the study's pty-chi runs (ptychi_solver.IeeeSqrt)
            task.run(n_epochs=1)
        if epoch in epochs:
            on_checkpoint(epoch, np.asarray(task.get_data_to_cpu("object", as_numpy=True)[0], dtype=np.complex64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workspace", type=Path, help="a workspace with the study computed")
    parser.add_argument("--object", default="run1084")
    parser.add_argument("--dose", type=int, default=1000)
    parser.add_argument("--view", default="dense")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.003, 0.01, 0.03, 0.1])
    parser.add_argument("--epochs", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--batch-size", type=int, default=96)
    parser.add_argument("--tolerance", type=float, default=0.02, help="phase r agreement where no replicates exist")
    parser.add_argument("--our-finest", type=int, nargs="+", metavar="STEPS", help="also run the study's gradient solver "
                        "on the pixel grid alone (level 1, no coarse levels: autodiff's own basis) for these step "
                        "checkpoints, its stop chosen on the train truth like autodiff's: the like-for-like check")
    parser.add_argument("--from-truth", type=int, metavar="EPOCHS", help="also start autodiff at the test truth for "
                        "this many epochs at each rate: the Poisson NLL (our forward model) and the distance from the "
                        "truth before and after say whether the likelihood's optimum in autodiff's basis is near the truth")
    parser.add_argument("--ptychi-default-loss", action="store_true", help="keep pty-chi's own POISSON loss "
                        "(torch.nn.PoissonNLLLoss with log_input=True: the intensity read as a log-rate)")
    args = parser.parse_args()
    work = args.workspace.resolve()
    sys.path.insert(0, str(work / "src"))
    from ptychostudy import layout
    from ptychostudy.dataset import Split
    from ptychostudy.metrics import regions, score_arm
    from ptychostudy.params.compare import CompareParams
    from ptychostudy.params import load as load_params

    cfg = load_params(work / "params.yaml", CompareParams)
    view_dir = work / "data/views" / args.object / f"dose_{args.dose}" / args.view
    tag = f"dose_{args.dose}-{args.view}"
    torch.set_num_threads(1)
    scores = {}
    for split_name in ("train", "test"):
        split = Split.read(layout.view_file(view_dir, split_name), 1)
        masks = regions(split, cfg.compare.scanned_threshold)

        def phase_r(obj, split=split, masks=masks):
            return score_arm(obj, split.truth, masks, cfg.compare, ("featured",)).scores["featured"]["phase"]["pearson_r"]

        if split_name == "train":  # the calibration protocol: settings chosen on the train region's truth
            trials = []
            for lr in args.rates:
                start = time.perf_counter()
                autodiff(split, lr, args.epochs, args.batch_size, 0,
                         lambda e, o, lr=lr: trials.append({"rate": lr, "epochs": e, "train_phase_r": phase_r(o),
                                                            "seconds": time.perf_counter() - start}),
                         poisson_rate=not args.ptychi_default_loss)
            pick = max(trials, key=lambda t: (t["train_phase_r"], -t["epochs"]))
            scores["trials"] = trials
            scores["pick"] = pick
        else:
            start = time.perf_counter()
            got = {}
            autodiff(split, pick["rate"], [pick["epochs"]], args.batch_size, 0,
                     lambda e, o: got.update(r=phase_r(o), seconds=time.perf_counter() - start),
                     poisson_rate=not args.ptychi_default_loss)
            scores["test_phase_r"], scores["test_seconds"] = got["r"], got["seconds"]
    if args.from_truth:  # where the likelihood leads from the truth itself, in autodiff's basis (every pixel free)
        from ptychostudy.tune import heldout_nll  # the tune stage's criterion: Poisson NLL under a solver's own model

        split = Split.read(layout.view_file(view_dir, "test"), 1)

        def nll(obj, split=split):
            return heldout_nll(split, obj, "ptychi")

        drift = {"truth_nll": nll(split.truth), "epochs": args.from_truth, "rates": []}
        for lr in args.rates:
            got = {}
            autodiff(split, lr, [args.from_truth], args.batch_size, 0, lambda e, o: got.update(o=o),
                     poisson_rate=not args.ptychi_default_loss, start=split.truth)
            drift["rates"].append({"rate": lr, "nll": nll(got["o"]), "mean_abs_from_truth":
                                   float(np.abs(got["o"] - split.truth).mean()),
                                   "phase_r": score_arm(got["o"], split.truth, regions(split, cfg.compare.scanned_threshold),
                                                        cfg.compare, ("featured",)).scores["featured"]["phase"]["pearson_r"]})
        scores["from_truth"] = drift
        print(f"autodiff from the truth, {args.from_truth} epochs: NLL at the truth {drift['truth_nll']:.5f}; " + "; ".join(
            f"rate {d['rate']}: NLL {d['nll']:.5f}, mean |o - truth| {d['mean_abs_from_truth']:.3f}, phase r {d['phase_r']:.3f}"
            for d in drift["rates"]))
    if args.our_finest:  # the study's solver in autodiff's basis: every pixel free, no coarse-to-fine prior
        from ptychostudy import gradient_solver
        from ptychostudy.params.gradient import GradientParams

        g = load_params(work / "params.yaml", GradientParams).gradient
        finest = {}
        for split_name in ("train", "test"):
            split = Split.read(layout.view_file(view_dir, split_name), 1)
            masks = regions(split, cfg.compare.scanned_threshold)
            rows = []
            steps = args.our_finest if split_name == "train" else [finest["pick"]["steps"]]
            start = time.perf_counter()
            gradient_solver.setup(1)
            gradient_solver.solve(split, g, [(1, max(steps))], g.seed, progress=False, checkpoints=steps,
                                  on_checkpoint=lambda level, step, o, rows=rows, split=split, masks=masks: rows.append(
                                      {"steps": step, "phase_r": score_arm(o, split.truth, masks, cfg.compare, ("featured",))
                                       .scores["featured"]["phase"]["pearson_r"], "seconds": time.perf_counter() - start}))
            if split_name == "train":
                finest["trials"] = rows
                finest["pick"] = max(rows, key=lambda t: (t["phase_r"], -t["steps"]))
            else:
                finest["test_phase_r"] = rows[-1]["phase_r"]
        scores["gradient_pixel_grid_only"] = finest
        shown = ", ".join(f"{t['steps']}: {t['phase_r']:.3f}" for t in finest["trials"])
        print(f"the study's gradient solver on the pixel grid alone: test phase r {finest['test_phase_r']:.3f} "
              f"({finest['pick']['steps']} steps; train phase r by steps {shown})")
    comparison = json.loads((work / "reports/compare" / args.object / tag / "comparison.json").read_text())
    gradient = comparison["scores"]["gradient"]["featured"]["phase"]["pearson_r"]
    replicate = work / "reports/replicate" / args.object / f"{tag}.json"
    runs = [gradient]
    if replicate.is_file():
        runs += [s["phase_pearson_r"] for s in json.loads(replicate.read_text())["arms"].get("gradient", [])]
    low, high = min(runs), max(runs)
    band = (low, high) if len(runs) > 1 else (gradient - args.tolerance, gradient + args.tolerance)
    agrees = band[0] - 1e-9 <= scores["test_phase_r"] <= band[1] + 1e-9
    from machine import load_results, machine, save_result  # bench/machine.py: the record and the results file

    cpu = machine()["cpu"]
    entry = {"cell": f"{args.object}/{tag}", "autodiff": scores,
             "loss": "pty-chi's POISSON (PoissonNLLLoss, log_input=True)" if args.ptychi_default_loss else
                     "torch.nn.PoissonNLLLoss(log_input=False): the Poisson likelihood of the counts", "gradient_phase_r": gradient, "gradient_runs": runs,
             "band": list(band), "band_is": "replicate range" if len(runs) > 1 else f"± {args.tolerance}",
             "agrees": agrees, "machine": {"cpu": cpu, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}}
    entries = load_results().get("crosscheck_autodiff", {})
    entries[entry["cell"]] = entry  # one entry per cell
    save_result("crosscheck_autodiff", entries)
    print(f"autodiff Poisson (pty-chi) test phase r {scores['test_phase_r']:.3f} (rate {pick['rate']}, {pick['epochs']} "
          f"epochs) vs gradient arm {gradient:.3f}, band {band[0]:.3f}–{band[1]:.3f}: {'agrees' if agrees else 'DIFFERS'}")


if __name__ == "__main__":
    main()
