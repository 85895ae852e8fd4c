"""params ``infer``: how a trained network reconstructs a split (module infer.py; Phase G, product, refine).

That the stitched fraction lies within the network's ``train.support`` is checked by check-params (module
config) and, at run time, against the bundle's own architecture."""

from __future__ import annotations

from dataclasses import dataclass

from ptychostudy.params import ParamsError, Section, key


@dataclass(frozen=True)
class InferParams(Section):
    SECTION = "infer"

    stitch_fraction: float = key("central fraction of each patch kept when stitching")
    phase_sync: bool = key("align each patch's unknown phase offset before averaging")
    batch: int = key("patterns (or groups) per network forward pass", min=1, max=65_536)
    threads: int = key("torch threads", min=1, max=256)
    accelerator: str = key("where the network runs", choices=("cpu", "cuda"))

    def check(self, p) -> None:
        if not 0.0 < self.stitch_fraction <= 1.0:
            raise ParamsError(f"infer.stitch_fraction must lie in (0, 1] (a fraction of the patch side), got {self.stitch_fraction}")
