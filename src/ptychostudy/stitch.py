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
import torch

from ptychostudy import physics


def _overlapping_pairs(y0: torch.Tensor, x0: torch.Tensor, size: int):
    """Index pairs (a < b) of patches whose squares overlap, and b's offset from a."""
    dy = y0[None, :] - y0[:, None]
    dx = x0[None, :] - x0[:, None]
    near = (dy.abs() < size) & (dx.abs() < size)
    first, second = torch.nonzero(torch.triu(near, diagonal=1), as_tuple=True)
    return first, second, dy[first, second], dx[first, second]


def _pair_views(patches: torch.Tensor, first, second, dy, dx, chunk: int = 2048):
    """Yield (a, b, patch a, patch b resampled on a's pixels) in chunks of pairs."""
    size = patches.shape[-1]
    for start in range(0, len(first), chunk):
        sl = slice(start, start + chunk)
        a, b = first[sl], second[sl]
        # a's pixel (i, j) is b's pixel (i - dy, j - dx)
        seen = physics.extract_patches(patches[b], -dy[sl][:, None], -dx[sl][:, None], size, check_bounds=False)[:, 0]
        yield a, b, patches[a], seen


def phase_offsets(patches: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor, refine: int = 20) -> torch.Tensor:
    """Unit-modulus rotations z_k that make overlapping patches agree: maximise zᴴHz.

    H_kl = Σ conj(P_k)·P_l over the overlap of patches k and l (patch l resampled onto
    patch k's pixels with the bilinear ``physics.extract_patches``). The leading eigenvector
    of H solves the relaxed problem; a few projected power steps (each entry back to unit
    modulus) then settle every connected group of patches, disconnected ones included.
    """
    k = patches.shape[0]
    first, second, dy, dx = _overlapping_pairs(y0, x0, patches.shape[-1])
    h = torch.zeros((k, k), dtype=torch.complex128)
    for a, b, pa, seen in _pair_views(patches, first, second, dy, dx):
        h[a, b] = (pa.conj() * seen).sum(dim=(-2, -1)).to(torch.complex128)
    h = h + h.conj().T + torch.diag((patches.abs() ** 2).sum(dim=(-2, -1)).to(torch.complex128))
    z = torch.linalg.eigh(h)[1][:, -1]
    z = torch.where(z.abs() > 1e-9 * float(z.abs().max()), z / z.abs().clamp_min(1e-300), torch.ones_like(z))
    for _ in range(refine):
        hz = h @ z
        z = torch.where(hz.abs() > 0, hz / hz.abs().clamp_min(1e-300), z)
    return z.to(torch.complex64)


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
