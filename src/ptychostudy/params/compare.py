"""params ``compare``: Phase G and the one scoring path (metrics.score_arm): regions, alignment, metrics."""

from __future__ import annotations

from dataclasses import dataclass

from ptychostudy.params import ParamsError, Section, key


@dataclass(frozen=True)
class CompareParams(Section):
    SECTION = "compare"

    scanned_threshold: float = key("scanned region: summed probe intensity ≥ this × its maximum")
    max_shift_px: float = key("largest registration shift searched (px)", min=0, max=1000)
    ms_ssim_sigma: float = key("Gaussian pre-smoothing of the amplitude before MS-SSIM (0 = off)", min=0, max=100)
    frc_apodization_px: float = key("σ (px) of the FRC's smooth window inside the region (metrics.frc_window)", gt=0,
                                    max=64)
    frc_smooth_rings: int = key("rings the FRC is averaged over before its last crossing is read", min=1, max=101)
    detail_sigma_px: float = key("phase detail r: the phase minus its Gaussian blur of this σ (px)", gt=0, max=1000)

    def check(self, p) -> None:
        if not 0.0 < self.scanned_threshold < 1.0:
            raise ParamsError(f"compare.scanned_threshold must lie in (0, 1) (a fraction of the peak illumination), "
                              f"got {self.scanned_threshold}")
