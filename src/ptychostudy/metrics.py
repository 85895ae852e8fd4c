"""The study's one scoring path: regions, alignment and image-quality metrics, the same for every arm.

``score_arm`` scores one reconstruction against the truth; the comparison (Phase G), the scores
logged while training (Phase E) and the benchmarks all call it. In this order:

* regions (``regions``): ``scanned`` = where the summed probe intensity of the split's
  positions reaches a fraction of its maximum (``physics.place_patches``, the forward model's
  own adjoint); ``featured`` = that ∩ the object's featured region (``featured_mask``: the
  bounds are inclusive);
* registration, once per arm: sub-pixel registration of the amplitude against the truth
  inside the scanned region (cross-correlation peak refined on a 1/50 px grid, applied as a
  Fourier shift);
* alignment, per region (``align``): the global phase offset and linear phase ramp relative
  to the truth removed (least squares on the phase difference inside the region), and the
  mean amplitude matched to the truth's;
* the metrics (``score``).

Metrics (``score``), each computed on amplitude and on phase inside a boolean region:

* MAE, MSE; PSNR with the ground truth's data range (max − min inside the region) as peak.
* SSIM: 7×7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance (scikit-image's
  defaults), averaged over the window centres whose whole window lies in the region's
  bounding box and whose centre lies in the region. Phase is mapped to (φ + π)/2π
  (data range 1), amplitude uses the truth's range.
* MS-SSIM: PtychoPINN's variant — SSIM at every level, 2× decimation by striding,
  weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), negative SSIM clamped to 1e-4 — with as
  many levels as fit (the side stays ≥ 7 px) and the used weights renormalised to sum 1.
  The amplitude is pre-smoothed by a Gaussian of σ = ``compare.ms_ssim_sigma``; the phase
  never is. data range: the larger of the two images' ranges.
* FRC: Fourier ring correlation over the region, apodized inside it: both images times the same
  smooth window, the region's pixels at least 2σ from its edge blurred by a Gaussian of
  σ = ``compare.frc_apodization_px`` (weighted mean removed; the window is ~0 at the region's edge,
  so neither the region's outline nor a taper of its bounding box adds a correlated edge to both
  images: a blank object's FRC is ~0 at every ring), rings of width
  1/min(H, W) cycles per pixel up to 0.5, averaged over ``compare.frc_smooth_rings`` neighbouring
  rings; the last crossing of each threshold (0.5 and 1/7), linearly interpolated, in cycles per
  pixel and as a half-period resolution in pixels (1/(2f): 1 px at Nyquist). A curve that never
  falls below the threshold for good reports NaN ("never crossed"; null in JSON), never a number.
* Pearson r and the phase spread ratio (std of the phase / std of the true phase).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ptychostudy import physics

SSIM_WINDOW = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
FRC_THRESHOLDS = {"frc50": 0.5, "frc1_7": 1.0 / 7.0}
QUANTITIES = ("amplitude", "phase")
PARTS = ("featured", "scanned")
REGISTRATION_TAPER = 0.25  # Tukey taper of each side before the registration's cross-correlation


# ---------------------------------------------------------------------------------------
# helpers


def bounding_box(mask: np.ndarray) -> tuple[slice, slice]:
    rows = np.nonzero(mask.any(axis=1))[0]
    cols = np.nonzero(mask.any(axis=0))[0]
    if rows.size == 0:
        raise ValueError("the scoring region is empty")
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _filled(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` with the pixels outside ``mask`` set to its mean inside (no structure there)."""
    out = np.asarray(image, dtype=np.float64).copy()
    out[~mask] = out[mask].mean()
    return out


def fourier_shift(image: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Translate ``image`` by (dy, dx) px (content moves down/right), periodic, via the FFT."""
    image = np.asarray(image)
    ky = np.fft.fftfreq(image.shape[0])[:, None]
    kx = np.fft.fftfreq(image.shape[1])[None, :]
    shifted = np.fft.ifft2(np.fft.fft2(image) * np.exp(-2j * np.pi * (ky * dy + kx * dx)))
    return shifted if np.iscomplexobj(image) else shifted.real


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (truncated at 4σ, edges reflected)."""
    if sigma <= 0:
        return np.asarray(image, dtype=np.float64)
    radius = max(1, int(math.ceil(4 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    out = np.asarray(image, dtype=np.float64)
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect")
        out = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), axis, padded)
    return out


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r; 0 when either side is constant (up to rounding), as for a collapsed output."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale_a, scale_b = max(1.0, float(np.abs(a).max())), max(1.0, float(np.abs(b).max()))
    if a.std() <= 1e-6 * scale_a or b.std() <= 1e-6 * scale_b:
        return 0.0
    a = a - a.mean()
    b = b - b.mean()
    denom = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


# ---------------------------------------------------------------------------------------
# alignment


def register(moving: np.ndarray, reference: np.ndarray, mask: np.ndarray, max_shift: float,
             upsample: int = 50) -> tuple[float, float]:
    """Sub-pixel (dy, dx) that moves ``moving`` onto ``reference`` (real images, inside ``mask``'s box).

    Cross-correlation of the mean-removed, edge-tapered images (outside the mask: their
    mean; without the taper the crop's edges pull the peak towards zero shift); the
    integer peak is searched within ±``max_shift`` px, then refined to 1/``upsample`` px by
    evaluating the correlation's Fourier series on a fine grid around it (matrix-product DFT,
    as in Guizar-Sicairos et al., Opt. Lett. 33, 156 (2008)).
    """
    box = bounding_box(mask)
    m = _filled(moving, mask)[box]
    r = _filled(reference, mask)[box]
    window = np.outer(tukey(m.shape[0], REGISTRATION_TAPER), tukey(m.shape[1], REGISTRATION_TAPER))
    product = np.fft.fft2((r - r.mean()) * window) * np.conj(np.fft.fft2((m - m.mean()) * window))
    xc = np.fft.ifft2(product).real
    height, width = xc.shape
    limit = int(math.floor(max_shift))
    lags = np.arange(-limit, limit + 1)
    near = xc[np.ix_(lags % height, lags % width)]
    if near.max() <= 0:
        return 0.0, 0.0
    iy, ix = np.unravel_index(int(np.argmax(near)), near.shape)
    peak_y, peak_x = float(lags[iy]), float(lags[ix])
    fine = (np.arange(3 * upsample + 1) - 1.5 * upsample) / upsample  # ±1.5 px around the integer peak
    ky = np.fft.fftfreq(height)
    kx = np.fft.fftfreq(width)
    ey = np.exp(2j * np.pi * np.outer(peak_y + fine, ky))
    ex = np.exp(2j * np.pi * np.outer(kx, peak_x + fine))
    local = (ey @ product @ ex).real
    jy, jx = np.unravel_index(int(np.argmax(local)), local.shape)
    dy, dx = peak_y + fine[jy], peak_x + fine[jx]
    return float(np.clip(dy, -max_shift, max_shift)), float(np.clip(dx, -max_shift, max_shift))


def remove_phase_plane(recon: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``recon`` without the global phase offset and linear phase ramp relative to ``truth``."""
    recon = np.asarray(recon, dtype=np.complex128)
    truth = np.asarray(truth, dtype=np.complex128)
    offset = np.angle(np.sum((recon * np.conj(truth))[mask]))
    recon = recon * np.exp(-1j * offset)
    diff = np.angle(recon * np.conj(truth))
    rows, cols = np.nonzero(mask)
    design = np.stack([np.ones_like(rows), rows, cols], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, diff[mask], rcond=None)
    yy, xx = np.indices(recon.shape)
    return recon * np.exp(-1j * (coef[0] + coef[1] * yy + coef[2] * xx))


def align(recon: np.ndarray, truth: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``recon`` with its phase plane removed and its mean amplitude matched to ``truth``, both
    fitted inside ``region`` (registration is ``score_arm``'s first step, once per arm)."""
    recon = remove_phase_plane(recon, truth, region)
    mean_rec = np.abs(recon[region]).mean()
    if mean_rec > 0:
        recon = recon * (np.abs(truth[region]).mean() / mean_rec)
    return recon


# ---------------------------------------------------------------------------------------
# regions


def featured_mask(shape: tuple[int, int], featured: tuple[int, int, int, int]) -> np.ndarray:
    """The object's featured region (row0, row1, col0, col1; bounds inclusive) as a mask."""
    r0, r1, c0, c1 = featured
    mask = np.zeros(shape, dtype=bool)
    mask[r0 : r1 + 1, c0 : c1 + 1] = True
    return mask


def regions(split, threshold: float) -> dict[str, np.ndarray]:
    """{"featured", "scanned"} masks of a split (anything with ``probe`` (N, N), ``positions`` (n, 2) as
    (y, x) patch centres, ``truth`` and ``featured``, such as ``dataset.Split``): its scan lights
    ``scanned``; ``featured`` is the part of it in the object's structure."""
    probe = torch.as_tensor(np.asarray(split.probe))
    size = probe.shape[-1]
    positions = np.asarray(split.positions, dtype=np.float64)
    shape = np.shape(split.truth)
    power = (probe.abs() ** 2).to(torch.float32).expand(positions.shape[0], size, size)
    y0 = physics.top_left(torch.from_numpy(positions[:, 0]), size).to(torch.float32)
    x0 = physics.top_left(torch.from_numpy(positions[:, 1]), size).to(torch.float32)
    illumination = physics.place_patches(power, y0, x0, shape).numpy()
    scanned = illumination >= threshold * illumination.max()
    return {"featured": scanned & featured_mask(shape, split.featured), "scanned": scanned}


# ---------------------------------------------------------------------------------------
# metrics


def _window_sums(image: np.ndarray, size: int) -> np.ndarray:
    """Sum over every fully contained size×size window (valid positions)."""
    c = np.cumsum(np.cumsum(np.pad(image, ((1, 0), (1, 0))), axis=0), axis=1)
    return c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float, window: int = SSIM_WINDOW) -> np.ndarray:
    """SSIM at every valid window position (uniform window, sample covariance)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n = window * window
    mean_a = _window_sums(a, window) / n
    mean_b = _window_sums(b, window) / n
    cov_norm = n / (n - 1)
    var_a = cov_norm * (_window_sums(a * a, window) / n - mean_a**2)
    var_b = cov_norm * (_window_sums(b * b, window) / n - mean_b**2)
    cov = cov_norm * (_window_sums(a * b, window) / n - mean_a * mean_b)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    return ((2 * mean_a * mean_b + c1) * (2 * cov + c2)) / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2))


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray, data_range: float) -> float:
    """Mean SSIM over the windows centred inside ``mask`` (bounding box of ``mask``)."""
    box = bounding_box(mask)
    a, b, m = a[box], b[box], mask[box]
    half = SSIM_WINDOW // 2
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(f"the scoring region ({a.shape[0]}×{a.shape[1]}) is smaller than the SSIM window")
    values = ssim_map(_filled(a, m), _filled(b, m), data_range)
    centres = m[half : half + values.shape[0], half : half + values.shape[1]]
    return float(values[centres].mean()) if centres.any() else float(values.mean())


def ms_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray, data_range: float, sigma: float = 0.0) -> float:
    """PtychoPINN's multi-scale SSIM over the region's bounding box (see the module notes)."""
    box = bounding_box(mask)
    m = mask[box]
    a = gaussian_blur(_filled(a[box], m), sigma)
    b = gaussian_blur(_filled(b[box], m), sigma)
    values, weights = [], []
    for weight in MS_SSIM_WEIGHTS:
        if min(a.shape) < SSIM_WINDOW:
            break
        values.append(max(float(ssim_map(a, b, data_range).mean()), 1e-4))
        weights.append(weight)
        a, b = a[::2, ::2], b[::2, ::2]
    if not values:
        raise ValueError("the scoring region is smaller than the SSIM window")
    total = sum(weights)
    return float(np.prod([v ** (w / total) for v, w in zip(values, weights)]))


def tukey(length: int, fraction: float) -> np.ndarray:
    """A Tukey window: cosine tapers over ``fraction`` of the length at each end."""
    window = np.ones(length)
    width = int(round(fraction * length))
    if width > 0:
        ramp = 0.5 * (1 - np.cos(np.pi * (np.arange(width) + 0.5) / width))
        window[:width] = ramp
        window[length - width :] = ramp[::-1]
    return window


def frc_window(mask: np.ndarray, sigma: float) -> np.ndarray:
    """The FRC's apodization over ``mask``: its pixels at least 2σ from its edge (``detail_region``), blurred by a
    Gaussian of σ px — smooth, ~0 at the region's edge and beyond."""
    return gaussian_blur(detail_region(mask, sigma).astype(np.float64), sigma)


def frc_curve(a: np.ndarray, b: np.ndarray, mask: np.ndarray, apodization: float) -> tuple[np.ndarray, np.ndarray]:
    """(ring frequency in cycles per pixel, FRC) of the region, both images apodized by ``frc_window`` over the
    region's bounding box; ring 0 omitted.

    Why apodize inside the region: with the region's bounding box filled and tapered at its sides (the former rule),
    both images share the filled region's outline and the taper's edges, whose correlated high frequencies kept the
    FRC of even a blank object above 0.5 at Nyquist (41 of 78 study values read "never crossed")."""
    box = bounding_box(mask)
    window = frc_window(mask, apodization)[box]
    a, b = np.asarray(a, dtype=np.float64)[box], np.asarray(b, dtype=np.float64)[box]
    total = window.sum()
    height, width = a.shape
    fa = np.fft.fft2((a - (a * window).sum() / total) * window)
    fb = np.fft.fft2((b - (b * window).sum() / total) * window)
    radius = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :])
    step = 1.0 / min(height, width)
    ring = np.rint(radius / step).astype(np.int64)
    rings = int(round(0.5 / step))
    keep = (ring >= 1) & (ring <= rings)
    cross = np.bincount(ring[keep], weights=(fa * np.conj(fb)).real[keep], minlength=rings + 1)
    power_a = np.bincount(ring[keep], weights=(np.abs(fa) ** 2)[keep], minlength=rings + 1)
    power_b = np.bincount(ring[keep], weights=(np.abs(fb) ** 2)[keep], minlength=rings + 1)
    denom = np.sqrt(power_a * power_b)
    curve = np.where(denom > 0, cross / np.where(denom > 0, denom, 1.0), 0.0)[1:]
    return np.arange(1, rings + 1) * step, curve


def smooth_rings(curve: np.ndarray, rings: int) -> np.ndarray:
    """The FRC averaged over a window of ``rings`` neighbouring rings (fewer at the ends)."""
    if rings <= 1:
        return np.asarray(curve, dtype=np.float64)
    half = rings // 2
    padded = np.concatenate([[0.0], np.cumsum(curve, dtype=np.float64)])
    lo = np.clip(np.arange(len(curve)) - half, 0, len(curve))
    hi = np.clip(np.arange(len(curve)) + half + 1, 0, len(curve))
    return (padded[hi] - padded[lo]) / (hi - lo)


def frc_crossing(freqs: np.ndarray, curve: np.ndarray, threshold: float, smooth: int = 1) -> float:
    """Frequency (cycles/px) where the FRC, averaged over ``smooth`` neighbouring rings, falls below
    ``threshold`` for the last time, linearly interpolated; FRC(0) is taken as 1. NaN when it never falls below
    or is above the threshold again at Nyquist ("never crossed": no resolution can be read from it).

    The last crossing of the smoothed curve, not the first of the raw one: a noisy curve dips below ½ at some
    low ring and rises again, and the first crossing then jumps between seeds (3.0 px in one, 17.3 px in another)."""
    c = smooth_rings(curve, smooth)
    if c[-1] >= threshold:
        return math.nan
    f_prev, c_prev, found = 0.0, 1.0, math.nan
    for f, value in zip(freqs, c):
        if value < threshold <= c_prev:
            found = float(f_prev + (c_prev - threshold) / (c_prev - value) * (f - f_prev))
        f_prev, c_prev = f, value
    return found


def _phase_unit(phase: np.ndarray) -> np.ndarray:
    return (phase + np.pi) / (2 * np.pi)


def _without_plane(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` minus its least-squares plane a + b·y + c·x over ``mask``."""
    rows, cols = np.nonzero(mask)
    design = np.stack([np.ones(rows.size), rows, cols], axis=1).astype(np.float64)
    coef = np.linalg.lstsq(design, np.asarray(image, dtype=np.float64)[mask], rcond=None)[0]
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    return np.asarray(image, dtype=np.float64) - (coef[0] + coef[1] * yy + coef[2] * xx)


def detail(image: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """The fine detail of ``image``: the image, less its plane over ``mask`` (a ramp has no detail, and the filled
    border would otherwise turn it into some), minus its Gaussian blur of ``sigma`` px (the pixels outside ``mask``
    filled with the mean inside first). Trust it only inside ``detail_region``. A blank object's aligned phase is
    a plane: its detail is zero and its detail r 0."""
    filled = _filled(_without_plane(image, mask), mask)
    return filled - gaussian_blur(filled, sigma)


def detail_region(mask: np.ndarray, sigma: float) -> np.ndarray:
    """The pixels of ``mask`` at least 2σ from its edge and from the image's (a square of side 4σ + 1 around
    each lies in the mask): there the blur hardly reaches the filled pixels or the reflected border, whose
    artificial edges would otherwise add the same detail to every image."""
    radius = int(math.ceil(2 * sigma))
    size = 2 * radius + 1
    inside = _window_sums(np.pad(mask.astype(np.float64), radius), size) >= size * size - 0.5
    if not inside.any():
        raise ValueError(f"the scoring region holds no pixel {radius} px from its edge: lower compare.detail_sigma_px")
    return inside


def score(aligned: np.ndarray, truth: np.ndarray, mask: np.ndarray, ms_ssim_sigma: float | None,
          frc_apodization: float | None, *, full: bool = True, detail_sigma: float | None = None,
          frc_smooth: int = 1) -> dict:
    """{quantity: {metric: value}} for amplitude and phase inside ``mask``.

    ``full=False`` computes the pixel metrics only (MAE, MSE, PSNR, Pearson r, spread ratio):
    no SSIM, MS-SSIM, FRC or detail r, so ``ms_ssim_sigma``, ``frc_apodization`` and ``detail_sigma`` are not
    used. The phase's ``detail_r`` is the Pearson r of the high-passed phases (``detail``): what phase r,
    carried by the low frequencies, hardly sees."""
    if not np.any(mask):
        raise ValueError("the scoring region is empty")
    aligned = np.asarray(aligned, dtype=np.complex128)
    truth = np.asarray(truth, dtype=np.complex128)
    out = {}
    for quantity in QUANTITIES:
        if quantity == "amplitude":
            rec, tru = np.abs(aligned), np.abs(truth)
            unit_rec, unit_tru = rec, tru
            sigma = ms_ssim_sigma
        else:
            rec, tru = np.angle(aligned), np.angle(truth)
            unit_rec, unit_tru = _phase_unit(rec), _phase_unit(tru)
            sigma = 0.0
        r, t = rec[mask], tru[mask]
        data_range = float(t.max() - t.min())
        err = r - t
        mse = float(np.mean(err**2))
        unit_t = unit_tru[mask]
        ssim_range = data_range if quantity == "amplitude" else 1.0
        ms_range = max(data_range, float(r.max() - r.min())) if quantity == "amplitude" else max(
            float(unit_t.max() - unit_t.min()), float(unit_rec[mask].max() - unit_rec[mask].min()))
        metrics = {
            "mae": float(np.mean(np.abs(err))),
            "mse": mse,
            "psnr": float(10 * math.log10(data_range**2 / mse)) if mse > 0 and data_range > 0 else float("inf"),
        }
        if full:
            metrics["ssim"] = ssim(unit_rec, unit_tru, mask, ssim_range)
            metrics["ms_ssim"] = ms_ssim(unit_rec, unit_tru, mask, ms_range, sigma)
        metrics["pearson_r"] = pearson(r, t)
        if full:
            freqs, curve = frc_curve(rec, tru, mask, frc_apodization)
            for name, threshold in FRC_THRESHOLDS.items():
                f = frc_crossing(freqs, curve, threshold, frc_smooth)
                metrics[f"{name}_cycles_per_px"] = f
                metrics[f"{name}_resolution_px"] = 1.0 / (2.0 * f)  # NaN: never crossed
        if quantity == "phase":
            metrics["spread_ratio"] = float(r.std() / t.std()) if t.std() > 0 else 0.0
            if full and detail_sigma is not None:
                inner = detail_region(mask, detail_sigma)
                metrics["detail_r"] = pearson(detail(rec, mask, detail_sigma)[inner], detail(tru, mask, detail_sigma)[inner])
        out[quantity] = metrics
    return out


# ---------------------------------------------------------------------------------------
# one arm


@dataclass
class ArmScore:
    scores: dict  # {part: {quantity: {metric: value}}}
    aligned: dict  # {part: the aligned reconstruction}
    shift: tuple[float, float]  # (dy, dx) px applied by the registration


def score_arm(recon: np.ndarray, truth: np.ndarray, masks: dict[str, np.ndarray], settings, parts=PARTS,
              *, full: bool = True) -> ArmScore:
    """Score one reconstruction: registration once (inside ``masks["scanned"]``, at most
    ``settings.max_shift_px``), then per part the alignment and the metrics (``settings``:
    the ``compare`` section; with ``full=False`` only its ``max_shift_px`` is used)."""
    recon = np.asarray(recon, dtype=np.complex128)
    shift = (0.0, 0.0)
    if settings.max_shift_px > 0:
        shift = register(np.abs(recon), np.abs(truth), masks["scanned"], settings.max_shift_px)
    if shift[0] or shift[1]:
        recon = fourier_shift(recon, *shift)
    scores, aligned = {}, {}
    for part in parts:
        aligned[part] = align(recon, truth, masks[part])
        scores[part] = score(aligned[part], truth, masks[part], settings.ms_ssim_sigma if full else None,
                             settings.frc_apodization_px if full else None, full=full,
                             detail_sigma=settings.detail_sigma_px if full else None,
                             frc_smooth=settings.frc_smooth_rings if full else 1)
    return ArmScore(scores, aligned, shift)
