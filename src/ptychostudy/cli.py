"""The `ptychostudy` command: one thin subcommand per phase (DVC stages call these).

This module only parses arguments: each subcommand is served by the ``cli(args)`` function
of the one module ``COMMANDS`` names, imported when that subcommand runs. So a stage runs
this file, its own module and what that imports — the closure its ``dvc.yaml`` entry lists
(``tests/test_dependencies.py`` computes it from the code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from ptychostudy import CheckFailed, StudyError, __version__

COMMANDS = {  # subcommand -> the module whose cli(args) runs it
    "check-params": "ptychostudy.config",
    "base": "ptychostudy.base",
    "simulate": "ptychostudy.simulate",
    "views": "ptychostudy.views",
    "train": "ptychostudy.train",
    "tune": "ptychostudy.tune",
    "reconstruct": "ptychostudy.reconstruct",
    "gradient": "ptychostudy.gradient",
    "refine": "ptychostudy.refine",
    "replicate": "ptychostudy.replicate",
    "compare": "ptychostudy.compare",
    "product": "ptychostudy.product",
    "measured-ptychi": "ptychostudy.measured",
    "measured-pinn": "ptychostudy.measured",
    "measured-compare": "ptychostudy.measured",
    "summarize": "ptychostudy.summary",
    "verify": "ptychostudy.verify",
    "check-bundle": "ptychostudy.bundle",
    "check-data": "ptychostudy.dataset",
    "run": "ptychostudy.scaleout",
}

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


def _add_cell(parser: argparse.ArgumentParser, view_dir_help: str) -> None:
    """Arguments shared by the per-cell stages (train, reconstruct, compare): params, dose, view, view folder."""
    _add_params(parser)
    parser.add_argument("--dose", required=True, help="photons per pattern; must be one of study.doses")
    parser.add_argument("--view", required=True, help="a view listed in study.views")
    parser.add_argument("--view-dir", type=Path, required=True, help=view_dir_help)


def _add_measured(parser: argparse.ArgumentParser) -> None:
    """Arguments of every measured-data stage: params and the measured file."""
    _add_params(parser)
    parser.add_argument("--data", type=Path, required=True, help="the measured file (siemens-star-small.npz.bz2)")


def _add_phase_f_outputs(parser: argparse.ArgumentParser) -> None:
    """The outputs of every Phase F stage: the reconstruction, its record and its wall time."""
    parser.add_argument("--out", type=Path, required=True, help="reconstruction .npz to write")
    parser.add_argument("--report", type=Path, required=True, help="record (JSON) to write")
    parser.add_argument("--timing", type=Path, required=True, help="wall time (JSON) to write; kept out of DVC")


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
    _add_cell(p, "folder with {train,test}.npz and view.json")
    p.add_argument("--bundle", type=Path, required=True, help="wts.h5.zip to write")
    p.add_argument("--report", type=Path, required=True, help="job record (JSON) to write")
    p.add_argument("--history", type=Path, required=True, help="per-epoch loss and scores (CSV) to write")
    p.add_argument("--timing", type=Path, required=True,
                   help="wall time (JSON) to write; kept out of DVC so that outputs stay byte-reproducible")
    p.add_argument("--figure", type=Path, required=True, help="PNG to write: loss, scores and reconstructions")

    p = sub.add_parser("tune", help="select the tuned iterative arms' settings on the train split of one dose × view",
                       description="The selection stage (fairness protocol: no setting is chosen from test-split scores). "
                       "On the view's TRAIN split only: pty-chi LSQML for every setting of tune.ptychi_grid (noise model, "
                       "TV weight, momentum), scored after each of tune.ptychi_epochs.<view>, and the gradient solver "
                       "through gradient.levels, scored after each of tune.gradient_checkpoints steps of every level; "
                       "scores are phase Pearson r against the train split's truth (featured region). Writes the "
                       "selection with every score (JSON), a figure and a timing file.")
    _add_cell(p, "folder with train.npz and view.json (test.npz is never read)")
    p.add_argument("--report", type=Path, required=True, help="selection and scores (JSON) to write (reports/tuning)")
    p.add_argument("--figure", type=Path, required=True, help="PNG to write: phase r of every setting, the selection")
    p.add_argument("--timing", type=Path, required=True, help="wall time (JSON) to write; kept out of DVC")

    p = sub.add_parser("reconstruct", help="Phase F: pty-chi LSQML on the test split of one dose × view (one arm)",
                       description="Phase F: reconstruct the view's test split with pty-chi's LSQML: all positions, "
                       "initial object ones, the known probe, positions fixed, seeded, reconstruct.threads threads, the "
                       "object on the ground truth's pixel grid. --arm ptychi: as the original study configured it "
                       "(reconstruct.*); --arm ptychi_tuned: noise model, TV weight, momentum and epochs from --tuning "
                       "(the tune stage's selection on the train split). Writes the object and its cost per epoch "
                       "(.npz, no pickle), a record (JSON) and a timing file.")
    _add_cell(p, "folder with test.npz and view.json")
    p.add_argument("--arm", choices=("ptychi", "ptychi_tuned"), default="ptychi", help="which pty-chi arm (default: ptychi)")
    p.add_argument("--tuning", type=Path, help="the tune stage's selection (JSON; required by --arm ptychi_tuned)")
    _add_phase_f_outputs(p)

    p = sub.add_parser("gradient", help="Phase F: the Poisson-likelihood gradient solver on the test split of one dose × view",
                       description="Phase F's classical gradient reference (arm gradient): Adam on the Poisson "
                       "likelihood of the counts under the study's forward model, the object (log-amplitude and phase) "
                       "on a coarse grid refined level by level (gradient.levels), stopping at the level and step the "
                       "tune stage selected on the train split (--tuning). Writes the object and its cost per step "
                       "(.npz, no pickle), a record (JSON) and a timing file.")
    _add_cell(p, "folder with test.npz and view.json")
    p.add_argument("--tuning", type=Path, required=True, help="the tune stage's selection (JSON)")
    _add_phase_f_outputs(p)

    p = sub.add_parser("refine", help="the pinn_refined arm: the view's network fine-tuned on the test split's own patterns",
                       description="Test-time refinement (arm pinn_refined, params refine.*): the view's trained network "
                       "(--bundle) trained further, self-supervised through the physics (Poisson deviance of its "
                       "diffraction against the counts), on the view's test split's patterns, never their truth, for "
                       "refine.steps.<view> Adam steps under a cosine decay. At the fractions refine.checkpoints of the "
                       "steps the stitched object (infer.*) is scored (featured region) to record phase r against wall "
                       "time; the arm is always the last step's object. Writes the object and its loss per step (.npz, "
                       "no pickle, beside Phase F's), a record with the curve (JSON) and a timing file.")
    _add_cell(p, "folder with test.npz and view.json")
    p.add_argument("--bundle", type=Path, required=True, help="the view's trained network (wts.h5.zip)")
    _add_phase_f_outputs(p)

    p = sub.add_parser("replicate", help="the seed-to-seed spread of every arm in one dose × view (other seeds)",
                       description="The spread of the study's arms (module replicate.py, params replicate.*): on the "
                       "view's data, retrain the view's network and rerun each iterative arm (pty-chi as configured, "
                       "pty-chi tuned with its train-split selection, the gradient solver) with replicate.seeds other "
                       "seeds, and score each on the test split exactly as Phase G does (featured region: phase r, "
                       "phase FRC½ resolution, amplitude r). The pipeline's own run is the first seed; nothing is "
                       "selected here. Writes the scores (JSON) and a timing file.")
    _add_cell(p, "folder with {train,test}.npz and view.json")
    p.add_argument("--tuning", type=Path, required=True, help="the tune stage's selection (JSON) of this cell")
    p.add_argument("--report", type=Path, required=True, help="scores of every replicate (JSON) to write")
    p.add_argument("--timing", type=Path, required=True, help="wall times (JSON) to write; kept out of DVC")

    p = sub.add_parser("compare", help="Phase G: score every arm of one dose × view against the ground truth",
                       description="Phase G: on the view's test split, reconstruct with the view's network and the "
                       "gridsize-1 baseline network (settings: params.yaml infer.*), take each iterative arm's object "
                       "(pty-chi as configured, pty-chi tuned, the gradient solver), the refined network's (pinn_refined) "
                       "and a blank object (the floor); align "
                       "each the same way (compare.*: scanned region, "
                       "sub-pixel registration, global phase offset and ramp, mean amplitude) and score amplitude and "
                       "phase (MAE, MSE, PSNR, SSIM, MS-SSIM, FRC at 0.5 and 1/7, Pearson r, phase spread ratio) in the "
                       "featured region and the whole scanned region. Writes comparison_metrics.csv (model, metric, "
                       "part, value), a record (JSON) and a figure.")
    _add_cell(p, "folder with test.npz and view.json")
    p.add_argument("--models", type=Path, required=True, help="artefact folder of the bundles (dose_<d>/<view>/wts.h5.zip)")
    p.add_argument("--reconstructions", type=Path, required=True,
                   help="Phase F folder of this dose × view (ptychi.npz, ptychi_tuned.npz, gradient.npz, pinn_refined.npz)")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for comparison_metrics.csv, comparison.json, comparison.png")
    p.add_argument("--timing", type=Path, required=True, help="inference wall times (JSON) to write; kept out of DVC")

    p = sub.add_parser("product", help="ptychodus product files (HDF5) of every object of one dose × view",
                       description="Write one ptychodus product file (<arm>.h5, the HDF5 layout ptychodus 1.7.0 reads) "
                       "per arm of the cell that has an object: the networks' stitched test-split objects (inferred as "
                       "Phase G does, infer.*) and the iterative arms' Phase F objects, each with the known probe, the "
                       "scan positions in metres, and the training loss or solver cost per epoch; plus products.json. "
                       "The physical scales are nominal (params product.*).")
    _add_cell(p, "folder with test.npz and view.json")
    p.add_argument("--models", type=Path, required=True, help="artefact folder of the bundles (dose_<d>/<view>/wts.h5.zip)")
    p.add_argument("--reconstructions", type=Path, required=True,
                   help="Phase F folder of this dose × view (ptychi.npz, ptychi_tuned.npz, gradient.npz, pinn_refined.npz)")
    p.add_argument("--train-reports", type=Path, required=True,
                   help="folder of the train stage's histories (dose_<d>-<view>.csv: the networks' loss per epoch)")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for <arm>.h5 and products.json")

    measured = ("The measured Siemens star (module measured.py, params measured.*): 516 real patterns, no ground "
                "truth, the scan split into halves A (even index) and B (odd). ")
    p = sub.add_parser("measured-ptychi", help="measured data: pty-chi's tuned arm on one half of the scan, probe refined",
                       description=measured + "Reconstruct one half with pty-chi LSQML from the analytic probe guess, "
                       "refining the probe, with the settings the tune stage selected on the train split of the study "
                       "cell measured.tuning_dose × measured.tuning_view. Writes the object, cost and refined probe "
                       "(.npz, no pickle), a record (JSON) and a timing file.")
    _add_measured(p)
    p.add_argument("--half", choices=("A", "B"), required=True, help="A: even scan indices, B: odd")
    p.add_argument("--tuning", type=Path, required=True, help="the tune stage's selection (JSON) of the tuning cell")
    _add_phase_f_outputs(p)

    p = sub.add_parser("measured-pinn", help="measured data: the network trained on half A, applied to half B",
                       description=measured + "Train the network (train.*, the view measured.network_view's gridsize "
                       "and canvas) self-supervised through the physics on half A's patterns with the probe pty-chi "
                       "refined on half A, then reconstruct both halves with it (infer.*). Writes the bundle, the "
                       "objects (.npz), a record, the loss per epoch (CSV) and a timing file.")
    _add_measured(p)
    p.add_argument("--ptychi-a", type=Path, required=True, help="measured-ptychi's result of half A (its probe is used)")
    p.add_argument("--bundle", type=Path, required=True, help="wts.h5.zip to write")
    p.add_argument("--out", type=Path, required=True, help="the network's objects (.npz) to write")
    p.add_argument("--report", type=Path, required=True, help="record (JSON) to write")
    p.add_argument("--history", type=Path, required=True, help="loss per epoch (CSV) to write")
    p.add_argument("--timing", type=Path, required=True, help="wall time (JSON) to write; kept out of DVC")

    p = sub.add_parser("measured-compare", help="measured data: agreement of the reconstructions (FRC, phase r), figure",
                       description=measured + "Score pty-chi A against pty-chi B (independent halves), the network on B "
                       "against pty-chi B and A, the network on A against pty-chi A, and a blank object (the floor), by "
                       "the study's one scoring path with the second reconstruction in the place of the truth, in the "
                       "region both halves light. Writes measured.json, measured.md, frc.csv and measured.png.")
    _add_measured(p)
    p.add_argument("--ptychi-dir", type=Path, required=True, help="folder of ptychi_A.npz and ptychi_B.npz")
    p.add_argument("--pinn", type=Path, required=True, help="measured-pinn's objects (.npz)")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for measured.json, measured.md, frc.csv, measured.png")

    p = sub.add_parser("summarize", help="the metrics stage: study summary from the per-stage reports",
                       description="Read the reports of every dose and view in params.yaml and write summary.md (the "
                       "status line, every result table, the conclusion), metrics.json (headline numbers per cell and "
                       "arm, for `dvc metrics show/diff`), study_metrics.csv, the training manifest, skip_summary.json, "
                       "the DVC plots and the metrics-vs-dose figure.")
    _add_params(p)
    p.add_argument("--simulate-reports", type=Path, required=True, help="folder of Phase C reports")
    p.add_argument("--view-reports", type=Path, required=True, help="folder of Phase D reports")
    p.add_argument("--train-reports", type=Path, required=True, help="folder of Phase E job records")
    p.add_argument("--models", type=Path, required=True, help="artefact folder of the bundles (dose_<d>/<view>/wts.h5.zip)")
    p.add_argument("--reconstruct-reports", type=Path, required=True, help="folder of Phase F records (<arm>/dose_<d>-<view>.json)")
    p.add_argument("--tuning-reports", type=Path, required=True, help="folder of the tune stage's selections")
    p.add_argument("--replicate-reports", type=Path, required=True,
                   help="folder of the replicate stage's scores (the seed-to-seed spread)")
    p.add_argument("--compare-reports", type=Path, required=True,
                   help="folder of Phase G results (dose_<d>-<view>/comparison_metrics.csv and comparison.json)")
    p.add_argument("--timing", type=Path, required=True,
                   help="folder of timing files (read when present; never a DVC dependency)")
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

    p = sub.add_parser("run", add_help=False, help="the pipeline's stale stages, several at a time (here, SLURM or PBS)",
                       usage="ptychostudy run [targets] [--jobs N] [--executor local|slurm|pbs] [--config FILE] [-f] [-s] [--dry]",
                       description="Bring the pipeline up to date like `dvc repro`, running independent stages at "
                       "once through Parsl; DVC stays the ledger. `ptychostudy run --help` lists its options.")
    # no arguments declared here: main passes every word after `run` to the driver, which parses them

    p = sub.add_parser("check-data", help="validate .npz files against the data contract",
                       description="Check that each .npz file follows the data contract (keys, dtypes, shapes, "
                       "finite values, JSON metadata, no pickle). Exit code 2 on the first broken file.")
    p.add_argument("files", nargs="+", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "run":
        args.args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    start = time.perf_counter()
    module = importlib.import_module(COMMANDS[args.command])
    try:
        module.cli(args)
    except StudyError as exc:
        print(f"ptychostudy {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except CheckFailed:
        return 1
    if args.command not in ("check-params", "check-data", "check-bundle", "verify", "run"):
        print(f"ptychostudy {args.command}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0
