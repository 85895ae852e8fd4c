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
    canvas: int  # side of the group's common frame the CNN works on (= size for C = 1)
    filters: int  # width of the first encoder level; level i has filters · 2^i
    depth: int  # encoder levels (each halves the size)
    support: float  # side of the predicted central square, as a fraction of N
    amplitude_max: float  # upper bound of the amplitude activation
    skips: bool  # U-Net skip connections between encoder and decoder levels
    inputs: str  # "amplitude": normalised sqrt(counts); "backprojection": see ``Backprojection``

    def check(self) -> None:
        if self.size % (2**self.depth) or self.canvas % (2**self.depth):
            raise ValueError(f"N = {self.size} and canvas = {self.canvas} must be divisible by 2^depth = {2**self.depth}")
        if self.canvas < self.size:
            raise ValueError(f"canvas = {self.canvas} is smaller than a patch (N = {self.size})")
        if self.channels == 1 and self.canvas != self.size:
            raise ValueError(f"a one-pattern network works on its patch: canvas must be N = {self.size}, got {self.canvas}")
        if self.inputs == "amplitude" and self.canvas != self.size:
            raise ValueError("amplitude inputs live on the detector, not on the object: canvas must equal N")
        if self.inputs not in INPUTS:
            raise ValueError(f"unknown network input {self.inputs!r}; allowed: {', '.join(INPUTS)}")

    @property
    def input_channels(self) -> int:
        return self.channels if self.inputs == "amplitude" else 3 * self.channels


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, 2)
        # the deepest skip is the encoder's last level; the decoder starts from its pooled map
        amplitude = self.arch.amplitude_max * torch.sigmoid(self.amplitude(x, skips)[:, 0])
        phase = math.pi * torch.tanh(self.phase(x, skips)[:, 0])
        return torch.polar(amplitude, phase)


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

    def forward(self, amplitude: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        if self.backprojection is not None:
            obj = self.net(place_members(self.backprojection(amplitude), offsets, self.arch.canvas))
        else:
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
