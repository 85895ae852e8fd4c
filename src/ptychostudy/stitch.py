"""Stitching patches into one object.

A single diffraction pattern does not determine the absolute phase of its exit wave
(|F(e^{iθ}ψ)| = |F(ψ)|), so every predicted patch carries its own unknown phase offset.
``stitch`` therefore first synchronises the patches' offsets — each patch's offset is set to
agree with its overlapping neighbours (``phase_offsets``: the leading eigenvector of the
overlap's Hermitian agreement matrix) — and then averages the overlapping central parts.
Without ``sync`` it is the plain overlap average.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

from ptychostudy import physics

DENSE_BELOW = 64  # patches: fewer and the relaxed problem is solved densely


def _overlapping_pairs(y0: torch.Tensor, x0: torch.Tensor, size: int):
    """Index pairs (a < b) of patches whose squares overlap, and b's offset from a."""
    dy = y0[None, :] - y0[:, None]
    dx = x0[None, :] - x0[:, None]
    near = (dy.abs() < size) & (dx.abs() < size)
    first, second = torch.nonzero(torch.triu(near, diagonal=1), as_tuple=True)
    return first, second, dy[first, second], dx[first, second]


def _pair_overlaps(patches: torch.Tensor, first, second, dy, dx, chunk: int = 256) -> torch.Tensor:
    """Σ conj(patch a) · (patch b resampled on a's pixels) for each pair, bilinear as ``physics.extract_patches``.

    Patch b is zero outside its square: with one ring of zeros around every patch, a tap that falls
    outside is clamped onto that ring, so each pair costs four gathers of a patch and no padding of its own.
    """
    k, size = patches.shape[0], patches.shape[-1]
    side = size + 2
    ringed = torch.zeros((k, side, side), dtype=patches.dtype)
    ringed[:, 1:-1, 1:-1] = patches
    ringed = ringed.reshape(-1)  # gathered by flat index: faster than three index tensors
    out = torch.zeros(len(first), dtype=torch.complex128)
    for start in range(0, len(first), chunk):
        sl = slice(start, start + chunk)
        a, b = first[sl], second[sl]
        # a's pixel (i, j) is b's pixel (i - dy, j - dx)
        iy, fy = physics.sample_corners(-dy[sl], size)
        ix, fx = physics.sample_corners(-dx[sl], size)
        base = (b * side * side)[:, None, None]
        seen = None
        for ty, tx, weight in physics.bilinear_taps(fy, fx):
            rows = (iy + 1 + ty).clamp(0, size + 1)[:, :, None]
            cols = (ix + 1 + tx).clamp(0, size + 1)[:, None, :]
            tap = ringed[base + rows * side + cols] * weight
            seen = tap if seen is None else seen + tap
        out[sl] = (patches[a].conj() * seen).sum(dim=(-2, -1)).to(torch.complex128)
    return out


def _leading_eigenvector(h) -> np.ndarray:
    """The eigenvector of the largest eigenvalue of the sparse Hermitian ``h`` (Lanczos from a fixed start;
    dense for a few patches, where Lanczos has no room), its first entry turned real and positive."""
    if h.shape[0] < DENSE_BELOW:
        z = np.linalg.eigh(h.toarray())[1][:, -1]
    else:
        z = scipy.sparse.linalg.eigsh(h, k=1, which="LA", v0=np.ones(h.shape[0], dtype=h.dtype))[1][:, 0]
    return z * (np.conj(z[0]) / abs(z[0]) if abs(z[0]) > 0 else 1.0)


def phase_offsets(patches: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor, refine: int = 20) -> torch.Tensor:
    """Unit-modulus rotations z_k that make overlapping patches agree: maximise zᴴHz.

    H_kl = Σ conj(P_k)·P_l over the overlap of patches k and l (patch l resampled onto
    patch k's pixels with ``physics.extract_patches``'s bilinear taps); H is sparse (a patch overlaps
    only its neighbours). The leading eigenvector of H solves the relaxed problem; a few projected
    power steps (each entry back to unit modulus) then settle every connected group of patches,
    disconnected ones included.
    """
    k = patches.shape[0]
    first, second, dy, dx = _overlapping_pairs(y0, x0, patches.shape[-1])
    overlap = _pair_overlaps(patches, first, second, dy, dx).numpy()
    energy = (patches.abs() ** 2).sum(dim=(-2, -1)).to(torch.float64).numpy()
    a, b, diagonal = first.numpy(), second.numpy(), np.arange(k)
    h = scipy.sparse.csr_matrix((np.concatenate([overlap, overlap.conj(), energy.astype(np.complex128)]),
                                 (np.concatenate([a, b, diagonal]), np.concatenate([b, a, diagonal]))), shape=(k, k))
    z = _leading_eigenvector(h)
    z = np.where(np.abs(z) > 1e-9 * np.abs(z).max(), z / np.maximum(np.abs(z), 1e-300), 1.0 + 0j)
    for _ in range(refine):
        hz = h @ z
        z = np.where(np.abs(hz) > 0, hz / np.maximum(np.abs(hz), 1e-300), z)
    return torch.from_numpy(z.astype(np.complex64))


def stitch(
    patches: torch.Tensor,
    ycoords,
    xcoords,
    shape: tuple[int, int],
    support: torch.Tensor,
    sync: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Average the ``support`` part of (k, N, N) patches centred at (ycoords, xcoords).

    With ``sync`` the patches' unknown phase offsets are first made to agree
    (``phase_offsets``). Returns (object canvas, coverage count) of ``shape``.
    """
    rows = torch.nonzero(support.sum(dim=1) > 0)[:, 0]
    cols = torch.nonzero(support.sum(dim=0) > 0)[:, 0]
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    if r1 - r0 != c1 - c0:
        raise ValueError("the stitching support must fit a square")
    # only the support's bounding square takes part: the rest of each patch has weight 0
    size = patches.shape[-1]
    support = support[r0:r1, c0:c1].to(torch.float32)
    patches = patches[:, r0:r1, c0:c1].to(torch.complex64) * support
    y0 = physics.top_left(torch.as_tensor(np.asarray(ycoords), dtype=torch.float64), size) + r0
    x0 = physics.top_left(torch.as_tensor(np.asarray(xcoords), dtype=torch.float64), size) + c0
    y0, x0 = y0.to(torch.float32), x0.to(torch.float32)
    if sync:
        patches = patches * phase_offsets(patches, y0, x0)[:, None, None]
    return physics.merge_patches(patches, y0, x0, support, shape)
