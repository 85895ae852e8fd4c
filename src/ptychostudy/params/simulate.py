"""params ``simulate``: Phase C, the diffraction data of each dose (module simulate.py)."""

from __future__ import annotations

from dataclasses import dataclass

from ptychostudy.params import ParamsError, Section, key
from ptychostudy.params.base import BaseParams


@dataclass(frozen=True)
class SimulateParams(Section):
    SECTION = "simulate"
    NEEDS = (BaseParams,)

    seed: int = key("scan positions and Poisson counts (derived per dose and split)", min=0)
    positions_per_split: int = key("random patch centres drawn in each split", min=1, max=1_000_000)
    split_axis: str = key("train = low side, test = high side of this axis", choices=("y", "x"))
    guard_band_px: int = key("object rows read by neither split (≥ base.patch_size)")
    fine_factor: int = key("the simulator's grid: this many samples per study pixel along each axis", min=1, max=8)
    threads: int = key("torch threads", min=1, max=256)

    def check(self, p) -> None:
        if self.guard_band_px < p.base.patch_size:
            raise ParamsError(f"simulate.guard_band_px must be at least the patch size base.patch_size = "
                              f"{p.base.patch_size} px, got {self.guard_band_px}")
