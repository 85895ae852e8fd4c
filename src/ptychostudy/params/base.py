"""params ``base``: the real probe and object and how they are prepared (module base.py)."""

from __future__ import annotations

from dataclasses import dataclass

from ptychostudy.params import ParamsError, Section, key


@dataclass(frozen=True)
class BaseParams(Section):
    SECTION = "base"

    probe_sha256: str = key("SHA-256 of the probe file", kind="sha256")
    object_sha256: str = key("SHA-256 of the object file", kind="sha256")
    object_zoom: int = key("integer zoom of the object (trigonometric interpolation)", min=1, max=16)
    probe_zoom: int = key("integer zoom of the probe (trigonometric interpolation)", min=1, max=16)
    patch_size: int = key("N: pixels per side of a pattern (the probe side × probe_zoom)", max=1024)

    def check(self, p) -> None:
        if self.patch_size < 8 or self.patch_size % 2:
            raise ParamsError(f"base.patch_size must be an even number of pixels ≥ 8, got {self.patch_size}")

    def check_probe(self, probe_side: int) -> None:
        """The patch size must equal the (zoomed) probe's side, known once the probe file is read."""
        expected = probe_side * self.probe_zoom
        if self.patch_size != expected:
            raise ParamsError(f"base.patch_size = {self.patch_size} disagrees with the probe: a {probe_side}×{probe_side} "
                              f"probe zoomed {self.probe_zoom}× is {expected} px; set base.patch_size: {expected}")
