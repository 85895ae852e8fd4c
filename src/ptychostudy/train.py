"""Phase E: train one network per dose × view, deterministically, through the physics."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ptychostudy import StudyError, figures
from ptychostudy.config import Config, as_dict
from ptychostudy.dataset import read_dataset
from ptychostudy.io import derive_seed, sha256_file, write_json, write_text
from ptychostudy.model import (
    Architecture, PhysicsHead, Reconstructor, poisson_deviance, save_model, write_skip_bundle,
)
from ptychostudy.simulate import SPLITS
from ptychostudy.infer import Split, predict_and_stitch, setup_torch
from ptychostudy.stitch import SCORES, align_phase, quick_scores
from ptychostudy.views import VIEW_SUMMARY


def input_norm(amplitude: torch.Tensor) -> float:
    """Scale that gives the network inputs a mean total 'intensity' of (N/2)² per pattern."""
    size = amplitude.shape[-1]
    mean_total = float((amplitude.double() ** 2).sum(dim=(-2, -1)).mean())
    return math.sqrt((size / 2) ** 2 / mean_total)


class Trainer:
    def __init__(self, settings, split: Split, arch: Architecture, seed: int, device: torch.device | None = None):
        self.settings = settings
        self.split = split
        self.arch = arch
        self.device = device if device is not None else torch.device("cpu")
        torch.manual_seed(seed)
        self.net = Reconstructor(arch, split.probe, split.intensity_scale, input_norm(split.amplitude)).to(self.device)
        self.head = PhysicsHead(split.probe, split.intensity_scale).to(self.device)
        self.amplitude = split.amplitude.to(self.device)
        self.rng = np.random.default_rng(seed)
        self.last_evaluation: dict = {}

    def predict(self, amplitude: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.net(amplitude.to(self.device), offsets.to(self.device))

    def step_batches(self, steps: int, batch: int):
        groups = self.split.groups
        order = np.empty(0, dtype=np.int64)
        for _ in range(steps):
            if order.size < batch:
                order = np.concatenate([order, self.rng.permutation(len(groups))])
            idx, order = order[:batch], order[batch:]
            yield groups[idx]

    def loss(self, groups: np.ndarray) -> torch.Tensor:
        amp = self.amplitude[torch.from_numpy(groups).to(self.device)]
        patches = self.predict(amp, self.split.offsets(groups))
        return poisson_deviance(self.head(patches), amp**2)

    def reconstruct(self, split: Split, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
        return predict_and_stitch(self.net, split, self.settings.stitch_fraction, self.settings.phase_sync, batch, self.device)

    def evaluate(self, split: Split) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
        """(scores, aligned reconstruction, scoring mask): the featured region where stitched."""
        canvas, count = self.reconstruct(split)
        r0, r1, c0, c1 = split.featured
        mask = np.zeros(count.shape, dtype=bool)
        mask[r0:r1, c0:c1] = True
        mask &= count > 0.5
        return quick_scores(canvas, split.truth, mask), align_phase(canvas, split.truth, mask), mask

    def fit(self, epochs: int, steps_per_epoch: int, log=None, evaluate=(), bar=None):
        """Adam with a cosine decay from ``learning_rate`` to ``learning_rate_final``.

        After each epoch every (name, split) of ``evaluate`` is scored; the last epoch's
        results — the final model's — stay in ``last_evaluation``.
        """
        s = self.settings
        opt = torch.optim.Adam(self.net.parameters(), lr=s.learning_rate)
        total = epochs * steps_per_epoch
        floor = s.learning_rate_final / s.learning_rate
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(k, total) / total))
        )
        batches = self.step_batches(total, s.batch_size)
        history = []
        for epoch in range(epochs):
            t0 = time.perf_counter()
            losses = []
            for _ in range(steps_per_epoch):
                loss = self.loss(next(batches))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
                if bar is not None:
                    bar.update()
            row = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
            seconds = time.perf_counter() - t0
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
            if log is not None:
                log({**row, "seconds": seconds})
        return history


# ---------------------------------------------------------------------------------------
# The DVC stage


def architecture(cfg: Config, view: str) -> Architecture:
    t = cfg.train
    gridsize = cfg.view(view).gridsize
    return Architecture(
        size=cfg.base.patch_size,
        channels=gridsize * gridsize,
        canvas=t.canvas[view],
        filters=t.filters,
        depth=t.depth,
        support=t.support,
        amplitude_max=t.amplitude_max,
        skips=t.skips,
        inputs=t.inputs,
    )


def _scoring_subset(split: Split, limit: int, seed: int) -> Split:
    """At most ``limit`` patterns of a gridsize-1 split (seeded), for the per-epoch log and the
    job's final scores (Phase G reconstructs every pattern)."""
    n = split.amplitude.shape[0]
    if split.groups.shape[1] > 1 or n <= limit:
        return split
    keep = np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
    return dataclasses.replace(
        split, amplitude=split.amplitude[keep], positions=split.positions[keep],
        groups=np.arange(limit, dtype=np.int64)[:, None],
    )


def run(cfg: Config, dose, view: str, view_dir, bundle, report, history, timing, figure=None, *, progress: bool = True) -> dict:
    dose = cfg.dose(dose)
    definition = cfg.view(view)
    view_dir, bundle, report, history, timing = map(Path, (view_dir, bundle, report, history, timing))
    figure = Path(figure) if figure is not None else report.with_suffix(".png")
    view_summary = json.loads((view_dir / VIEW_SUMMARY).read_text()) if (view_dir / VIEW_SUMMARY).is_file() else None
    if view_summary is None:
        raise StudyError(f"{view_dir}: no {VIEW_SUMMARY}; run the views stage of dose {dose}, view {view} first")
    record = {"dose": dose, "view": view, "gridsize": definition.gridsize, "phase": "E"}
    if view_summary.get("skipped"):
        record.update(skipped=True, reason=view_summary.get("reason", ""))
        write_skip_bundle(bundle, record)
        record["bundle"] = _bundle_facts(bundle)
        write_json(report, record)
        write_text(history, "epoch,loss\n")
        figures.skipped_figure(record, figure)
        return record
    paths = {split: view_dir / f"{split}.npz" for split in SPLITS}
    data = {split: read_dataset(path, require_groups=definition.gridsize > 1) for split, path in paths.items()}
    device = setup_torch(cfg)
    t = cfg.train
    seed = derive_seed(t.seed, dose, view)
    splits = {split: Split.from_arrays(arrays, definition.gridsize) for split, arrays in data.items()}
    trainer = Trainer(t, splits["train"], architecture(cfg, view), seed, device)
    epochs = t.epochs[view]
    logged = [(s, _scoring_subset(splits[s], t.eval_patterns, derive_seed(seed, s))) for s in SPLITS]
    bar = tqdm(total=epochs * t.steps_per_epoch, desc=f"train dose {dose} {view}", unit="step", disable=not progress)
    start = time.perf_counter()
    rows = trainer.fit(epochs, t.steps_per_epoch, evaluate=logged, bar=bar)
    train_seconds = time.perf_counter() - start
    bar.close()
    evaluated = trainer.last_evaluation  # the last epoch's scores are the final model's
    final = {s: result[0] for s, result in evaluated.items()}
    save_model(
        bundle, trainer.net.cpu(), splits["train"].probe, splits["train"].intensity_scale,
        {
            "dose": dose, "view": view, "gridsize": definition.gridsize,
            "params": {k: as_dict(cfg)[k] for k in ("base", "train")},
            "data_sha256": {s: sha256_file(p) for s, p in paths.items()},
        },
    )
    columns = ["epoch", "loss"] + [f"{s}_{k}" for s in SPLITS for k in SCORES]
    write_text(history, ",".join(columns) + "\n" + "".join(
        ",".join(str(r["epoch"]) if c == "epoch" else f"{r[c]:.6g}" for c in columns) + "\n" for r in rows
    ))
    record.update(
        skipped=False,
        data={s: {"path": str(p), "sha256": sha256_file(p), "patterns": int(splits[s].amplitude.shape[0]),
                  "groups": int(splits[s].groups.shape[0])} for s, p in paths.items()},
        scored_patterns={s: int(scored.amplitude.shape[0]) for s, scored in logged},
        epochs=epochs, steps=epochs * t.steps_per_epoch, batch_size=t.batch_size,
        final_loss=rows[-1]["loss"], scores=final, bundle=_bundle_facts(bundle),
    )
    write_json(report, record)
    figures.training_figure(
        record, rows, {s: (recon, splits[s].truth, mask) for s, (_, recon, mask) in evaluated.items()}, figure
    )
    write_json(timing, {"dose": dose, "view": view, "train_seconds": train_seconds,
                        "ms_per_step": 1000 * train_seconds / (epochs * t.steps_per_epoch),
                        "threads": t.threads, "accelerator": t.accelerator, "torch": torch.__version__})
    return {**record, "train_seconds": train_seconds}


def _bundle_facts(bundle: Path) -> dict:
    return {"path": "/".join(bundle.parts[-3:]), "sha256": sha256_file(bundle), "bytes": bundle.stat().st_size}
