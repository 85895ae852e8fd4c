"""Phase E: train one network per dose × view, deterministically, through the physics.

``run`` is load (params, the view's files) → compute (``Trainer.fit``) → write (bundle, job
record, per-epoch history, the training figure's data, timing; the figure is its own stage,
``train_figure``). The scores logged while training (the last epoch's, and
every ``train.eval_every``-th epoch's) come from the study's one scoring path (``metrics.score_arm``) on
the stitched reconstruction of both splits; scoring never changes the network.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ptychostudy import layout, stage
from ptychostudy.bundle import save_model, write_skip_bundle
from ptychostudy.dataset import Split
from ptychostudy.inference import setup_torch
from ptychostudy.io import derive_seed, sha256_file, write_json, write_text
from ptychostudy.npz import json_array, write_npz
from ptychostudy.params import Params, as_dict
from ptychostudy.params import load as load_params
from ptychostudy.params.compare import CompareParams
from ptychostudy.params.train import TrainParams, architecture
from ptychostudy.training import SCORES, Trainer  # noqa: F401  (the training loop: a library module)

# ---------------------------------------------------------------------------------------
# The DVC stage: load -> compute -> write


def _scoring_subset(split: Split, limit: int, seed: int) -> Split:
    """At most ``limit`` patterns of a gridsize-1 split (seeded), for the per-epoch log and the
    job's final scores (Phase G reconstructs every pattern)."""
    n = split.patterns
    if split.groups.shape[1] > 1 or n <= limit:
        return split
    keep = np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
    return dataclasses.replace(
        split, amplitude=split.amplitude[keep], positions=split.positions[keep],
        groups=np.arange(limit, dtype=np.int64)[:, None],
    )


@dataclass
class Job:
    """A training job's inputs, read and checked before any work."""

    obj: str
    dose: int
    view: str
    gridsize: int
    summary: dict  # the view's view.json
    paths: dict[str, Path]  # split -> view file
    splits: dict[str, Split]

    @property
    def skipped(self) -> bool:
        return bool(self.summary["skipped"])


def load(cfg: Params, obj: str, dose, view: str, view_dir) -> Job:
    obj, dose = cfg.object(obj), cfg.dose(dose)
    gridsize = cfg.view(view).gridsize
    summary = layout.read_view_summary(view_dir, dose, view)
    paths = {split: layout.view_file(view_dir, split) for split in layout.SPLITS}
    splits = {} if summary["skipped"] else {split: Split.read(path, gridsize) for split, path in paths.items()}
    return Job(obj, dose, view, gridsize, summary, paths, splits)


def compute(cfg: Params, job: Job, *, progress: bool = True):
    """Train the job's network; returns (trainer, per-epoch rows, scored splits, seconds)."""
    t = cfg.train
    device = setup_torch(t.threads, t.accelerator)
    seed = derive_seed(t.seed, job.dose, job.view)
    trainer = Trainer(cfg, job.splits["train"], architecture(cfg, job.view, job.dose), seed, device)
    epochs = t.epochs[job.view]
    logged = [(s, _scoring_subset(job.splits[s], t.eval_patterns, derive_seed(seed, s))) for s in layout.SPLITS]
    bar = tqdm(total=epochs * t.steps_per_epoch, desc=f"train {job.obj} dose {job.dose} {job.view}", unit="step", disable=not progress)
    start = time.perf_counter()
    rows = trainer.fit(epochs, t.steps_per_epoch, evaluate=logged, every=t.eval_every, bar=bar)
    seconds = time.perf_counter() - start
    bar.close()
    return trainer, rows, logged, seconds


def _history_csv(rows: list[dict]) -> str:
    """One line per epoch; the score columns are empty for the epochs that were not scored."""
    columns = ["epoch", "loss"] + [f"{s}_{k}" for s in layout.SPLITS for k in SCORES]
    return ",".join(columns) + "\n" + "".join(
        ",".join(str(r["epoch"]) if c == "epoch" else (f"{r[c]:.6g}" if c in r else "") for c in columns) + "\n"
        for r in rows
    )


def declared_params(cfg: Params, view: str) -> dict:
    """The params a bundle records: those its train stage declares in dvc.yaml (``base.patch_size`` and every
    ``train`` key, of the per-view keys only this view's), so that another view's settings (or another object's
    definition) never change its bytes."""
    train = as_dict(cfg.train)
    for name in ("epochs", "canvas"):
        train[name] = {view: train[name][view]}
    return {"base": {"patch_size": cfg.base.patch_size}, "train": train}


def write_shown(path, record: dict, rows: list[dict], shown: dict) -> None:
    """What the training figure shows (its own stage, ``train_figure``, draws it): the record, the per-epoch
    rows exactly (float64; ``scored`` marks the epochs with scores) and, per split, the aligned reconstruction,
    the truth and the featured mask, cut to the mask's bounding box (all the figure draws of them)."""
    columns = [f"{s}_{k}" for s in layout.SPLITS for k in SCORES]
    arrays = {"epoch": np.array([r["epoch"] for r in rows], dtype=np.int64),
              "loss": np.array([r["loss"] for r in rows], dtype=np.float64),
              "scored": np.array([any(c in r for c in columns) for r in rows], dtype=bool)}
    arrays.update({c: np.array([r.get(c, np.nan) for r in rows], dtype=np.float64) for c in columns})
    for split, (recon, truth, mask) in shown.items():
        rows_ = np.nonzero(mask.any(axis=1))[0]
        cols = np.nonzero(mask.any(axis=0))[0]
        crop = (slice(rows_[0], rows_[-1] + 1), slice(cols[0], cols[-1] + 1))
        arrays.update({f"{split}_object": recon[crop], f"{split}_truth": truth[crop], f"{split}_mask": mask[crop]})
    arrays["_metadata"] = json_array({"record": record, "columns": columns, "splits": list(shown)})
    write_npz(path, arrays)


def run(cfg: Params, obj: str, dose, view: str, view_dir, bundle, report, history, timing, shown, *,
        progress: bool = True) -> dict:
    job = load(cfg, obj, dose, view, view_dir)
    bundle, report, history, timing, shown = map(Path, (bundle, report, history, timing, shown))
    record = {"object": job.obj, "dose": job.dose, "view": job.view, "gridsize": job.gridsize, "phase": "E"}
    if job.skipped:
        record.update(skipped=True, reason=job.summary["reason"])
        write_skip_bundle(bundle, record)
        record["bundle"] = _bundle_facts(bundle)
        write_json(report, record)
        write_text(history, "epoch,loss\n")
        write_shown(shown, record, [], {})
        return record

    trainer, rows, logged, seconds = compute(cfg, job, progress=progress)

    t = cfg.train
    train_split = job.splits["train"]
    save_model(
        bundle, trainer.net.cpu(), train_split.probe, train_split.intensity_scale,
        {
            "object": job.obj, "dose": job.dose, "view": job.view, "gridsize": job.gridsize,
            "params": declared_params(cfg, job.view),
            "data_sha256": {s: sha256_file(p) for s, p in job.paths.items()},
        },
    )
    write_text(history, _history_csv(rows))
    evaluated = trainer.last_evaluation  # the last epoch's scores are the final model's
    epochs = t.epochs[job.view]
    record.update(
        skipped=False,
        data={s: {"path": str(p), "sha256": sha256_file(p), "patterns": job.splits[s].patterns,
                  "groups": int(job.splits[s].groups.shape[0])} for s, p in job.paths.items()},
        scored_patterns={s: scored.patterns for s, scored in logged},
        epochs=epochs, steps=epochs * t.steps_per_epoch, batch_size=t.batch_size,
        final_loss=rows[-1]["loss"], scores={s: result[0] for s, result in evaluated.items()},
        bundle=_bundle_facts(bundle),
    )
    write_json(report, record)
    write_shown(shown, record, rows, {s: (recon, job.splits[s].truth, mask) for s, (_, recon, mask) in evaluated.items()})
    facts = {"object": job.obj, "dose": job.dose, "view": job.view, "train_seconds": seconds,
             "ms_per_step": 1000 * seconds / (epochs * t.steps_per_epoch),
             "threads": t.threads, "accelerator": t.accelerator, "torch": torch.__version__}
    if t.accelerator == "cuda":
        facts.update(device=torch.cuda.get_device_name(), peak_memory_mib=torch.cuda.max_memory_allocated() / 2**20)
    write_json(timing, facts)
    return {**record, "train_seconds": seconds}


def _bundle_facts(bundle: Path) -> dict:
    return {"path": "/".join(bundle.parts[-4:]), "sha256": sha256_file(bundle), "bytes": bundle.stat().st_size}


def cli(args) -> None:
    """``ptychostudy train``: one job, then its headline on stdout."""
    r = run(load_params(args.params, TrainParams, CompareParams), args.obj, args.dose, args.view, args.view_dir, args.bundle, args.report, args.history,
            args.timing, args.shown, progress=not args.no_progress)
    b = r["bundle"]
    if r["skipped"]:
        print(f"train {r['object']} dose {r['dose']} {r['view']}: SKIPPED ({r['reason']}); record {args.bundle}")
    else:
        test = r["scores"]["test"]
        print(f"train {r['object']} dose {r['dose']} {r['view']}: {r['steps']} steps in {r['train_seconds']:.1f} s, final loss "
              f"{r['final_loss']:.4f}; test amplitude r {test['amplitude_r']:.3f}, phase r {test['phase_r']:.3f}, "
              f"phase spread ratio {test['phase_spread_ratio']:.3f}")
    print(f"bundle {args.bundle}  sha256 {b['sha256']}  {b['bytes']} bytes")


def build_parser(prog: str = "python -m ptychostudy.train") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="Phase E: train the network of one dose × view",
                       description="Phase E: train one PtychoPINN-style network (settings: params.yaml train.*) "
                       "self-supervised through the physics (one object per group on its common frame, each member's "
                       "patch cut from it, known probe, the Phase C far "
                       "field, Poisson deviance) on the view's train split, deterministically (seeded, deterministic "
                       "kernels, train.threads threads). Logs the loss and, inside the featured region, amplitude and "
                       "phase Pearson r and the phase spread ratio on both splits per epoch; writes wts.h5.zip, a job "
                       "record (JSON), the per-epoch history (CSV), the training figure's data (.npz; stage train_figure draws it) and a timing file, and prints the bundle's path, "
                       "SHA256 and size.")
    stage.add_cell(p, "folder with {train,test}.npz and view.json")
    p.add_argument("--bundle", type=Path, required=True, help="wts.h5.zip to write")
    p.add_argument("--report", type=Path, required=True, help="job record (JSON) to write")
    p.add_argument("--history", type=Path, required=True, help="per-epoch loss and scores (CSV) to write")
    p.add_argument("--timing", type=Path, required=True,
                   help="wall time (JSON) to write; kept out of DVC so that outputs stay byte-reproducible")
    p.add_argument("--shown", type=Path, required=True,
                   help="what the training figure shows (.npz) to write; the train_figure stage draws it")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.train") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
