"""The one forward model of the networks and solvers we write, in PyTorch.

Used by the network's physics head, its refinement, the gradient solver and the metrics code, so
that a sign or scale convention can never differ between them. The simulator (Phase C) is finer
than this model on purpose (simulator.py): no arm reconstructs with the model that made its data,
and mismatch.py measures how far each arm's model is from it.

Conventions
-----------
* Images are indexed ``[row, column]`` = ``[y, x]``; pixel ``(i, j)`` has its centre at
  coordinate ``(y, x) = (i, j)``.
* A scan position ``(x, y)`` is the *centre* of its N×N patch, in object pixels, sub-pixel.
  Patch pixel ``(i, j)`` samples the object at ``(y - N/2 + i, x - N/2 + j)``, so an
  integer position ``(x, y)`` covers rows ``y - N/2 … y + N/2 - 1``.
* Sub-pixel sampling is bilinear (one operator, ``extract_patches``; its adjoint is
  ``place_patches``). Bilinear resampling low-passes a little: part of this model's
  mismatch with the band-limited simulation.
* Far field: orthonormal 2-D FFT (Parseval: Σ|Ψ|² = Σ|ψ|²), zero frequency moved to the
  array centre.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ptychostudy import StudyError


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def top_left(centres: torch.Tensor, size: int) -> torch.Tensor:
    """Top-left sample coordinate of a ``size``-pixel patch centred at ``centres``."""
    return centres - size / 2


def sample_corners(start: torch.Tensor, size: int):
    """Integer base index and fractional weight of each sample along one axis."""
    base = torch.floor(start)
    frac = start - base
    idx = base.to(torch.int64)[..., None] + torch.arange(size, device=start.device)
    return idx, frac


def bilinear_taps(fy: torch.Tensor, fx: torch.Tensor):
    """The four bilinear taps: (row step, column step, weight), weights broadcast over a patch."""
    wy = fy[..., None, None]
    wx = fx[..., None, None]
    return (
        (0, 0, (1 - wy) * (1 - wx)),
        (0, 1, (1 - wy) * wx),
        (1, 0, wy * (1 - wx)),
        (1, 1, wy * wx),
    )


def extract_patches(image, y0, x0, size: int, *, check_bounds: bool = True) -> torch.Tensor:
    """Cut ``size``×``size`` patches whose top-left samples are at ``(y0, x0)``.

    ``image`` is (H, W) or (B, H, W); ``y0``/``x0`` are (k,) for a 2-D image, or (B, k)
    for a batch (patch k of batch b is cut from image b). Returns (k, size, size) or
    (B, k, size, size). Bilinear in both axes, differentiable in the image and in the
    positions. With ``check_bounds`` a sample outside the image is an error; otherwise
    the image is taken as zero outside.
    """
    image = _as_tensor(image)
    y0 = _as_tensor(y0).to(image.real.dtype)
    x0 = _as_tensor(x0).to(image.real.dtype)
    batched = image.ndim == 3
    if not batched:
        image, y0, x0 = image[None], y0[None], x0[None]
    nb, height, width = image.shape
    iy, fy = sample_corners(y0, size)  # (B, k, size), (B, k)
    ix, fx = sample_corners(x0, size)
    if check_bounds:
        lo_y, hi_y = int(iy.min()), int(iy.max()) + 1
        lo_x, hi_x = int(ix.min()), int(ix.max()) + 1
        if lo_y < 0 or lo_x < 0 or hi_y > height - 1 or hi_x > width - 1:
            raise StudyError(
                f"a {size}-px patch reaches outside the {height}×{width} image "
                f"(rows {lo_y}…{hi_y}, columns {lo_x}…{hi_x})"
            )
        padded = image
    else:
        pad = size + 2
        padded = torch.nn.functional.pad(
            torch.view_as_real(image).permute(0, 3, 1, 2) if image.is_complex() else image[:, None],
            (pad, pad, pad, pad),
        )
        padded = (
            torch.view_as_complex(padded.permute(0, 2, 3, 1).contiguous())
            if image.is_complex()
            else padded[:, 0]
        )
        iy = (iy + pad).clamp(0, height + 2 * pad - 2)
        ix = (ix + pad).clamp(0, width + 2 * pad - 2)
    b = torch.arange(nb, device=image.device)[:, None, None, None]
    rows = iy[:, :, :, None]
    cols = ix[:, :, None, :]
    patches = None
    for dy, dx, weight in bilinear_taps(fy, fx):
        tap = padded[b, rows + dy, cols + dx] * weight
        patches = tap if patches is None else patches + tap
    return patches if batched else patches[0]


def place_patches(patches, y0, x0, shape: tuple[int, int], *, host_checks: bool | None = None) -> torch.Tensor:
    """The adjoint of ``extract_patches``: scatter-add patches onto an image of ``shape``.

    ``patches`` (k, n, n) with top-left positions ``y0``/``x0`` (k,) give an (H, W) image;
    (B, k, n, n) with (B, k) positions give (B, H, W). Bilinear weights as in
    ``extract_patches``; samples outside the image are dropped.

    Each sample outside the image is added to a spare slot of its own beyond the image, then dropped: every
    pixel inside receives the same additions in the same order as a selection of the inside samples would give
    (the same image bit for bit), without the selection's cost (4x on a CPU for a training step's frame). One
    shared slot would serialise a GPU's deterministic accumulation. ``host_checks`` (default: on the CPU only):
    read on the host whether every sample lies inside (then no spare slots) and skip a tap whose weight is 0
    everywhere (whole-pixel positions); off, nothing is read back — on a GPU such a read waits for the whole
    queue.
    """
    patches = _as_tensor(patches)
    dtype = patches.real.dtype
    y0 = _as_tensor(y0).to(dtype)
    x0 = _as_tensor(x0).to(dtype)
    batched = patches.ndim == 4
    if not batched:
        patches, y0, x0 = patches[None], y0[None], x0[None]
    nb, size = patches.shape[0], patches.shape[-1]
    height, width = shape
    iy, fy = sample_corners(y0, size)  # (B, k, size)
    ix, fx = sample_corners(x0, size)
    complex_input = patches.is_complex()
    values = torch.view_as_real(patches) if complex_input else patches[..., None]
    if host_checks is None:
        host_checks = patches.device.type == "cpu"
    pixels = nb * height * width
    all_inside = host_checks and (int(iy.min()) >= 0 and int(ix.min()) >= 0 and int(iy.max()) + 1 < height
                                  and int(ix.max()) + 1 < width)
    samples = 0 if all_inside else values[..., 0].numel()  # per tap: the spare slots
    out = torch.zeros((pixels + samples, values.shape[-1]), dtype=dtype, device=patches.device)
    batch_offset = (torch.arange(nb, device=patches.device) * height * width)[:, None, None, None]
    base = batch_offset + iy[:, :, :, None] * width + ix[:, :, None, :]
    spare = None if all_inside else pixels + torch.arange(samples, device=base.device).reshape(base.shape)
    for dy, dx, weight in bilinear_taps(fy, fx):
        if host_checks and not bool(weight.any()):  # a tap of weight 0 everywhere (whole-pixel positions: a
            continue  # gridsize-1 network's frame) adds only zeros: skipped, the same image for finite patches
        flat = base + (dy * width + dx)
        if not all_inside:
            rows = (iy + dy)[:, :, :, None]
            cols = (ix + dx)[:, :, None, :]
            flat = torch.where((rows >= 0) & (rows < height) & (cols >= 0) & (cols < width), flat, spare)
        out.index_add_(0, flat.reshape(-1), (values * weight[..., None]).reshape(-1, values.shape[-1]))
    out = out[:pixels]
    out = torch.view_as_complex(out) if complex_input else out[:, 0]
    out = out.reshape(nb, height, width)
    return out if batched else out[0]


def central_support(size: int, fraction: float = 0.5, dtype=torch.float32) -> torch.Tensor:
    """A size×size mask that is 1 on the central ``fraction·size`` square and 0 elsewhere."""
    inner = int(round(size * fraction))
    start = (size - inner) // 2
    mask = torch.zeros(size, size, dtype=dtype)
    mask[start : start + inner, start : start + inner] = 1
    return mask


def merge_patches(patches, y0, x0, support, shape: tuple[int, int], eps: float = 1e-3):
    """Average overlapping patches on a canvas: Σ place(support·patch) / Σ place(support).

    The numerator is masked by the same ``support`` as the count, so that pixels covered
    by no support stay zero instead of being amplified. Used for the network's real-space
    overlap constraint (merge a group, then cut it out again) and for stitching a whole
    reconstruction. Returns (canvas, count); shapes follow ``place_patches``.
    """
    patches = _as_tensor(patches)
    support = _as_tensor(support).to(patches.real.dtype)
    numerator = place_patches(patches * support, y0, x0, shape)
    count = place_patches(support.expand(patches.shape), y0, x0, shape)
    covered = count > eps
    canvas = torch.where(covered, numerator / torch.where(covered, count, torch.ones_like(count)), torch.zeros_like(numerator))
    return canvas, count


def shift_image(image, dy: float, dx: float) -> torch.Tensor:
    """Translate ``image`` by (dy, dx) pixels (content moves down/right for positive values).

    Bilinear, zero outside; the output has the input's shape.
    """
    image = _as_tensor(image)
    height, width = image.shape[-2:]
    assert height == width, "shift_image handles square images"
    y0 = torch.tensor([-float(dy)], dtype=image.real.dtype)
    x0 = torch.tensor([-float(dx)], dtype=image.real.dtype)
    return extract_patches(image, y0, x0, height, check_bounds=False)[0]


def far_field(exit_wave: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D FFT over the last two axes, zero frequency at the centre."""
    return torch.fft.fftshift(torch.fft.fft2(exit_wave, norm="ortho"), dim=(-2, -1))


def inverse_far_field(field: torch.Tensor) -> torch.Tensor:
    """The inverse of ``far_field``: undo the centring, orthonormal inverse 2-D FFT."""
    return torch.fft.ifft2(torch.fft.ifftshift(field, dim=(-2, -1)), norm="ortho")


def exit_waves(probe: torch.Tensor, object_patches: torch.Tensor) -> torch.Tensor:
    """Thin-object exit waves ψ = P · O_patch."""
    return probe * object_patches


def expected_intensity(probe, object_patches, scale: float = 1.0) -> torch.Tensor:
    """Expected counts |F(s · P · O_patch)|² of each pattern."""
    return far_field(scale * exit_waves(probe, object_patches)).abs() ** 2


def exit_wave_power(probe: torch.Tensor, object_patches: torch.Tensor) -> torch.Tensor:
    """Σ|ψ_k|² of each exit wave (= its total expected counts at scale 1, by Parseval)."""
    return (exit_waves(probe, object_patches).abs() ** 2).sum(dim=(-2, -1))


def dose_scale(mean_power: float, dose: float) -> float:
    """s = sqrt(dose / mean_k Σ|ψ_k|²): the mean expected counts per pattern equal the dose."""
    return math.sqrt(dose / float(mean_power))


def poisson_counts(intensity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photon counts ~ Poisson(intensity) from a seeded NumPy generator."""
    return rng.poisson(np.asarray(intensity, dtype=np.float64)).astype(np.float64)


def probe_centroid(probe) -> tuple[float, float]:
    """(y, x) centre of mass of the probe's intensity, in pixels."""
    power = np.abs(np.asarray(probe)) ** 2
    rows, cols = np.indices(power.shape)
    total = power.sum()
    return float((rows * power).sum() / total), float((cols * power).sum() / total)


def probe_diameter(probe, power_fraction: float) -> float:
    """Diameter (px) of the disc around the probe's centroid holding ``power_fraction`` of its power."""
    power = np.abs(np.asarray(probe, dtype=np.complex128)) ** 2
    cy, cx = probe_centroid(probe)
    rows, cols = np.indices(power.shape)
    radius = np.hypot(rows - cy, cols - cx).ravel()
    order = np.argsort(radius, kind="stable")
    cumulative = np.cumsum(power.ravel()[order]) / power.sum()
    index = int(np.searchsorted(cumulative, power_fraction))
    if index >= radius.size:
        raise StudyError(
            f"the probe does not hold {power_fraction:.0%} of its power inside its own array"
        )
    return 2.0 * float(radius[order][index])


def disc_overlap(distance, diameter: float) -> np.ndarray:
    """Area overlap fraction of two discs of ``diameter`` whose centres are ``distance`` apart."""
    d = np.asarray(distance, dtype=np.float64)
    r = diameter / 2.0
    x = np.clip(d / diameter, 0.0, 1.0)
    area = 2 * r * r * np.arccos(x) - (d / 2) * np.sqrt(np.clip(4 * r * r - d * d, 0.0, None))
    return np.where(d < diameter, area / (np.pi * r * r), 0.0)
