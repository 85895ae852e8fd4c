"""The seed-to-seed spread of the study's arms (params section ``replicate``, stage ``replicate``).

One training run or one solver run per cell cannot carry a conclusion about small differences: a
network's test score moves with its seed (weights, batch order) and with the CPU it ran on, and the
iterative arms move with theirs (pty-chi's batch clustering, the gradient solver's batches). In each
cell listed in ``replicate.doses`` × ``replicate.views`` this stage reruns every arm with
``replicate.seeds`` other seeds:

* the view's network (``pinn``; ``pinn_gs1`` for a gridsize-1 view) trained exactly as Phase E
  trains it (``train.Trainer``, the same settings), only the seed differs;
* ``ptychi`` and ``ptychi_tuned`` (``reconstruct.reconstruct``, the settings of Phase F: the tuned arm
  reads the tune stage's train-split selection), and ``gradient`` (``gradient.solve``, stopped where
  the tune stage selected).

Each replicate is scored on the test split exactly as Phase G scores (``metrics.score_arm``: featured
region, registration, phase offset and ramp, mean amplitude). Nothing is selected from these scores:
the summary puts them beside the pipeline's own run (the first seed) and calls differences smaller
than the measured spread level. ``run`` is load → compute → write; the report holds no wall time
(it must be byte-stable), the timing file does.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ptychostudy import gradient_solver, layout, ptychi_solver, stage
from ptychostudy.dataset import Split, read_dataset
from ptychostudy.inference import predict_and_stitch, setup_torch
from ptychostudy.io import derive_seed, sha256_file, write_json
from ptychostudy.metrics import regions, score_arm
from ptychostudy.params import Params
from ptychostudy.params import load as load_params
from ptychostudy.params.compare import CompareParams
from ptychostudy.params.gradient import GradientParams
from ptychostudy.params.infer import InferParams
from ptychostudy.params.reconstruct import ReconstructParams
from ptychostudy.params.replicate import ReplicateParams
from ptychostudy.params.train import TrainParams, architecture
from ptychostudy.training import Trainer

SPLIT = "test"
PTYCHI_ARMS = ("ptychi", "ptychi_tuned")
MEASURES = (  # (name in the report and in study_metrics.csv, quantity, metric of metrics.score)
    ("phase_pearson_r", "phase", "pearson_r"),
    ("phase_frc50_resolution_px", "phase", "frc50_resolution_px"),
    ("amplitude_pearson_r", "amplitude", "pearson_r"),
)


def network_arm(cfg: Params, view: str) -> str:
    """The name the view's own network has in Phase G (``pinn``, or ``pinn_gs1`` for a gridsize-1 view)."""
    return "pinn" if cfg.view(view).gridsize > 1 else "pinn_gs1"


def replicate_seed(seed: int, dose: int, view: str, k: int) -> int:
    """Seed of replicate ``k`` (1, 2, ...) of an arm whose own run uses ``derive_seed(seed, dose, view)``."""
    return derive_seed(seed, dose, view, "replicate", k)


def _headline(result) -> dict[str, float]:
    featured = result.scores["featured"]
    return {name: float(featured[quantity][metric]) for name, quantity, metric in MEASURES}


def train_network(cfg: Params, dose: int, view: str, train_split: Split, network_input: Split, seed: int, *,
                  progress: bool = False, desc: str = "replicate network") -> np.ndarray:
    """The view's network trained as Phase E trains it, with ``seed``, and its stitched object of
    ``network_input`` as Phase G infers it (``infer.*``)."""
    t = cfg.train
    device = setup_torch(t.threads, t.accelerator)
    trainer = Trainer(cfg, train_split, architecture(cfg, view, dose), seed, device)
    with tqdm(total=t.epochs[view] * t.steps_per_epoch, desc=desc, unit="step", disable=not progress) as bar:
        trainer.fit(t.epochs[view], t.steps_per_epoch, bar=bar)
    canvas, _ = predict_and_stitch(trainer.net, network_input, cfg.infer.stitch_fraction, cfg.infer.phase_sync,
                                   cfg.infer.batch, device)
    return canvas


def run(cfg: Params, dose, view: str, view_dir, tuning, report, timing, *, progress: bool = True) -> dict:
    # load: every input read and checked first
    dose = cfg.dose(dose)
    definition = cfg.view(view)
    report, timing = Path(report), Path(timing)
    summary = layout.read_view_summary(view_dir, dose, view)
    record = {"dose": dose, "view": view, "split": SPLIT, "seeds": cfg.replicate.seeds,
              "measures": [name for name, _, _ in MEASURES]}
    if summary["skipped"]:
        record.update(skipped=True, reason=summary["reason"], arms={})
        write_json(report, record)
        return record
    paths = {split: layout.view_file(view_dir, split) for split in layout.SPLITS}
    data = read_dataset(paths[SPLIT], require_groups=definition.gridsize > 1)
    test = Split.from_arrays(data, 1)
    network_input = Split.from_arrays(data, definition.gridsize)
    train_split = Split.read(paths["train"], definition.gridsize)
    settings = {arm: ptychi_solver.settings_of(cfg, arm, dose, view, tuning) for arm in PTYCHI_ARMS}
    plan = gradient_solver.schedule(cfg.gradient, gradient_solver.read_selection(tuning, dose, view))
    masks = regions(test, cfg.compare.scanned_threshold)
    seeds = range(1, cfg.replicate.seeds + 1)

    # compute
    scores: dict[str, list] = {}
    seconds: dict[str, list] = {}

    def scored(arm: str, k: int, obj: np.ndarray, start: float) -> None:
        scores.setdefault(arm, []).append({"replicate": k, **_headline(score_arm(obj, test.truth, masks, cfg.compare))})
        seconds.setdefault(arm, []).append(time.perf_counter() - start)

    t, r, g = cfg.train, cfg.reconstruct, cfg.gradient
    arm = network_arm(cfg, view)
    for k in seeds:
        start = time.perf_counter()
        scored(arm, k, train_network(cfg, dose, view, train_split, network_input, replicate_seed(t.seed, dose, view, k),
                                     progress=progress, desc=f"replicate {k} {arm} dose {dose} {view}"), start)
    for name in PTYCHI_ARMS:
        setting, epochs, _ = settings[name]
        for k in seeds:
            torch.set_num_threads(r.threads)
            start = time.perf_counter()
            obj, _, _ = ptychi_solver.reconstruct(setting, r.batch_size, test, epochs,
                                             replicate_seed(r.seed, dose, view, k) % (2**31), progress=progress,
                                             desc=f"replicate {k} {name} dose {dose} {view}")
            scored(name, k, obj, start)
    for k in seeds:
        gradient_solver.setup(g.threads)
        start = time.perf_counter()
        obj, _ = gradient_solver.solve(test, g, plan, replicate_seed(g.seed, dose, view, k), progress=progress,
                                       desc=f"replicate {k} gradient dose {dose} {view}")
        scored(gradient_solver.ARM, k, obj, start)

    # write
    record.update(
        skipped=False,
        data={s: {"path": str(p), "sha256": sha256_file(p)} for s, p in paths.items()},
        tuning={"path": str(tuning), "sha256": sha256_file(tuning)},
        seed_rule="replicate k of an arm uses io.derive_seed(<the arm's params seed>, dose, view, 'replicate', k); "
                  "the pipeline's own run (Phase E/F) is replicate 0",
        arms=scores,
    )
    write_json(report, record)
    write_json(timing, {"dose": dose, "view": view, "seconds": seconds, "threads": {"train": t.threads,
                        "ptychi": r.threads, "gradient": g.threads}, "torch": torch.__version__})
    return {**record, "seconds": seconds}


def cli(args) -> None:
    """``ptychostudy replicate``: one cell, then each arm's replicate phase r on stdout."""
    r = run(load_params(args.params, ReplicateParams, TrainParams, GradientParams, ReconstructParams, InferParams, CompareParams), args.dose, args.view, args.view_dir, args.tuning, args.report, args.timing,
            progress=not args.no_progress)
    if r["skipped"]:
        print(f"replicate dose {r['dose']} {r['view']}: SKIPPED ({r['reason']})")
        return
    parts = [f"{arm} phase r " + ", ".join(f"{row['phase_pearson_r']:.3f}" for row in rows) for arm, rows in r["arms"].items()]
    print(f"replicate dose {r['dose']} {r['view']} ({r['seeds']} other seeds, test split, featured region): " + "; ".join(parts))


def build_parser(prog: str = "python -m ptychostudy.replicate") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="the seed-to-seed spread of every arm in one dose × view (other seeds)",
                       description="The spread of the study's arms (module replicate.py, params replicate.*): on the "
                       "view's data, retrain the view's network and rerun each iterative arm (pty-chi as configured, "
                       "pty-chi tuned with its train-split selection, the gradient solver) with replicate.seeds other "
                       "seeds, and score each on the test split exactly as Phase G does (featured region: phase r, "
                       "phase FRC½ resolution, amplitude r). The pipeline's own run is the first seed; nothing is "
                       "selected here. Writes the scores (JSON) and a timing file.")
    stage.add_cell(p, "folder with {train,test}.npz and view.json")
    p.add_argument("--tuning", type=Path, required=True, help="the tune stage's selection (JSON) of this cell")
    p.add_argument("--report", type=Path, required=True, help="scores of every replicate (JSON) to write")
    p.add_argument("--timing", type=Path, required=True, help="wall times (JSON) to write; kept out of DVC")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.replicate") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
