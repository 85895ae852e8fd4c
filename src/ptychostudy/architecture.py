"""The network's description: what rebuilds it from a bundle, and the one owner of its shape rules.

Kept free of torch so that validating params.yaml (``config``) can apply the same rules the
network does without importing the network.
"""

from __future__ import annotations

from dataclasses import dataclass

INPUTS = ("amplitude", "backprojection")


@dataclass(frozen=True)
class Architecture:
    """Everything needed to rebuild the network (stored in every bundle's description)."""

    size: int  # N, pixels per side of a pattern and of a patch
    channels: int  # C = gridsize²
    canvas: int  # side of the group's common frame the CNN works on (= size for C = 1)
    filters: int  # width of the first encoder level; level i has filters · 2^i
    depth: int  # encoder levels (each halves the size)
    support: float  # side of the predicted central square, as a fraction of N
    amplitude_max: float  # upper bound of the amplitude activation
    skips: bool  # U-Net skip connections between encoder and decoder levels
    inputs: str  # "amplitude": normalised sqrt(counts); "backprojection": see ``model.Backprojection``
    stride: int  # the object is decoded on a grid of this many px per sample, then interpolated (1 = every pixel)

    def check(self) -> None:
        """Raise ``ValueError`` naming the first rule the architecture breaks."""
        if self.inputs not in INPUTS:
            raise ValueError(f"unknown network input {self.inputs!r}; allowed: {', '.join(INPUTS)}")
        for name in ("size", "channels", "canvas", "filters", "depth", "stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be 1 or more, got {getattr(self, name)}")
        if not 0.0 < self.support <= 1.0:
            raise ValueError(f"support must lie in (0, 1] (a fraction of the patch side), got {self.support}")
        if self.amplitude_max <= 0:
            raise ValueError(f"amplitude_max must be positive, got {self.amplitude_max}")
        if self.size % (2**self.depth):
            raise ValueError(f"the patch size N = {self.size} must be divisible by 2^depth = {2**self.depth}")
        if self.channels == 1 and self.canvas != self.size:
            raise ValueError(f"a one-pattern group works on its patch: the canvas must equal N = {self.size}, got {self.canvas}")
        if self.inputs == "amplitude" and self.canvas != self.size:
            raise ValueError(
                f"amplitude inputs live on the detector, not on the object's frame: the canvas must equal N = {self.size}, "
                f"got {self.canvas}"
            )
        if self.canvas < self.size or self.canvas % (2**self.depth):
            raise ValueError(
                f"the canvas = {self.canvas} must be at least the patch size N = {self.size} "
                f"and divisible by 2^depth = {2**self.depth}"
            )

        if self.canvas % self.stride:
            raise ValueError(f"the object grid of {self.stride} px per sample must divide the canvas = {self.canvas}")

    @property
    def input_channels(self) -> int:
        return self.channels if self.inputs == "amplitude" else 3 * self.channels
