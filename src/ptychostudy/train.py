"""Phase E: train one network per dose × view, deterministically, through the physics.

``run`` is load (params, the view's files) → compute (``Trainer.fit``) → write (bundle, job
record, per-epoch history, figure, timing). The scores logged while training (the last epoch's, and
every ``train.eval_every``-th epoch's) come from the study's one scoring path (``metrics.score_arm``) on
the stitched reconstruction of both splits; scoring never changes the network.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from ptychostudy import figures, layout, stage
from ptychostudy.architecture import Architecture
from ptychostudy.bundle import save_model, write_skip_bundle
from ptychostudy.dataset import Split
from ptychostudy.infer import predict_and_stitch, setup_torch
from ptychostudy.io import derive_seed, sha256_file, write_json, write_text
from ptychostudy.metrics import regions, score_arm
from ptychostudy.model import ORIENTATIONS, PhysicsHead, Reconstructor, poisson_deviance
from ptychostudy.optim import Adam
from ptychostudy.params import Params, as_dict
from ptychostudy.params import load as load_params
from ptychostudy.params.compare import CompareParams
from ptychostudy.params.train import TrainParams, architecture

SCORES = ("amplitude_r", "phase_r", "phase_spread_ratio")  # logged per epoch, per split
EVAL_BATCH = 64  # patterns per forward pass while scoring (speed only; the batch the scores were always made with)


def input_norm(amplitude: torch.Tensor) -> float:
    """Scale that gives the network inputs a mean total 'intensity' of (N/2)² per pattern."""
    size = amplitude.shape[-1]
    mean_total = float((amplitude.double() ** 2).sum(dim=(-2, -1)).mean())
    return math.sqrt((size / 2) ** 2 / mean_total)


def headline_scores(scores: dict) -> dict[str, float]:
    """The per-epoch numbers of one region's ``metrics.score`` output."""
    return {"amplitude_r": scores["amplitude"]["pearson_r"], "phase_r": scores["phase"]["pearson_r"],
            "phase_spread_ratio": scores["phase"]["spread_ratio"]}


class Batch(NamedTuple):
    """One optimiser step's groups, on the training device: rows of the split's patterns (B, C), the
    members' offsets from their group's mean position (B, C, 2) and, with ``train.augment: dihedral``,
    each group's orientation (B,)."""

    index: torch.Tensor
    offsets: torch.Tensor
    orientation: torch.Tensor | None


def cosine_schedule(opt: torch.optim.Optimizer, total: int, lr: float, lr_final: float):
    """The learning rate of ``opt`` (set to ``lr``) decayed along a half cosine to ``lr_final`` at step ``total``."""
    floor = lr_final / lr
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(k, total) / total))
    )


class Trainer:
    """Self-supervised training through the physics on one split's patterns: a fresh network, or ``net``
    (a trained one, for the test-time refinement of refine.py)."""

    def __init__(self, cfg: Params, split: Split, arch: Architecture, seed: int, device: torch.device | None = None,
                 net: Reconstructor | None = None):
        self.cfg = cfg
        self.settings = cfg.train
        self.split = split
        self.arch = arch
        self.device = device if device is not None else torch.device("cpu")
        torch.manual_seed(seed)
        if net is None:
            net = Reconstructor(arch, split.probe, split.intensity_scale, input_norm(split.amplitude))
        self.net = net.to(self.device)
        self.head = PhysicsHead(split.probe, split.intensity_scale).to(self.device)
        self.amplitude = split.amplitude.to(self.device)
        self.rng = np.random.default_rng(seed)
        # the orientations of train.augment: their own stream, so the batch order is the same with or without
        self.orientation_rng = np.random.default_rng(derive_seed(seed, "orientation"))
        self.last_evaluation: dict = {}
        self._masks: dict[int, dict] = {}

    def predict(self, amplitude: torch.Tensor, offsets: torch.Tensor,
                orientation: torch.Tensor | None = None) -> torch.Tensor:
        """The network's object patches of a batch (``orientation``: ``Reconstructor.forward``'s)."""
        return self.net(amplitude.to(self.device), offsets.to(self.device), orientation)

    def step_batches(self, steps: int, batch: int):
        """The groups (rows of ``split.groups``) of ``steps`` optimiser steps of ``batch`` groups each: a
        seeded shuffle of all groups, reshuffled when used up."""
        groups = self.split.groups
        order = np.empty(0, dtype=np.int64)
        for _ in range(steps):
            if order.size < batch:
                order = np.concatenate([order, self.rng.permutation(len(groups))])
            idx, order = order[:batch], order[batch:]
            yield groups[idx]

    def device_batches(self, steps: int, batch: int, chunk: int):
        """``step_batches`` as ``Batch``es on the training device, moved there ``chunk`` steps at a time
        (each step's orientations drawn in step order, as before): a step then waits on no copy from the
        host, so a GPU's queue never runs dry between steps. The same tensors on the CPU."""
        groups = self.step_batches(steps, batch)
        for first in range(0, steps, chunk):
            chosen = [next(groups) for _ in range(min(chunk, steps - first))]
            index = torch.from_numpy(np.concatenate(chosen)).to(self.device)
            offsets = torch.cat([self.split.offsets(g) for g in chosen]).to(self.device)
            orientation = None
            if self.settings.augment == "dihedral":
                orientation = torch.from_numpy(np.concatenate(
                    [self.orientation_rng.integers(0, ORIENTATIONS, len(g)) for g in chosen])).to(self.device)
            start = 0
            for g in chosen:
                rows = slice(start, start + len(g))
                yield Batch(index[rows], offsets[rows], None if orientation is None else orientation[rows])
                start += len(g)

    def loss(self, batch: Batch) -> torch.Tensor:
        amp = self.amplitude[batch.index]
        patches = self.predict(amp, batch.offsets, batch.orientation)
        return poisson_deviance(self.head(patches), amp**2)

    def optimizer(self, lr: float | None = None) -> Adam:
        """The training's optimiser: Adam at ``lr`` (default ``train.learning_rate``), its square root
        correctly rounded (``optim.Adam``: the same bits on Intel and AMD CPUs)."""
        return Adam(self.net.parameters(), lr=self.settings.learning_rate if lr is None else lr)

    def step(self, opt: torch.optim.Optimizer, batch: Batch) -> torch.Tensor:
        """One optimiser step on ``batch``; returns its loss, a 0-d tensor on the training device (reading
        it waits for the step: ``fit`` reads an epoch's losses at its end)."""
        loss = self.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    def evaluate(self, split: Split) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
        """(scores, aligned reconstruction, scoring mask) of ``split``'s featured region, scored by
        the study's one scoring path (``metrics.score_arm``, pixel metrics only)."""
        s = self.settings
        canvas, _ = predict_and_stitch(self.net, split, s.eval_stitch_fraction, s.eval_phase_sync, EVAL_BATCH, self.device)
        masks = self._masks.get(id(split))
        if masks is None:
            masks = self._masks[id(split)] = regions(split, self.cfg.compare.scanned_threshold)
        result = score_arm(canvas, split.truth, masks, self.cfg.compare, ("featured",), full=False)
        return headline_scores(result.scores["featured"]), result.aligned["featured"], masks["featured"]

    def fit(self, epochs: int, steps_per_epoch: int, evaluate=(), every: int = 0, bar=None):
        """Adam with a cosine decay from ``learning_rate`` to ``learning_rate_final``.

        Every (name, split) of ``evaluate`` is scored after the last epoch and, when ``every`` > 0, after
        each ``every``-th epoch; the last epoch's results — the final model's — stay in ``last_evaluation``.
        Scoring reads the network only (no gradient, no random numbers): the trained weights are the same
        whatever ``every`` is.
        """
        s = self.settings
        opt = self.optimizer()
        total = epochs * steps_per_epoch
        sched = cosine_schedule(opt, total, s.learning_rate, s.learning_rate_final)
        batches = self.device_batches(total, s.batch_size, steps_per_epoch)
        history = []
        for epoch in range(epochs):
            losses = []
            for _ in range(steps_per_epoch):
                losses.append(self.step(opt, next(batches)))
                sched.step()
                if bar is not None:
                    bar.update()
            # the mean of the steps' losses as float64 (read once per epoch: no wait for the device per step)
            row = {"epoch": epoch + 1, "loss": float(np.mean(torch.stack(losses).cpu().numpy().astype(np.float64)))}
            if epoch + 1 == epochs or (every > 0 and (epoch + 1) % every == 0):
                self.last_evaluation = {name: self.evaluate(split) for name, split in evaluate}
                for name, (scores, _, _) in self.last_evaluation.items():
                    for key, value in scores.items():
                        row[f"{name}_{key}"] = value
            history.append(row)
            if bar is not None:
                bar.set_postfix(loss=f"{row['loss']:.3f}", **{
                    k.replace("_amplitude_r", "_amp_r").replace("_phase_spread_ratio", "_spread"): f"{v:.2f}"
                    for k, v in row.items() if k not in ("epoch", "loss")
                })
        return history


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

    dose: int
    view: str
    gridsize: int
    summary: dict  # the view's view.json
    paths: dict[str, Path]  # split -> view file
    splits: dict[str, Split]

    @property
    def skipped(self) -> bool:
        return bool(self.summary["skipped"])


def load(cfg: Params, dose, view: str, view_dir) -> Job:
    dose = cfg.dose(dose)
    gridsize = cfg.view(view).gridsize
    summary = layout.read_view_summary(view_dir, dose, view)
    paths = {split: layout.view_file(view_dir, split) for split in layout.SPLITS}
    splits = {} if summary["skipped"] else {split: Split.read(path, gridsize) for split, path in paths.items()}
    return Job(dose, view, gridsize, summary, paths, splits)


def compute(cfg: Params, job: Job, *, progress: bool = True):
    """Train the job's network; returns (trainer, per-epoch rows, scored splits, seconds)."""
    t = cfg.train
    device = setup_torch(t.threads, t.accelerator)
    seed = derive_seed(t.seed, job.dose, job.view)
    trainer = Trainer(cfg, job.splits["train"], architecture(cfg, job.view, job.dose), seed, device)
    epochs = t.epochs[job.view]
    logged = [(s, _scoring_subset(job.splits[s], t.eval_patterns, derive_seed(seed, s))) for s in layout.SPLITS]
    bar = tqdm(total=epochs * t.steps_per_epoch, desc=f"train dose {job.dose} {job.view}", unit="step", disable=not progress)
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
    """The params a bundle records: those its train stage declares in dvc.yaml (``base`` and every ``train``
    key, of the per-view keys only this view's), so that another view's settings never change its bytes."""
    train = as_dict(cfg.train)
    for name in ("epochs", "canvas"):
        train[name] = {view: train[name][view]}
    return {"base": as_dict(cfg.base), "train": train}


def run(cfg: Params, dose, view: str, view_dir, bundle, report, history, timing, figure, *, progress: bool = True) -> dict:
    job = load(cfg, dose, view, view_dir)
    bundle, report, history, timing, figure = map(Path, (bundle, report, history, timing, figure))
    record = {"dose": job.dose, "view": job.view, "gridsize": job.gridsize, "phase": "E"}
    if job.skipped:
        record.update(skipped=True, reason=job.summary["reason"])
        write_skip_bundle(bundle, record)
        record["bundle"] = _bundle_facts(bundle)
        write_json(report, record)
        write_text(history, "epoch,loss\n")
        figures.skipped_figure(record, figure)
        return record

    trainer, rows, logged, seconds = compute(cfg, job, progress=progress)

    t = cfg.train
    train_split = job.splits["train"]
    save_model(
        bundle, trainer.net.cpu(), train_split.probe, train_split.intensity_scale,
        {
            "dose": job.dose, "view": job.view, "gridsize": job.gridsize,
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
    figures.training_figure(
        record, rows, {s: (recon, job.splits[s].truth, mask) for s, (_, recon, mask) in evaluated.items()}, figure
    )
    facts = {"dose": job.dose, "view": job.view, "train_seconds": seconds,
             "ms_per_step": 1000 * seconds / (epochs * t.steps_per_epoch),
             "threads": t.threads, "accelerator": t.accelerator, "torch": torch.__version__}
    if t.accelerator == "cuda":
        facts.update(device=torch.cuda.get_device_name(), peak_memory_mib=torch.cuda.max_memory_allocated() / 2**20)
    write_json(timing, facts)
    return {**record, "train_seconds": seconds}


def _bundle_facts(bundle: Path) -> dict:
    return {"path": "/".join(bundle.parts[-3:]), "sha256": sha256_file(bundle), "bytes": bundle.stat().st_size}


def cli(args) -> None:
    """``ptychostudy train``: one job, then its headline on stdout."""
    r = run(load_params(args.params, TrainParams, CompareParams), args.dose, args.view, args.view_dir, args.bundle, args.report, args.history,
            args.timing, args.figure, progress=not args.no_progress)
    b = r["bundle"]
    if r["skipped"]:
        print(f"train dose {r['dose']} {r['view']}: SKIPPED ({r['reason']}); record {args.bundle}")
    else:
        test = r["scores"]["test"]
        print(f"train dose {r['dose']} {r['view']}: {r['steps']} steps in {r['train_seconds']:.1f} s, final loss "
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
                       "record (JSON), the per-epoch history (CSV) and a timing file, and prints the bundle's path, "
                       "SHA256 and size.")
    stage.add_cell(p, "folder with {train,test}.npz and view.json")
    p.add_argument("--bundle", type=Path, required=True, help="wts.h5.zip to write")
    p.add_argument("--report", type=Path, required=True, help="job record (JSON) to write")
    p.add_argument("--history", type=Path, required=True, help="per-epoch loss and scores (CSV) to write")
    p.add_argument("--timing", type=Path, required=True,
                   help="wall time (JSON) to write; kept out of DVC so that outputs stay byte-reproducible")
    p.add_argument("--figure", type=Path, required=True, help="PNG to write: loss, scores and reconstructions")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.train") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
