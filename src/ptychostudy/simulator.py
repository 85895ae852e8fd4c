"""Phase C's forward model: finer than any arm's, so that no arm reconstructs with the simulator's model.

The object and the probe are sampled ``factor``× finer than the study's pixel by trigonometric
interpolation (resample.py: the base object is itself the band-limited interpolant of the real
Run1084 array), each scan position is continuous (the object cut at the nearest fine sample, the
probe Fourier-shifted by the remainder), the exit wave ψ = P·O is propagated to the far field by an
orthonormal (N·factor)-point FFT, and the detector keeps its central N × N: the band −N/2 … N/2−1
that an N-point FFT on the study's grid holds (the Nyquist bin whole). Every arm reconstructs on the
study's grid with its own model (physics.py for ours, pty-chi's for pty-chi): each faces a mismatch,
measured by mismatch.py and reported by the simulate stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ptychostudy import StudyError
from ptychostudy.resample import fourier_zoom, shift_ramp


@dataclass(frozen=True)
class FineModel:
    factor: int  # fine samples per study pixel along each axis
    n: int  # detector side (= the study's patch size N)
    obj: np.ndarray  # (H·factor, W·factor) complex128
    probe_spectrum: np.ndarray  # (N·factor)² FFT of the fine probe

    @property
    def size(self) -> int:
        return self.n * self.factor


def fine_model(obj: np.ndarray, probe: np.ndarray, factor: int) -> FineModel:
    """The object (study grid) and the unit-power probe (N × N) on the fine grid."""
    n = probe.shape[-1]
    fine_probe = fourier_zoom(probe, factor)
    return FineModel(factor, n, fourier_zoom(obj, factor), np.fft.fft2(fine_probe))


def unscaled_intensities(model: FineModel, positions: np.ndarray) -> np.ndarray:
    """(k, N, N) float64 |far field|² at scale 1 (study units: the same probe and object on the study's
    grid give these counts through physics.py at scale 1, up to the model mismatch) for patch centres
    ``positions`` ((k, 2) as (x, y), study pixels)."""
    f, n, m = model.factor, model.n, model.size
    top_left = (np.asarray(positions, dtype=np.float64) - n / 2) * f  # (x, y) on the fine grid
    nearest = np.floor(top_left + 0.5).astype(np.int64)
    rest = top_left - nearest  # in [-0.5, 0.5)
    height, width = model.obj.shape
    if nearest.min() < 0 or (nearest[:, 1] + m).max() > height or (nearest[:, 0] + m).max() > width:
        raise StudyError(f"a scan position's patch reaches outside the {height // f}×{width // f} object")
    span = np.arange(m)
    rows = nearest[:, 1, None, None] + span[None, :, None]
    cols = nearest[:, 0, None, None] + span[None, None, :]
    patches = model.obj[rows, cols]
    # the probe moved by the remainder: the object sample at fine index nearest + j lies at probe coordinate j - rest
    probes = np.fft.ifft2(model.probe_spectrum[None] * shift_ramp(m, rest[:, 1], rest[:, 0]))
    far = np.fft.fftshift(np.fft.fft2(probes * patches, norm="ortho"), axes=(-2, -1))
    lo = m // 2 - n // 2
    cropped = far[:, lo : lo + n, lo : lo + n]
    return (cropped.real**2 + cropped.imag**2) / f**2  # the fine FFT's band is f× the study FFT's (Parseval)
