"""The `ptychostudy` command: one thin subcommand per phase (DVC stages call these)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ptychostudy import StudyError, __version__

DESCRIPTION = """\
Synthetic ptychography dose/overlap study, run as a DVC pipeline.

Normally you run `dvc repro`, which calls these subcommands with the paths written in
dvc.yaml and the design in params.yaml. Each subcommand validates params.yaml first; any
problem with params or input files is one sentence on stderr and exit code 2, and
nothing is written.
"""


def _add_params(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the study design (default: params.yaml)")


def _add_dose_stage(parser: argparse.ArgumentParser, out_dir_help: str, report_help: str) -> None:
    """Arguments shared by the per-dose stages: params, dose, output folder, report, figure."""
    _add_params(parser)
    parser.add_argument("--dose", required=True, help="photons per pattern; must be one of study.doses")
    parser.add_argument("--out-dir", type=Path, required=True, help=out_dir_help)
    parser.add_argument("--report", type=Path, required=True, help=report_help)
    parser.add_argument("--figure", type=Path, required=True, help="PNG to write")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ptychostudy", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ptychostudy {__version__}")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check-params", help="validate params.yaml and print the study design",
                       description="Validate params.yaml (unknown keys, types, ranges, K ≥ C, views) and print the design.")
    _add_params(p)

    p = sub.add_parser("base", help="check the real probe and object (sha256), zoom them, write the prepared base",
                       description="The base step: verify each base file's sha256 against params.yaml (base.*_sha256), "
                       "check keys, dtypes and finiteness, zoom the object by base.object_zoom and the probe by "
                       "base.probe_zoom (bilinear), normalise the probe to unit power and write one .npz.")
    _add_params(p)
    p.add_argument("--probe", type=Path, required=True, help="probe .npz (keys probe_real, probe_imag)")
    p.add_argument("--object", type=Path, required=True, help="object .npz (key objectGuess, complex)")
    p.add_argument("--out", type=Path, required=True, help="prepared base .npz to write")

    p = sub.add_parser("simulate", help="Phase C: simulate the diffraction data of one dose",
                       description="Phase C: seeded scan positions split along simulate.split_axis with a guard band, "
                       "bilinear sub-pixel patches, ψ = P·O, orthonormal far field scaled to the dose, seeded Poisson "
                       "counts; writes patched_train.npz and patched_test.npz (amplitude = sqrt(counts), float32) in "
                       "the PtychoPINN data contract, a JSON of measured facts and a figure.")
    _add_dose_stage(p, "folder for patched_{train,test}.npz", "JSON of measured facts to write")
    p.add_argument("--base", type=Path, required=True, help="prepared base .npz (from `ptychostudy base`)")

    p = sub.add_parser("views", help="Phase D: one overlap view (baseline, dense, sparse, ...) of one dose",
                       description="Phase D: measure the probe diameter D, keep positions at least S = (1 − overlap)·D "
                       "apart (all positions when overlap is null), form the training groups (C of the K nearest "
                       "neighbours), measure the overlap, and write {train,test}.npz and view.json; a view with too "
                       "few positions is recorded as skipped, with its reason.")
    _add_dose_stage(p, "folder for {train,test}.npz and view.json", "JSON of the view's measured overlap")
    p.add_argument("--view", required=True, help="a view defined in views.definitions")
    p.add_argument("--sim-dir", type=Path, required=True, help="folder with patched_{train,test}.npz of this dose")

    p = sub.add_parser("train", help="Phase E: train the network of one dose × view",
                       description="Phase E: train one PtychoPINN-style network (settings: params.yaml train.*) "
                       "self-supervised through the physics (one object per group on its common frame, each member's "
                       "patch cut from it, known probe, the Phase C far "
                       "field, Poisson deviance) on the view's train split, deterministically (seeded, deterministic "
                       "kernels, train.threads threads). Logs the loss and, inside the featured region, amplitude and "
                       "phase Pearson r and the phase spread ratio on both splits per epoch; writes wts.h5.zip, a job "
                       "record (JSON), the per-epoch history (CSV) and a timing file, and prints the bundle's path, "
                       "SHA256 and size.")
    _add_params(p)
    p.add_argument("--dose", required=True, help="photons per pattern; must be one of study.doses")
    p.add_argument("--view", required=True, help="a view listed in study.views")
    p.add_argument("--view-dir", type=Path, required=True, help="folder with {train,test}.npz and view.json")
    p.add_argument("--bundle", type=Path, required=True, help="wts.h5.zip to write")
    p.add_argument("--report", type=Path, required=True, help="job record (JSON) to write")
    p.add_argument("--history", type=Path, required=True, help="per-epoch loss and scores (CSV) to write")
    p.add_argument("--timing", type=Path, required=True,
                   help="wall time (JSON) to write; kept out of DVC so that outputs stay byte-reproducible")
    p.add_argument("--figure", type=Path, required=True, help="PNG to write: loss, scores and reconstructions")

    p = sub.add_parser("reconstruct", help="Phase F: pty-chi LSQML on the test split of one dose × view",
                       description="Phase F: reconstruct the view's test split with pty-chi's LSQML (settings: params.yaml "
                       "iterative.*): all positions, initial object ones, the known probe, positions fixed, seeded, "
                       "iterative.threads threads, the object on the ground truth's pixel grid. Writes the object and "
                       "its cost per epoch (.npz, no pickle), a record (JSON) and a timing file.")
    _add_params(p)
    p.add_argument("--dose", required=True, help="photons per pattern; must be one of study.doses")
    p.add_argument("--view", required=True, help="a view listed in study.views")
    p.add_argument("--view-dir", type=Path, required=True, help="folder with test.npz and view.json")
    p.add_argument("--out", type=Path, required=True, help="reconstruction .npz to write")
    p.add_argument("--report", type=Path, required=True, help="record (JSON) to write")
    p.add_argument("--timing", type=Path, required=True, help="wall time (JSON) to write; kept out of DVC")

    p = sub.add_parser("compare", help="Phase G: score every arm of one dose × view against the ground truth",
                       description="Phase G: on the view's test split, reconstruct with the view's network, the "
                       "gridsize-1 baseline network and take pty-chi's object; align each the same way (scanned region, "
                       "sub-pixel registration, global phase offset and ramp, mean amplitude) and score amplitude and "
                       "phase (MAE, MSE, PSNR, SSIM, MS-SSIM, FRC at 0.5 and 1/7, Pearson r, phase spread ratio) in the "
                       "featured region and the whole scanned region. Writes comparison_metrics.csv (model, metric, "
                       "part, value), a record (JSON) and a figure.")
    _add_params(p)
    p.add_argument("--dose", required=True, help="photons per pattern; must be one of study.doses")
    p.add_argument("--view", required=True, help="a view listed in study.views")
    p.add_argument("--view-dir", type=Path, required=True, help="folder with test.npz and view.json")
    p.add_argument("--models", type=Path, required=True, help="artefact folder of the bundles (dose_<d>/<view>/wts.h5.zip)")
    p.add_argument("--iterative", type=Path, required=True, help="Phase F reconstruction .npz of this dose × view")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for comparison_metrics.csv, comparison.json, comparison.png")
    p.add_argument("--timing", type=Path, required=True, help="inference wall times (JSON) to write; kept out of DVC")

    p = sub.add_parser("summarize", help="the metrics stage: study summary from the per-stage reports",
                       description="Read the reports of every dose and view in params.yaml and write metrics.json "
                       "(numbers only, for `dvc metrics show`), skip_summary.json and summary.md.")
    _add_params(p)
    p.add_argument("--simulate-reports", type=Path, required=True, help="folder of Phase C reports")
    p.add_argument("--view-reports", type=Path, required=True, help="folder of Phase D reports")
    p.add_argument("--train-reports", type=Path, required=True, help="folder of Phase E job records")
    p.add_argument("--models", type=Path, required=True, help="artefact folder of the bundles (dose_<d>/<view>/wts.h5.zip)")
    p.add_argument("--iterative-reports", type=Path, default=None, help="folder of Phase F records (dose_<d>-<view>.json)")
    p.add_argument("--compare-reports", type=Path, default=None,
                   help="folder of Phase G results (dose_<d>-<view>/comparison_metrics.csv and comparison.json)")
    p.add_argument("--timing", type=Path, default=None, help="folder of timing files (optional; never a DVC dependency)")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for metrics.json, skip_summary.json, summary.md")

    p = sub.add_parser("verify", help="check every bundle against dvc.lock (md5) and the training manifest (SHA256)",
                       description="Recompute the md5 and SHA256 of every wts.h5.zip and compare them with dvc.lock and "
                       "training_manifest.json; list each bundle that is missing, changed, or unknown to either "
                       "(extra). Exit code 1 on any mismatch, 0 when all agree.")
    p.add_argument("--lock", type=Path, default=Path("dvc.lock"), help="default: dvc.lock")
    p.add_argument("--manifest", type=Path, default=Path("reports/training_manifest.json"),
                   help="default: reports/training_manifest.json")
    p.add_argument("--models", type=Path, default=Path("data/models"), help="artefact folder (default: data/models)")

    p = sub.add_parser("check-bundle", help="load trained bundles (wts.h5.zip) safely and describe them",
                       description="Load each wts.h5.zip with load_bundle: member names checked before anything is "
                       "read (no path traversal, no unexpected or pickled members), JSON description and HDF5 weights "
                       "parsed in memory, the network rebuilt from this package's code and its weights checked. "
                       "Nothing is extracted and nothing from the bundle is executed. Exit code 2 on the first bad one.")
    p.add_argument("files", nargs="+", type=Path)

    p = sub.add_parser("check-data", help="validate .npz files against the data contract",
                       description="Check that each .npz file follows the data contract (keys, dtypes, shapes, "
                       "finite values, JSON metadata, no pickle). Exit code 2 on the first broken file.")
    p.add_argument("files", nargs="+", type=Path)
    return parser


def _run(args: argparse.Namespace) -> None:
    from ptychostudy.config import as_dict, load_config

    progress = not args.no_progress
    if args.command == "check-data":
        from ptychostudy.dataset import read_dataset

        for path in args.files:
            arrays = read_dataset(path)
            print(f"{path}: ok, {arrays['diffraction'].shape[0]} patterns of {arrays['diffraction'].shape[1:]}")
        return
    if args.command == "check-bundle":
        from ptychostudy.model import load_bundle

        for path in args.files:
            loaded = load_bundle(path)
            arch = loaded.model.arch
            count = sum(t.numel() for t in loaded.model.parameters())
            d = loaded.description
            print(f"{path}: ok, dose {d.get('dose')} view {d.get('view')}, {arch.channels} pattern(s) of "
                  f"{arch.size}×{arch.size} per group on a {arch.canvas}×{arch.canvas} frame, {arch.inputs} input, {count} parameters")
        return
    if args.command == "verify":
        from ptychostudy.verify import verify

        checked, problems = verify(args.lock, args.manifest, args.models)
        for line in problems:
            print(line)
        print(f"verify: {checked} bundles, {len(problems)} problem{'s' if len(problems) != 1 else ''}")
        if problems:
            raise VerifyFailed
        return
    cfg = load_config(args.params)
    if args.command == "check-params":
        import yaml

        print(yaml.safe_dump(as_dict(cfg), sort_keys=False), end="")
        print(f"{args.params}: ok")
    elif args.command == "base":
        from ptychostudy.base import prepare_base, write_base

        base = prepare_base(cfg, args.probe, args.object)
        write_base(base, args.out)
        print(f"base: object {base.obj.shape[0]}×{base.obj.shape[1]}, probe {base.probe.shape[0]}×{base.probe.shape[1]}, "
              f"featured rows {base.featured[0]}–{base.featured[1]}, columns {base.featured[2]}–{base.featured[3]} -> {args.out}")
    elif args.command == "simulate":
        from ptychostudy import simulate

        facts = simulate.run(cfg, args.base, args.dose, args.out_dir, args.report, args.figure, progress=progress)
        print(f"dose {facts['dose']}: mean {facts['mean_counts_per_pattern']:.1f} counts/pattern, "
              f"{facts['train']['positions']} train + {facts['test']['positions']} test positions -> {args.out_dir}")
    elif args.command == "views":
        from ptychostudy import views

        s = views.run(cfg, args.dose, args.view, args.sim_dir, args.out_dir, args.report, args.figure, progress=progress)
        state = f"SKIPPED ({s['reason']})" if s["skipped"] else "ok"
        print(f"view {s['view']} dose {s['dose']}: D = {s['probe_diameter_px']:.1f} px, S = {s['min_spacing_px']:.1f} px, "
              f"train {s['train']['positions']} / test {s['test']['positions']} positions, "
              f"{s['train']['groups']} / {s['test']['groups']} groups: {state}")
    elif args.command == "train":
        from ptychostudy import train

        r = train.run(cfg, args.dose, args.view, args.view_dir, args.bundle, args.report, args.history, args.timing,
                      args.figure, progress=progress)
        b = r["bundle"]
        if r["skipped"]:
            print(f"train dose {r['dose']} {r['view']}: SKIPPED ({r['reason']}); record {args.bundle}")
        else:
            test = r["scores"]["test"]
            print(f"train dose {r['dose']} {r['view']}: {r['steps']} steps in {r['train_seconds']:.1f} s, final loss "
                  f"{r['final_loss']:.4f}; test amplitude r {test['amplitude_r']:.3f}, phase r {test['phase_r']:.3f}, "
                  f"phase spread ratio {test['phase_spread_ratio']:.3f}")
        print(f"bundle {args.bundle}  sha256 {b['sha256']}  {b['bytes']} bytes")
    elif args.command == "reconstruct":
        from ptychostudy import iterative

        r = iterative.run(cfg, args.dose, args.view, args.view_dir, args.out, args.report, args.timing, progress=progress)
        if r["skipped"]:
            print(f"reconstruct dose {r['dose']} {r['view']}: SKIPPED ({r['reason']})")
        else:
            print(f"reconstruct dose {r['dose']} {r['view']}: {r['positions']} positions, {r['epochs']} LSQML epochs in "
                  f"{r['seconds']:.1f} s, cost {r['cost_first']:.4g} -> {r['cost_final']:.4g} -> {args.out}")
    elif args.command == "compare":
        from ptychostudy import compare

        r = compare.run(cfg, args.dose, args.view, args.view_dir, args.models, args.iterative, args.out_dir, args.timing,
                        progress=progress)
        print(compare.headline(r))
    elif args.command == "summarize":
        from ptychostudy.summary import summarize

        summarize(cfg, args.simulate_reports, args.view_reports, args.train_reports, args.models, args.out_dir, args.timing,
                  args.iterative_reports, args.compare_reports)
        print(f"summary -> {args.out_dir}")


class VerifyFailed(Exception):
    """verify found mismatches (already printed): exit code 1."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        _run(args)
    except VerifyFailed:
        return 1
    except StudyError as exc:
        print(f"ptychostudy {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if args.command not in ("check-params", "check-data", "check-bundle", "verify"):
        print(f"ptychostudy {args.command}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0
