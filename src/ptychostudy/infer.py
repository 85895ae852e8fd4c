"""One split of a view as tensors, the deterministic torch set-up, and network inference.

Shared by training (Phase E: the scores logged per epoch), pty-chi (Phase F: the same
patterns and positions) and the comparison (Phase G).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ptychostudy import StudyError, physics
from ptychostudy.config import Config
from ptychostudy.dataset import metadata
from ptychostudy.stitch import stitch


@dataclass
class Split:
    """One split of a view, as tensors ready for training and evaluation."""

    amplitude: torch.Tensor  # (n, N, N) measured sqrt(counts)
    positions: np.ndarray  # (n, 2) patch centres (y, x)
    groups: np.ndarray  # (G, C) indices into the patterns
    truth: np.ndarray  # (H, W) complex ground truth (scoring only, never trained on)
    probe: torch.Tensor  # (N, N) complex, unit power
    intensity_scale: float
    featured: tuple[int, int, int, int]

    @classmethod
    def from_arrays(cls, arrays: dict, gridsize: int) -> "Split":
        meta = metadata(arrays)
        source = meta.get("source_metadata", meta)
        n = arrays["diffraction"].shape[0]
        groups = arrays["groups"] if gridsize > 1 else np.arange(n, dtype=np.int64)[:, None]
        region = source["featured_region"]
        return cls(
            amplitude=torch.from_numpy(np.array(arrays["diffraction"], dtype=np.float32)),
            positions=np.stack([arrays["ycoords"], arrays["xcoords"]], axis=1),
            groups=np.asarray(groups, dtype=np.int64),
            truth=np.asarray(arrays["objectGuess"]),
            probe=torch.from_numpy(np.array(arrays["probeGuess"])),
            intensity_scale=float(source["intensity_scale"]),
            featured=(region["row0"], region["row1"], region["col0"], region["col1"]),
        )

    def offsets(self, groups: np.ndarray) -> torch.Tensor:
        """(B, C, 2) member positions relative to their group's mean position."""
        pos = self.positions[groups]
        return torch.from_numpy((pos - pos.mean(axis=1, keepdims=True)).astype(np.float32))

    def eval_groups(self) -> tuple[np.ndarray, np.ndarray]:
        """One group per pattern (the first group holding it) and the pattern's member index."""
        n = self.amplitude.shape[0]
        group_of = np.full(n, -1, dtype=np.int64)
        member_of = np.zeros(n, dtype=np.int64)
        for g, members in enumerate(self.groups):
            for m, k in enumerate(members):
                if group_of[k] < 0:
                    group_of[k] = g
                    member_of[k] = m
        keep = group_of >= 0
        return np.nonzero(keep)[0], np.stack([group_of[keep], member_of[keep]], axis=1)


@torch.no_grad()
def predict_and_stitch(net, split: Split, stitch_fraction: float, phase_sync: bool, batch: int = 64,
                       device: torch.device | None = None, bar=None) -> tuple[np.ndarray, np.ndarray]:
    """Predict every pattern of ``split`` and stitch the patches: (object canvas, coverage).

    Each pattern is predicted once, inside the first group that holds it (its patch cut from
    the group's one object); the central ``stitch_fraction`` of each patch is averaged at
    the pattern's position (``stitch.stitch``). Used for the scores logged while training
    and for Phase G.
    """
    device = device if device is not None else torch.device("cpu")
    was_training = net.training
    net.eval()
    size = net.arch.size
    patterns, choice = split.eval_groups()
    out = torch.zeros((len(patterns), size, size), dtype=torch.complex64)
    for start in range(0, len(patterns), batch):
        sel = choice[start : start + batch]
        groups = split.groups[sel[:, 0]]
        patches = net(split.amplitude[torch.from_numpy(groups)].to(device), split.offsets(groups).to(device)).cpu()
        out[start : start + batch] = patches[torch.arange(len(sel)), torch.from_numpy(sel[:, 1])]
        if bar is not None:
            bar.update(len(sel))
    net.train(was_training)
    support = physics.central_support(size, stitch_fraction)
    canvas, count = stitch(out, split.positions[patterns, 0], split.positions[patterns, 1], split.truth.shape, support, phase_sync)
    return canvas.numpy(), count.numpy()


def setup_torch(cfg: Config) -> torch.device:
    """Deterministic settings: fixed threads, deterministic kernels, the chosen device."""
    t = cfg.train
    torch.set_num_threads(t.threads)
    if t.accelerator == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        if not torch.cuda.is_available():
            raise StudyError("train.accelerator is cuda but this machine has no CUDA device; set train.accelerator: cpu")
        torch.backends.cudnn.benchmark = False
        device = torch.device("cuda")
    else:
        device = torch.device("cpu")
    torch.use_deterministic_algorithms(True)
    return device
