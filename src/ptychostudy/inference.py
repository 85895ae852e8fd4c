"""Network inference: a trained network reconstructs a whole split (predict, then stitch).

Used for the scores logged while training (Phase E, settings ``train.eval_*``), by the infer stage
(settings ``infer.*``: the networks' test-split objects that Phase G scores and the products hold), the
refinement, the replicates, the measured data and the benchmarks; plus the deterministic torch set-up
they share.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from ptychostudy import StudyError, physics
from ptychostudy.dataset import Split
from ptychostudy.stitch import stitch


@torch.no_grad()
def predict_and_stitch(net, split: Split, stitch_fraction: float, phase_sync: bool, batch: int = 64,
                       device: torch.device | None = None, bar=None) -> tuple[np.ndarray, np.ndarray]:
    """Predict every pattern of ``split`` and stitch the patches: (object canvas, coverage).

    Each pattern is predicted once, inside the first group that holds it (its patch cut from
    the group's one object); a group that is the first of several patterns is forwarded once
    for all of them. The central ``stitch_fraction`` of each patch is averaged at the pattern's
    position (``stitch.stitch``).
    """
    device = device if device is not None else torch.device("cpu")
    was_training = net.training
    net.eval()
    size = net.arch.size
    patterns, choice = split.eval_groups()
    distinct, which = np.unique(choice[:, 0], return_inverse=True)  # each group forwarded once
    objects = torch.zeros((len(distinct), split.groups.shape[1], size, size), dtype=torch.complex64)
    for start in range(0, len(distinct), batch):
        groups = split.groups[distinct[start : start + batch]]
        objects[start : start + batch] = net(split.amplitude[torch.from_numpy(groups)].to(device),
                                             split.offsets(groups).to(device)).cpu()
        if bar is not None:
            bar.update(int(((which >= start) & (which < start + len(groups))).sum()))  # patterns done
    out = objects[torch.from_numpy(which.reshape(-1)), torch.from_numpy(choice[:, 1])]
    net.train(was_training)
    support = physics.central_support(size, stitch_fraction)
    canvas, count = stitch(out, split.positions[patterns, 0], split.positions[patterns, 1], split.truth.shape, support, phase_sync)
    return canvas.numpy(), count.numpy()


def require_channels(net, split: Split, what: str = "a network") -> None:
    """A clear error when ``net`` was made for another number of patterns per group than ``split``'s groups."""
    channels = split.groups.shape[1]
    if net.arch.channels != channels:
        raise StudyError(f"{what}: a network for {net.arch.channels} patterns per group cannot read groups of {channels}")


def reconstruct_split(loaded, split: Split, settings, device: torch.device, bar=None) -> tuple[np.ndarray, float]:
    """Phase G inference: the stitched object of ``split`` by a loaded bundle
    (``bundle.LoadedModel``) with the ``infer`` settings, and the seconds it took."""
    require_channels(loaded.model, split)
    model = loaded.model.to(device)
    start = time.perf_counter()
    canvas, _ = predict_and_stitch(model, split, settings.stitch_fraction, settings.phase_sync, settings.batch, device, bar)
    return canvas, time.perf_counter() - start


def setup_torch(threads: int, accelerator: str) -> torch.device:
    """Deterministic settings: fixed threads, deterministic kernels, the chosen device."""
    torch.set_num_threads(threads)
    if accelerator == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        if not torch.cuda.is_available():
            raise StudyError("the accelerator is cuda but this machine has no CUDA device; set it to cpu in params.yaml")
        torch.backends.cudnn.benchmark = False
        device = torch.device("cuda")
    else:
        device = torch.device("cpu")
    torch.use_deterministic_algorithms(True)
    return device
