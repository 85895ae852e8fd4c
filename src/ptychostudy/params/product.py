"""params ``product``: ptychodus product files (module product.py): the NOMINAL physical scales that label them.

The study is computed in pixels and photons; the object pixel is λ·z / (N·detector pixel), with λ from the
photon energy and N = base.patch_size."""

from __future__ import annotations

from dataclasses import dataclass

from ptychostudy.params import Section, key


@dataclass(frozen=True)
class ProductParams(Section):
    SECTION = "product"

    photon_energy_eV: float = key("photon energy", gt=0)
    detector_distance_m: float = key("sample to detector", gt=0)
    detector_pixel_m: float = key("detector pixel side", gt=0)
    exposure_time_s: float = key("exposure per pattern", gt=0)
