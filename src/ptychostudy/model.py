"""The PtychoPINN-style network and its physics head (Phase E).

The network maps the C diffraction amplitudes of a group (channels) to C complex object
patches: amplitude through ``amplitude_max · sigmoid``, phase through ``π · tanh``, each
patch kept on its central ``support`` square. The physics head then

1. for C > 1 merges the C patches on a canvas at their relative offsets and cuts them out
   again (the real-space overlap constraint: every pattern of a group constrains its
   neighbours' pixels), with ``physics.merge_patches`` / ``physics.extract_patches``;
2. multiplies by the known probe scaled to the dose (``intensity_scale · probe``) and
   propagates with ``physics.far_field`` — the very operator that simulated the data —
   giving the expected counts of each pattern.

The loss is the Poisson deviance of the measured counts (the negative log-likelihood up to
a constant that does not depend on the model; 0 for a perfect fit, ≈1 per pixel for a
correct model on noisy data).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ptychostudy import physics
from ptychostudy.bundle import BundleError, read_bundle, write_bundle
from ptychostudy.config import NETWORK_INPUTS as INPUTS


@dataclass(frozen=True)
class Architecture:
    """Everything needed to rebuild the network (stored in every bundle's description)."""

    size: int  # N, pixels per side of a pattern and of a patch
    channels: int  # C = gridsize²
    filters: int  # width of the first encoder level; level i has filters · 2^i
    depth: int  # encoder levels (each halves the size)
    support: float  # side of the predicted central square, as a fraction of N
    amplitude_max: float  # upper bound of the amplitude activation
    skips: bool  # U-Net skip connections between encoder and decoder levels
    inputs: str  # "amplitude": normalised sqrt(counts); "backprojection": see ``Backprojection``

    def check(self) -> None:
        if self.size % (2**self.depth):
            raise ValueError(f"N = {self.size} is not divisible by 2^depth = {2**self.depth}")
        if self.inputs not in INPUTS:
            raise ValueError(f"unknown network input {self.inputs!r}; allowed: {', '.join(INPUTS)}")

    @property
    def input_channels(self) -> int:
        return self.channels if self.inputs == "amplitude" else 2 * self.channels + 1


class Backprojection(nn.Module):
    """A fixed (not learned) physics layer: measured amplitudes → a first object estimate.

    Each measured far-field amplitude A gets the phase of the known probe's own far field
    Φ = F(s·P), is propagated back with the inverse of ``physics.far_field`` and divided by
    the probe (regularised where the probe is weak): Ô = F⁻¹(A·Φ/|Φ|)·conj(sP)/(|sP|² + ε).
    For a weakly scattering object this is the in-line holography estimate (the object's
    perturbation at half strength plus its out-of-focus twin), already on the object's
    pixel grid, so that the CNN works in object space. Output channels: Re and Im of
    Ô − 1 for each of the C patterns, plus |P|/max|P| (where the estimate can be trusted).
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
        weight = self.weight.expand(amplitude.shape[0], 1, *amplitude.shape[-2:])
        return torch.cat([estimate.real, estimate.imag, weight], dim=1)


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
        self.head = nn.Conv2d(cin, arch.channels, 3, padding=1)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for block, skip in zip(self.blocks, reversed(skips)):
            x = nn.functional.interpolate(block(x), scale_factor=2, mode="nearest")
            if self.skips:
                x = torch.cat([x, skip], dim=1)
        return self.head(x)


class PinnNet(nn.Module):
    """C diffraction amplitudes (normalised) → C complex object patches (B, C, N, N)."""

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
        self.register_buffer("mask", physics.central_support(arch.size, arch.support), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, 2)
        # the deepest skip is the encoder's last level; the decoder starts from its pooled map
        amplitude = self.arch.amplitude_max * torch.sigmoid(self.amplitude(x, skips))
        phase = math.pi * torch.tanh(self.phase(x, skips))
        return torch.polar(amplitude * self.mask, phase)


class Reconstructor(nn.Module):
    """Measured amplitudes (B, C, N, N) → object patches (B, C, N, N): input layer + CNN."""

    def __init__(self, arch: Architecture, probe: torch.Tensor, intensity_scale: float, input_scale: float):
        super().__init__()
        self.arch = arch
        self.input_scale = float(input_scale)
        self.net = PinnNet(arch)
        self.backprojection = Backprojection(probe, intensity_scale) if arch.inputs == "backprojection" else None

    def forward(self, amplitude: torch.Tensor) -> torch.Tensor:
        if self.backprojection is not None:
            return self.net(self.backprojection(amplitude))
        return self.net(amplitude * self.input_scale)


class PhysicsHead(nn.Module):
    """Object patches of a group → expected counts of the group's C patterns.

    The overlap merge weights each member's pixels by the probe intensity it saw there
    (|P|², normalised, times the network's support mask): a pixel a member barely
    illuminated, and so barely knows, counts little against a neighbour that saw it well.
    """

    def __init__(self, probe: torch.Tensor, intensity_scale: float, support: torch.Tensor, canvas: int):
        super().__init__()
        self.register_buffer("probe", (probe * intensity_scale).to(torch.complex64), persistent=False)
        power = probe.abs().to(torch.float32) ** 2
        self.register_buffer("support", support.to(torch.float32) * power / power.max(), persistent=False)
        self.canvas = int(canvas)

    def consistent(self, patches: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """The overlap constraint: merge the C patches of each group and cut them out again.

        ``offsets`` (B, C, 2) are the members' (y, x) positions relative to the group mean.
        """
        if patches.shape[1] == 1:
            return patches
        size = patches.shape[-1]
        y0 = self.canvas / 2 + offsets[..., 0] - size / 2
        x0 = self.canvas / 2 + offsets[..., 1] - size / 2
        canvas, _ = physics.merge_patches(patches, y0, x0, self.support, (self.canvas, self.canvas))
        return physics.extract_patches(canvas, y0, x0, size, check_bounds=False)

    def forward(self, patches: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        merged = self.consistent(patches, offsets)
        return physics.far_field(physics.exit_waves(self.probe, merged)).abs() ** 2


def poisson_deviance(expected: torch.Tensor, counts: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    """Mean Poisson deviance per pixel: 2·[λ − k + k·log(k/λ)] (k·log k := 0 at k = 0)."""
    lam = expected.clamp_min(floor)
    ratio = torch.where(counts > 0, counts * torch.log(counts.clamp_min(floor) / lam), torch.zeros_like(counts))
    return (2.0 * (lam - counts + ratio)).mean()


def canvas_size(size: int, max_offset: float) -> int:
    """An even canvas side that holds a group whose members lie within ``max_offset`` of its mean."""
    side = size + 2 * math.ceil(max_offset) + 4
    return side + side % 2


# ---------------------------------------------------------------------------------------
# Bundles: the trained network as ``wts.h5.zip`` (see ``bundle.py`` for the file format)

MODEL_KIND = "ptychostudy-pinn"
PROBE_WEIGHT = "physics.probe"  # the known probe, (N, N, 2) float32 real/imaginary parts


def model_weights(model: Reconstructor, probe: torch.Tensor) -> dict[str, np.ndarray]:
    """Every learned tensor, plus the probe, as float32 arrays named by their state-dict keys."""
    weights = {name: t.detach().cpu().numpy().astype(np.float32) for name, t in model.state_dict().items()}
    weights[PROBE_WEIGHT] = torch.view_as_real(probe.detach().cpu().to(torch.complex64)).numpy()
    return weights


def save_model(path, model: Reconstructor, probe: torch.Tensor, intensity_scale: float, extra: dict) -> None:
    """Write ``model`` as a bundle; ``extra`` (params, data sha256, …) joins the description."""
    description = {
        **extra,
        "kind": MODEL_KIND,
        "architecture": dataclasses.asdict(model.arch),
        "intensity_scale": float(intensity_scale),
        "input_scale": float(model.input_scale),
    }
    write_bundle(path, model_weights(model, probe), description)


def write_skip_bundle(path, record: dict) -> None:
    """A job whose view was skipped in Phase D still leaves its declared output: a bundle
    that holds no weights and says why (``load_bundle`` refuses it with that reason)."""
    write_bundle(path, {}, {**record, "kind": MODEL_KIND, "skipped": True}, allow_empty=True)


@dataclass
class LoadedModel:
    model: Reconstructor
    probe: torch.Tensor
    intensity_scale: float
    description: dict

    def head(self, max_offset: float) -> PhysicsHead:
        return PhysicsHead(self.probe, self.intensity_scale, self.model.net.mask, canvas_size(self.model.arch.size, max_offset))


def _field(path, description: dict, key: str, kind):
    value = description.get(key)
    ok = isinstance(value, kind) and not isinstance(value, bool) if kind is not bool else isinstance(value, bool)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise BundleError(f"{path}: description field {key!r} must be {kind.__name__}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise BundleError(f"{path}: description field {key!r} must be finite, got {value!r}")
    return value


def load_bundle(path) -> LoadedModel:
    """Rebuild the trained model from ``wts.h5.zip``; refuses malformed bundles with ``BundleError``.

    Nothing is executed from the bundle: the description is JSON, the weights are HDF5
    datasets of numbers, and the architecture is rebuilt from this package's own code.
    """
    weights, description = read_bundle(path, allow_empty=True)
    if description.get("skipped") is True:
        raise BundleError(f"{path}: this job was skipped ({description.get('reason') or 'no reason given'}); it holds no model")
    if not weights:
        raise BundleError(f"{path}: description field 'weights' must be a non-empty object of name -> shape, dtype")
    if description.get("kind") != MODEL_KIND:
        raise BundleError(f"{path}: description field 'kind' must be {MODEL_KIND!r}, got {description.get('kind')!r}")
    raw = description.get("architecture")
    if not isinstance(raw, dict):
        raise BundleError(f"{path}: description field 'architecture' must be an object")
    fields = {f.name: f for f in dataclasses.fields(Architecture)}
    if set(raw) != set(fields):
        odd = sorted(set(raw) ^ set(fields))
        raise BundleError(f"{path}: architecture field {odd[0]!r} is missing or unexpected")
    types = typing.get_type_hints(Architecture)
    arch_values = {key: _field(path, raw, key, types[key]) for key in fields}
    arch = Architecture(**arch_values)
    try:
        arch.check()
    except ValueError as exc:
        raise BundleError(f"{path}: {exc}") from None
    intensity_scale = _field(path, description, "intensity_scale", float)
    input_scale = _field(path, description, "input_scale", float)
    if intensity_scale <= 0 or input_scale <= 0:
        raise BundleError(f"{path}: intensity_scale and input_scale must be positive")
    probe_array = weights.pop(PROBE_WEIGHT, None)
    if probe_array is None or probe_array.shape != (arch.size, arch.size, 2):
        got = None if probe_array is None else probe_array.shape
        raise BundleError(f"{path}: weight {PROBE_WEIGHT!r} must be ({arch.size}, {arch.size}, 2), got {got}")
    probe = torch.view_as_complex(torch.from_numpy(np.ascontiguousarray(probe_array, dtype=np.float32)))
    model = Reconstructor(arch, probe, intensity_scale, input_scale)
    expected = model.state_dict()
    if set(expected) != set(weights):
        odd = sorted(set(expected) ^ set(weights))
        raise BundleError(f"{path}: weight {odd[0]!r} does not belong to a {arch.inputs} network of this architecture")
    for name, tensor in expected.items():
        if tuple(tensor.shape) != weights[name].shape:
            raise BundleError(
                f"{path}: weight {name!r} has shape {list(weights[name].shape)}, the architecture needs {list(tensor.shape)}"
            )
    model.load_state_dict({name: torch.from_numpy(np.asarray(w, dtype=np.float32)) for name, w in weights.items()})
    model.eval()
    return LoadedModel(model, probe, intensity_scale, description)
