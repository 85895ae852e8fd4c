"""Self-supervised training through the physics (``Trainer``), for Phase E (train.py), the test-time
refinement (refine.py), the replicates (replicate.py) and the measured network (measured.py)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from ptychostudy.architecture import Architecture
from ptychostudy.dataset import Split
from ptychostudy.inference import predict_and_stitch
from ptychostudy.io import derive_seed
from ptychostudy.metrics import regions, score_arm
from ptychostudy.model import ORIENTATIONS, PhysicsHead, Reconstructor, poisson_deviance
from ptychostudy.optim import Adam
from ptychostudy.params import Params

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
