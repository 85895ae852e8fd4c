"""Band-limited resampling: trigonometric (DFT) interpolation and sub-pixel shifts, in NumPy.

The base step interpolates the real object with it, and Phase C's simulator (simulator.py) makes its
finer grid with it, so that no arm's basis (bilinear patches, the gradient solver's coarse bilinear
grids) holds the simulated object. The band is the one an n-point FFT holds: frequencies −n/2 … n/2−1
per axis for even n (the Nyquist bin whole, never split), −(n−1)/2 … (n−1)/2 for odd n.
"""

from __future__ import annotations

import numpy as np


def _bins(n: int) -> np.ndarray:
    """Integer frequencies of an n-point FFT in its own order (np.fft.fftfreq · n)."""
    return np.rint(np.fft.fftfreq(n) * n).astype(np.int64)


def fourier_zoom(image: np.ndarray, factor: int) -> np.ndarray:
    """The image's trigonometric interpolant sampled ``factor``× finer: sample (i, j) of the result is the
    interpolant at (i / factor, j / factor), so every ``factor``-th sample is the input's own. Complex128."""
    image = np.asarray(image, dtype=np.complex128)
    if factor == 1:
        return image.copy()
    h, w = image.shape
    spectrum = np.fft.fft2(image)
    padded = np.zeros((h * factor, w * factor), dtype=np.complex128)
    padded[np.ix_(_bins(h) % (h * factor), _bins(w) % (w * factor))] = spectrum
    return np.fft.ifft2(padded) * factor**2


def band_limit(image: np.ndarray, factor: int) -> np.ndarray:
    """The inverse of ``fourier_zoom``: keep the band of the ``factor``× coarser grid and sample it there
    (every ``factor``-th sample of the band-limited image). Complex128."""
    image = np.asarray(image, dtype=np.complex128)
    if factor == 1:
        return image.copy()
    big_h, big_w = image.shape
    if big_h % factor or big_w % factor:
        raise ValueError(f"a {big_h}×{big_w} image is not a whole number of {factor}× coarser samples")
    h, w = big_h // factor, big_w // factor
    spectrum = np.fft.fft2(image)[np.ix_(_bins(h) % big_h, _bins(w) % big_w)]
    return np.fft.ifft2(spectrum) / factor**2


def shift_ramp(size: int, fy: np.ndarray, fx: np.ndarray) -> np.ndarray:
    """(k, size, size) factors that, applied to an FFT, shift each image's content by (+fy, +fx) samples
    (periodically): image(y - fy, x - fx)."""
    u = _bins(size).astype(np.float64)
    ry = np.exp(-2j * np.pi * np.outer(np.asarray(fy, dtype=np.float64), u) / size)
    rx = np.exp(-2j * np.pi * np.outer(np.asarray(fx, dtype=np.float64), u) / size)
    return ry[:, :, None] * rx[:, None, :]
