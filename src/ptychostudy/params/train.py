"""params ``train``: Phase E, one network per dose × view (module train.py), and the network's shape."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ptychostudy.architecture import INPUTS, Architecture
from ptychostudy.params import ParamsError, Section, key
from ptychostudy.params.base import BaseParams
from ptychostudy.params.study import StudyParams, per_view
from ptychostudy.params.views import ViewsParams

ACCELERATORS = ("cpu", "cuda")


@dataclass(frozen=True)
class TrainParams(Section):
    SECTION = "train"
    NEEDS = (BaseParams, ViewsParams, StudyParams)

    seed: int = key("weights and batch order (derived per job with the dose and view)", min=0)
    threads: int = key("torch threads (fixed: results are bit-reproducible)", min=1, max=256)
    accelerator: str = key("where the network trains", choices=ACCELERATORS)
    batch_size: int = key("groups per optimiser step", min=1, max=65_536)
    learning_rate: float = key("Adam's step, cosine decay from this ...", gt=0)
    learning_rate_final: float = key("... to this at the last step", gt=0)
    steps_per_epoch: int = key("optimiser steps per epoch", min=1, max=1_000_000)
    epochs: Mapping[str, int] = key("each view name to its number of epochs", min=1, max=100_000)
    filters: int = key("width of the first encoder level", min=1, max=4096)
    depth: int = key("encoder levels (each halves the size)", min=1, max=12)
    canvas: Mapping[str, int] = key("each view name to its frame side in pixels", max=4096)
    support: float = key("side of the predicted square, a fraction of N")
    amplitude_max: float = key("upper bound of the amplitude activation", gt=0)
    skips: bool = key("U-Net skip connections")
    inputs: str = key("what the network sees", choices=INPUTS)
    object_stride: Mapping[int, int] = key("a dose (photons per pattern, from which on it applies) to px per object sample")
    augment: str = key("each group's frame in a random orientation while training", choices=("none", "dihedral"))
    eval_every: int = key("epochs between scores while training (0: the last epoch only)")
    eval_patterns: int = key("scores while training: at most this many patterns per split", min=1, max=1_000_000)
    eval_stitch_fraction: float = key("stitching of those scores: central fraction of each patch kept")
    eval_phase_sync: bool = key("stitching of those scores: align each patch's phase offset")

    def object_stride_at(self, dose: float) -> int:
        """px per object sample of the network at ``dose``: the entry of the largest listed dose ≤ ``dose``."""
        listed = [d for d in self.object_stride if d <= dose]
        if not listed:
            raise ParamsError(f"train.object_stride lists no dose at or below {dose:g} photons per pattern "
                              f"(its smallest is {min(self.object_stride)}); add one, for example 0")
        return self.object_stride[max(listed)]

    def check(self, p) -> None:
        for dose, k in self.object_stride.items():
            if dose < 0 or k < 1:
                raise ParamsError(f"train.object_stride maps doses ≥ 0 to grids of 1 px per sample or more, got {dose}: {k}")
        if self.augment == "dihedral" and self.inputs != "backprojection":
            raise ParamsError("train.augment: dihedral turns the object-space frame; it needs train.inputs: backprojection")
        if self.eval_every < 0:
            raise ParamsError(f"train.eval_every must be 0 (the last epoch only) or more, got {self.eval_every}")
        if not self.learning_rate_final <= self.learning_rate:
            raise ParamsError(f"train.learning_rate ({self.learning_rate}) and train.learning_rate_final "
                              f"({self.learning_rate_final}) must satisfy 0 < learning_rate_final ≤ learning_rate")
        for name in ("support", "eval_stitch_fraction"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ParamsError(f"train.{name} must lie in (0, 1] (a fraction of the patch side), got {getattr(self, name)}")
        check_stitch(self.eval_stitch_fraction, "train.eval_stitch_fraction", self.support)
        per_view(p, "train.canvas", self.canvas)
        per_view(p, "train.epochs", self.epochs)
        for view in p.study.views:
            for dose in p.study.doses:
                try:
                    architecture(p, view, dose).check()  # the network's own shape rules (architecture.py)
                except ValueError as exc:
                    raise ParamsError(f"train: the network of view {view!r} (base.patch_size, train.canvas.{view}, "
                                      f"train.depth, ...) is impossible: {exc}") from None


def check_stitch(fraction: float, key: str, support: float) -> None:
    if fraction > support:
        raise ParamsError(f"{key} ({fraction}) must not exceed train.support ({support}): only predicted pixels can be stitched")


def architecture(p, view: str, dose: float, size: int | None = None) -> Architecture:
    """The network of one view's jobs at ``dose`` photons per pattern, from ``base``, ``views`` and ``train``
    (``size``: N other than ``base.patch_size``, for the measured data's cropped patterns)."""
    t = p.train
    gridsize = p.view(view).gridsize
    return Architecture(size=p.base.patch_size if size is None else size, channels=gridsize * gridsize,
                        canvas=t.canvas[view], filters=t.filters, depth=t.depth, support=t.support,
                        amplitude_max=t.amplitude_max, skips=t.skips, inputs=t.inputs, stride=t.object_stride_at(dose))
