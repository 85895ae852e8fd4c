"""The PtychoPINN-style network and its physics head (Phase E).

The network maps the C diffraction patterns of a group to ONE complex object on the group's
common frame, a ``canvas``×``canvas`` square centred on the group's mean position:

1. the fixed physics input layer (``Backprojection``) turns each measured pattern into a
   first object estimate on its own patch, and each estimate (with the probe's footprint)
   is placed on the common frame at the member's offset from the group's mean position, so
   that the CNN sees the C views of the same object pixels aligned (``place_members``);
2. a U-Net maps these 3·C channels to the object: amplitude through ``amplitude_max ·
   sigmoid``, phase through ``π · tanh``;
3. each member's patch is cut out of that object at its offset (``physics.extract_patches``;
   outside the frame the object is taken as empty, transmission 1): the real-space overlap
   constraint holds by construction — the members see one object — and the patch is kept
   on its central ``support`` square.

The physics head then multiplies each patch by the known probe scaled to the dose
(``intensity_scale · probe``) and propagates with ``physics.far_field`` — the very operator
that simulated the data — giving the expected counts of each pattern. The loss is the
Poisson deviance of the measured counts (the negative log-likelihood up to a constant that
does not depend on the model; 0 for a perfect fit, ≈1 per pixel for a correct model on
noisy data).

Why a common frame (measured, dose 1e5, dense view, README "The network"): with each
member's estimate left on its own patch, the CNN cannot tell where the members lie relative
to each other (the offsets vary from group to group), so it cannot combine their overlap —
which is where the phase plateaus are determined — and its phase stayed 3–4× too weak.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ptychostudy import physics
from ptychostudy.architecture import Architecture

__all__ = ["Architecture", "Backprojection", "PinnNet", "Reconstructor", "PhysicsHead", "poisson_deviance",
           "bilinear_matrix", "frame_corners", "place_members", "ORIENTATIONS", "orientation_tables", "orient"]

ORIENTATIONS = 8  # the dihedral group of the square: 4 rotations by 90°, each with or without a mirror


class Backprojection(nn.Module):
    """A fixed (not learned) physics layer: measured amplitudes → a first object estimate.

    Each measured far-field amplitude A gets the phase of the known probe's own far field
    Φ = F(s·P), is propagated back with the inverse of ``physics.far_field`` and divided by
    the probe (regularised where the probe is weak): Ô = F⁻¹(A·Φ/|Φ|)·conj(sP)/(|sP|² + ε).
    For a weakly scattering object this is the in-line holography estimate (the object's
    perturbation at half strength plus its out-of-focus twin), already on the object's
    pixel grid, so that the CNN works in object space. Output (B, C, 3, N, N): per pattern
    Re and Im of Ô − 1 and |P|/max|P| (where the estimate can be trusted).
    """

    def __init__(self, probe: torch.Tensor, intensity_scale: float, regularisation: float = 1e-2):
        super().__init__()
        scaled = (probe * intensity_scale).to(torch.complex64)
        field = physics.far_field(scaled)
        self.register_buffer("phase", field / field.abs().clamp_min(1e-3 * float(field.abs().max())), persistent=False)
        power = scaled.abs() ** 2
        self.register_buffer(
            "inverse", scaled.conj() / (power + regularisation * float(power.max())), persistent=False
        )
        self.register_buffer("weight", (scaled.abs() / scaled.abs().max()).to(torch.float32), persistent=False)

    def forward(self, amplitude: torch.Tensor) -> torch.Tensor:
        field = amplitude.to(torch.complex64) * self.phase
        wave = physics.inverse_far_field(field)
        estimate = wave * self.inverse - 1
        return torch.stack([estimate.real, estimate.imag, self.weight.expand(estimate.shape)], dim=2)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class _Decoder(nn.Module):
    def __init__(self, arch: Architecture):
        super().__init__()
        f, d = arch.filters, arch.depth
        self.skips = arch.skips
        self.blocks = nn.ModuleList()
        cin = f * 2 ** (d - 1)
        for level in reversed(range(d)):
            width = f * 2**level
            self.blocks.append(_block(cin, width))
            cin = width + (width if arch.skips else 0)
        self.head = nn.Conv2d(cin, 1, 3, padding=1)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for block, skip in zip(self.blocks, reversed(skips)):
            x = nn.functional.interpolate(block(x), scale_factor=2, mode="nearest")
            if self.skips:
                x = torch.cat([x, skip], dim=1)
        return self.head(x)


class PinnNet(nn.Module):
    """The U-Net: input channels (B, Cin, S, S) on the common frame → one complex object (B, S, S)."""

    def __init__(self, arch: Architecture):
        super().__init__()
        arch.check()
        self.arch = arch
        f = arch.filters
        self.encoder = nn.ModuleList()
        cin = arch.input_channels
        for level in range(arch.depth):
            self.encoder.append(_block(cin, f * 2**level))
            cin = f * 2**level
        self.amplitude = _Decoder(arch)
        self.phase = _Decoder(arch)
        if arch.stride > 1:  # the object grid's interpolation back to the frame's pixels (not saved: fixed)
            self.register_buffer("upsample", bilinear_matrix(arch.canvas // arch.stride, arch.stride), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, 2)
        # the deepest skip is the encoder's last level; the decoder starts from its pooled map
        amplitude = self.arch.amplitude_max * torch.sigmoid(self._on_grid(self.amplitude(x, skips))[:, 0])
        phase = math.pi * torch.tanh(self._on_grid(self.phase(x, skips))[:, 0])
        return torch.polar(amplitude, phase)

    def _on_grid(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's map averaged onto the object grid (``arch.stride`` px per sample) and interpolated
        back (bilinear, ``bilinear_matrix`` on both axes): the network's object has no detail finer than its
        grid (the gradient solver's coarse grid, as a property of the network)."""
        if self.arch.stride == 1:
            return x
        return self.upsample @ nn.functional.avg_pool2d(x, self.arch.stride) @ self.upsample.T


def bilinear_matrix(samples: int, factor: int) -> torch.Tensor:
    """(samples·factor, samples) float32: ``A @ v`` is ``v`` upsampled ``factor`` times, linearly, as
    ``interpolate(mode="bilinear", align_corners=False)`` does on one axis (pixel centres, edges held).
    A matrix product instead of ``interpolate`` because the latter's gradient has no deterministic CUDA
    kernel (``torch.use_deterministic_algorithms`` refuses it); products are deterministic on both devices."""
    source = ((torch.arange(samples * factor, dtype=torch.float64) + 0.5) / factor - 0.5).clamp_min(0)
    lower = source.floor().long().clamp_max(samples - 1)
    upper = (lower + 1).clamp_max(samples - 1)
    weight = source - lower
    matrix = torch.zeros(samples * factor, samples, dtype=torch.float64)
    rows = torch.arange(samples * factor)
    matrix.index_put_((rows, lower), 1 - weight, accumulate=True)
    matrix.index_put_((rows, upper), weight, accumulate=True)
    return matrix.to(torch.float32)


def frame_corners(offsets: torch.Tensor, canvas: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-left (y0, x0), each (B, C), of the members' patches on the common frame."""
    return canvas / 2 + offsets[..., 0] - size / 2, canvas / 2 + offsets[..., 1] - size / 2


def place_members(features: torch.Tensor, offsets: torch.Tensor, canvas: int) -> torch.Tensor:
    """(B, C, K, N, N) per-member feature maps → (B, C·K, S, S), each placed at its member's
    offset on the S×S common frame (bilinear, ``physics.place_patches``; zero elsewhere)."""
    b, c, k, n, _ = features.shape
    y0, x0 = frame_corners(offsets, canvas, n)
    y0 = y0.reshape(b * c, 1).repeat_interleave(k, dim=0)
    x0 = x0.reshape(b * c, 1).repeat_interleave(k, dim=0)
    placed = physics.place_patches(features.reshape(b * c * k, 1, n, n), y0, x0, (canvas, canvas))
    return placed.reshape(b, c * k, canvas, canvas)


def orientation_tables(side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(forward, inverse), each (8, side²) int64: pixel permutations of a side×side frame for the eight
    orientations (k = o mod 4 quarter turns, after a left-right mirror when o ≥ 4); ``inverse[o]`` undoes
    ``forward[o]``."""
    grid = torch.arange(side * side).reshape(side, side)
    forward = torch.stack([
        torch.rot90(torch.flip(grid, dims=(1,)) if o >= 4 else grid, o % 4, dims=(0, 1)).reshape(-1)
        for o in range(ORIENTATIONS)
    ])
    inverse = torch.empty_like(forward)
    inverse.scatter_(1, forward, torch.arange(side * side).expand(ORIENTATIONS, -1).contiguous())
    return forward, inverse


def orient(x: torch.Tensor, orientation: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Each item b of ``x`` (B, ..., S, S) permuted by ``table[orientation[b]]`` (an exact gather; ``table``
    on ``x``'s device)."""
    flat = x.reshape(x.shape[0], -1, x.shape[-2] * x.shape[-1])
    index = table[orientation.to(x.device)][:, None, :].expand(flat.shape)
    if flat.is_complex():
        out = torch.complex(torch.gather(flat.real, 2, index), torch.gather(flat.imag, 2, index))
    else:
        out = torch.gather(flat, 2, index)
    return out.reshape(x.shape)


class Reconstructor(nn.Module):
    """Measured amplitudes (B, C, N, N) and the members' offsets (B, C, 2) from their group's
    mean position → the members' object patches (B, C, N, N): input layer, common frame, CNN,
    and each member's patch cut out of the group's one object."""

    def __init__(self, arch: Architecture, probe: torch.Tensor, intensity_scale: float, input_scale: float):
        super().__init__()
        self.arch = arch
        self.input_scale = float(input_scale)
        self.net = PinnNet(arch)
        self.backprojection = Backprojection(probe, intensity_scale) if arch.inputs == "backprojection" else None
        self.register_buffer("mask", physics.central_support(arch.size, arch.support), persistent=False)
        if self.backprojection is not None:  # the frame's orientations (training only): move with .to(), not saved
            forward, inverse = orientation_tables(arch.canvas)
            self.register_buffer("turn", forward, persistent=False)
            self.register_buffer("turn_back", inverse, persistent=False)

    def forward(self, amplitude: torch.Tensor, offsets: torch.Tensor, orientation: torch.Tensor | None = None) -> torch.Tensor:
        """``orientation`` (B,) in 0…7, training only (``train.augment: dihedral``): each group's frame is
        turned (and mirrored) before the CNN and its object turned back after, so the CNN must map every
        orientation of the same structure alike; the physics (probe, offsets, data) is untouched."""
        if self.backprojection is not None:
            frame = place_members(self.backprojection(amplitude), offsets, self.arch.canvas)
            if orientation is None:
                obj = self.net(frame)
            else:
                obj = orient(self.net(orient(frame, orientation, self.turn)), orientation, self.turn_back)
        else:
            if orientation is not None:
                raise ValueError("orientation augmentation needs the object-space (backprojection) input")
            obj = self.net(amplitude * self.input_scale)
        y0, x0 = frame_corners(offsets, self.arch.canvas, self.arch.size)
        # outside the frame the object is taken as empty (transmission 1)
        return (physics.extract_patches(obj - 1, y0, x0, self.arch.size, check_bounds=False) + 1) * self.mask


class PhysicsHead(nn.Module):
    """Object patches (B, C, N, N) → expected counts of the patterns: × the known probe scaled
    to the dose, then ``physics.far_field``, |·|²."""

    def __init__(self, probe: torch.Tensor, intensity_scale: float):
        super().__init__()
        self.register_buffer("probe", (probe * intensity_scale).to(torch.complex64), persistent=False)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return physics.far_field(physics.exit_waves(self.probe, patches)).abs() ** 2


def poisson_deviance(expected: torch.Tensor, counts: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    """Mean Poisson deviance per pixel: 2·[λ − k + k·log(k/λ)] (k·log k := 0 at k = 0)."""
    lam = expected.clamp_min(floor)
    ratio = torch.where(counts > 0, counts * torch.log(counts.clamp_min(floor) / lam), torch.zeros_like(counts))
    return (2.0 * (lam - counts + ratio)).mean()
