"""The seed-to-seed spread of the study's arms (params section ``replicate``, stage ``replicate``).

One training run or one solver run per cell cannot carry a conclusion about small differences: a
network's test score moves with its seed (weights, batch order) and with the CPU it ran on, and the
iterative arms move with theirs (pty-chi's batch clustering, the gradient solver's batches). In each
cell listed in ``replicate.doses`` × ``replicate.views`` this stage reruns every arm with
``replicate.seeds`` other seeds:

* the view's network (``pinn``; ``pinn_gs1`` for a gridsize-1 view) trained exactly as Phase E
  trains it (``train.Trainer``, the same settings), only the seed differs;
* ``pinn_refined``: that retrained network refined on the test patterns as the refine stage does, with
  another batch order;
* ``ptychi`` and ``ptychi_tuned`` (``reconstruct.reconstruct``, the settings of Phase F: the tuned arm
  reads the tune stage's train-split selection; pty-chi's random batches follow the seed), and
  ``gradient`` (``gradient.solve``, stopped where the tune stage selected); the solvers on
  ``replicate.threads`` torch threads (one, as every stage of the study, so that the driver pairs the stage
  with another; a thread count can move the last digits of a run, as another CPU does: part of the spread
  this stage measures).

A second axis redraws the data (``replicate.noise_redraws``): the test positions' expected counts are
simulated again exactly as Phase C simulates them (``simulator.py``, from the prepared base: the only
reader of it beside the simulate stage, and only to simulate), with another Poisson seed; Phase E's trained
network (not retrained), its refinement and every iterative arm with its own seed then reconstruct the new
counts. The spread then holds the data's own variance, not only the seeds'.

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

from dataclasses import replace
from types import SimpleNamespace

from ptychostudy import StudyError, gradient_solver, layout, physics, ptychi_solver, refine, stage
from ptychostudy.arms import network_arm
from ptychostudy.bundle import load_bundle
from ptychostudy.dataset import Split, read_dataset
from ptychostudy.prepared import read_base
from ptychostudy.simulator import fine_model, unscaled_intensities
from ptychostudy.inference import predict_and_stitch, reconstruct_split, setup_torch
from ptychostudy.io import derive_seed, sha256_file, write_json
from ptychostudy.metrics import regions, score_arm
from ptychostudy.params import Params
from ptychostudy.params import load as load_params
from ptychostudy.params.compare import CompareParams
from ptychostudy.params.gradient import GradientParams
from ptychostudy.params.infer import InferParams
from ptychostudy.params.reconstruct import ReconstructParams
from ptychostudy.params.refine import RefineParams
from ptychostudy.params.replicate import ReplicateParams
from ptychostudy.params.simulate import SimulateParams
from ptychostudy.params.train import TrainParams, architecture
from ptychostudy.training import Trainer

SPLIT = "test"
REFINED_ARM = layout.REFINED_ARM
PTYCHI_ARMS = ("ptychi", "ptychi_tuned")
MEASURES = (  # (name in the report and in study_metrics.csv, quantity, metric of metrics.score)
    ("phase_pearson_r", "phase", "pearson_r"),
    ("phase_frc50_resolution_px", "phase", "frc50_resolution_px"),
    ("amplitude_pearson_r", "amplitude", "pearson_r"),
)


def replicate_seed(seed: int, dose: int, view: str, k: int) -> int:
    """Seed of replicate ``k`` (1, 2, ...) of an arm whose own run uses ``derive_seed(seed, dose, view)``."""
    return derive_seed(seed, dose, view, "replicate", k)


def _headline(result) -> dict[str, float]:
    featured = result.scores["featured"]
    return {name: float(featured[quantity][metric]) for name, quantity, metric in MEASURES}


def train_network(cfg: Params, dose: int, view: str, train_split: Split, network_input: Split, seed: int, *,
                  progress: bool = False, desc: str = "replicate network") -> tuple[np.ndarray, torch.nn.Module]:
    """The view's network trained as Phase E trains it, with ``seed``: (its stitched object of ``network_input``
    as Phase G infers it (``infer.*``), the network)."""
    t = cfg.train
    device = setup_torch(t.threads, t.accelerator)
    trainer = Trainer(cfg, train_split, architecture(cfg, view, dose), seed, device)
    with tqdm(total=t.epochs[view] * t.steps_per_epoch, desc=desc, unit="step", disable=not progress) as bar:
        trainer.fit(t.epochs[view], t.steps_per_epoch, bar=bar)
    canvas, _ = predict_and_stitch(trainer.net, network_input, cfg.infer.stitch_fraction, cfg.infer.phase_sync,
                                   cfg.infer.batch, device)
    return canvas, trainer.net


def redraw(cfg: Params, base, split: Split, seed: int, chunk: int = 64) -> torch.Tensor:
    """New measured amplitudes of ``split``'s positions: the expected counts simulated as Phase C simulates them
    (``simulator.py``, ``simulate.fine_factor``, the split's own intensity scale) and a Poisson draw of ``seed``."""
    model = fine_model(base.obj, base.probe, cfg.simulate.fine_factor)
    rng = np.random.default_rng(seed)
    xy = np.ascontiguousarray(split.positions[:, ::-1])  # the simulator takes (x, y)
    out = np.empty(tuple(split.amplitude.shape), dtype=np.float32)
    for start in range(0, split.patterns, chunk):
        expected = unscaled_intensities(model, xy[start : start + chunk]) * split.intensity_scale**2
        out[start : start + len(expected)] = np.sqrt(physics.poisson_counts(expected, rng))
    return torch.from_numpy(out)


def _refined(cfg: Params, dose: int, view: str, split: Split, net: torch.nn.Module, seed: int, progress: bool) -> np.ndarray:
    """``net`` refined on ``split``'s own patterns as the refine stage does (refine.*), with batch order ``seed``."""
    obj, _, _, _ = refine.refine(cfg, dose, view, split, SimpleNamespace(model=net), progress=progress, seed=seed,
                                 curve=False)
    return obj


def run(cfg: Params, obj: str, dose, view: str, view_dir, tuning, bundle, base, report, timing, *, progress: bool = True) -> dict:
    # load: every input read and checked first
    obj, dose = cfg.object(obj), cfg.dose(dose)
    definition = cfg.view(view)
    report, timing = Path(report), Path(timing)
    summary = layout.read_view_summary(view_dir, dose, view)
    record = {"object": obj, "dose": dose, "view": view, "split": SPLIT, "seeds": cfg.replicate.seeds,
              "noise_redraws": cfg.replicate.noise_redraws, "measures": [name for name, _, _ in MEASURES]}
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
    load_bundle(bundle)  # checked up front; each use loads a fresh copy (refinement changes the network)
    prepared = read_base(base)
    if prepared.metadata.get("object") != obj:
        raise StudyError(f"{base}: the prepared base of {prepared.metadata.get('object')!r}, not of {obj!r}")
    masks = regions(test, cfg.compare.scanned_threshold)

    # compute
    scores: dict[str, list] = {}
    seconds: dict[str, list] = {}

    def scored(arm: str, axis: str, k: int, obj: np.ndarray, start: float) -> None:
        scores.setdefault(arm, []).append({"replicate": k, "axis": axis,
                                           **_headline(score_arm(obj, test.truth, masks, cfg.compare))})
        seconds.setdefault(arm, []).append(time.perf_counter() - start)

    t, r, g = cfg.train, cfg.reconstruct, cfg.gradient
    arm = network_arm(cfg, view)

    def iterative(axis: str, k: int, data: Split, seed_of) -> None:
        for name in PTYCHI_ARMS:
            setting, epochs, _ = settings[name]
            torch.set_num_threads(cfg.replicate.threads)
            start = time.perf_counter()
            obj, _, _ = ptychi_solver.reconstruct(setting, r.batch_size, data, epochs, seed_of(r.seed) % (2**31),
                                                  progress=progress, desc=f"replicate {axis} {k} {name} dose {dose} {view}")
            scored(name, axis, k, obj, start)
        gradient_solver.setup(cfg.replicate.threads)
        start = time.perf_counter()
        obj, _ = gradient_solver.solve(data, g, plan, seed_of(g.seed), progress=progress,
                                       desc=f"replicate {axis} {k} gradient dose {dose} {view}")
        scored(gradient_solver.ARM, axis, k, obj, start)

    for k in range(1, cfg.replicate.seeds + 1):  # axis 1: other seeds, the same data
        start = time.perf_counter()
        canvas, net = train_network(cfg, dose, view, train_split, network_input, replicate_seed(t.seed, dose, view, k),
                                    progress=progress, desc=f"replicate {k} {arm} dose {dose} {view}")
        scored(arm, "seed", k, canvas, start)
        start = time.perf_counter()
        scored(REFINED_ARM, "seed", k, _refined(cfg, dose, view, network_input, net,
                                                replicate_seed(cfg.refine.seed, dose, view, k), progress), start)
        iterative("seed", k, test, lambda seed, k=k: replicate_seed(seed, dose, view, k))
    for k in range(1, cfg.replicate.noise_redraws + 1):  # axis 2: the same seeds, new Poisson counts
        amplitude = redraw(cfg, prepared, test, derive_seed(cfg.simulate.seed, "redraw", dose, view, k))
        data, groups_data = replace(test, amplitude=amplitude), replace(network_input, amplitude=amplitude)
        start = time.perf_counter()
        canvas, _ = reconstruct_split(load_bundle(bundle), groups_data, cfg.infer,
                                      setup_torch(cfg.infer.threads, cfg.infer.accelerator))
        scored(arm, "noise", k, canvas, start)
        start = time.perf_counter()
        scored(REFINED_ARM, "noise", k, _refined(cfg, dose, view, groups_data, load_bundle(bundle).model, None, progress),
               start)
        iterative("noise", k, data, lambda seed: derive_seed(seed, dose, view))

    # write
    record.update(
        skipped=False,
        data={s: {"path": str(p), "sha256": sha256_file(p)} for s, p in paths.items()},
        tuning={"path": str(tuning), "sha256": sha256_file(tuning)},
        bundle={"path": str(bundle), "sha256": sha256_file(bundle)},
        seed_rule="axis 'seed': replicate k of an arm uses io.derive_seed(<the arm's params seed>, dose, view, "
                  "'replicate', k) on the pipeline's data; axis 'noise': the test positions' counts drawn again "
                  "(io.derive_seed(simulate.seed, 'redraw', dose, view, k)) and reconstructed with the arms' own seeds "
                  "and Phase E's network; the pipeline's own run (Phase E/F) is replicate 0",
        arms=scores,
    )
    write_json(report, record)
    write_json(timing, {"object": obj, "dose": dose, "view": view, "seconds": seconds, "threads": {"train": t.threads,
                        "ptychi": cfg.replicate.threads, "gradient": cfg.replicate.threads, "refine": cfg.refine.threads},
                        "torch": torch.__version__})
    return {**record, "seconds": seconds}


def cli(args) -> None:
    """``ptychostudy replicate``: one cell, then each arm's replicate phase r on stdout."""
    r = run(load_params(args.params, ReplicateParams, TrainParams, GradientParams, ReconstructParams, InferParams,
                        CompareParams, RefineParams, SimulateParams),
            args.obj, args.dose, args.view, args.view_dir, args.tuning, args.bundle, args.base, args.report, args.timing,
            progress=not args.no_progress)
    if r["skipped"]:
        print(f"replicate {r['object']} dose {r['dose']} {r['view']}: SKIPPED ({r['reason']})")
        return
    parts = [f"{arm} phase r " + ", ".join(f"{row['phase_pearson_r']:.3f}" for row in rows) for arm, rows in r["arms"].items()]
    print(f"replicate {r['object']} dose {r['dose']} {r['view']} ({r['seeds']} other seeds, test split, featured region): " + "; ".join(parts))


def build_parser(prog: str = "python -m ptychostudy.replicate") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="the seed-to-seed spread of every arm in one dose × view (other seeds)",
                       description="The spread of the study's arms (module replicate.py, params replicate.*): on the "
                       "view's data, retrain the view's network, refine it on the test patterns and rerun each iterative "
                       "arm (pty-chi as configured, pty-chi tuned with its train-split selection, the gradient solver) "
                       "with replicate.seeds other seeds; then, replicate.noise_redraws times, draw the test patterns' "
                       "Poisson counts again and reconstruct them with every arm's own seed; score each on the test split exactly as Phase G does (featured region: phase r, "
                       "phase FRC½ resolution, amplitude r). The pipeline's own run is the first seed; nothing is "
                       "selected here. Writes the scores (JSON) and a timing file.")
    stage.add_cell(p, "folder with {train,test}.npz and view.json")
    p.add_argument("--tuning", type=Path, required=True, help="the tune stage's selection (JSON) of this cell")
    p.add_argument("--bundle", type=Path, required=True, help="Phase E's network of this cell (wts.h5.zip): the noise "
                   "redraws' network")
    p.add_argument("--base", type=Path, required=True, help="the prepared base of the object (data/prepared/<object>.npz): the noise "
                   "redraws are simulated from it as Phase C simulates")
    p.add_argument("--report", type=Path, required=True, help="scores of every replicate (JSON) to write")
    p.add_argument("--timing", type=Path, required=True, help="wall times (JSON) to write; kept out of DVC")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.replicate") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
