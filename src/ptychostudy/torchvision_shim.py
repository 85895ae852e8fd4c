"""A stand-in for the one piece of torchvision that pty-chi imports.

pty-chi 2.2.0 imports ``torchvision.transforms.GaussianBlur`` (in ``ptychi.utils``, for a
smoothed random initial guess, which this study never asks for). PyPI's torchvision
wheels link a CUDA build of torch and do not import with the light CPU wheel
``torch==2.13.0`` that the study pins, so ``install()`` registers this small module under
the name ``torchvision`` when — and only when — the real package cannot be imported.
"""

from __future__ import annotations

import importlib
import sys
import types

import torch


def _pair(value, name: str) -> tuple:
    if isinstance(value, (int, float)):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) in (1, 2):
        return (value[0], value[-1])
    raise ValueError(f"GaussianBlur: {name} must be a number or a pair, got {value!r}")


def gaussian_kernel(size: int, sigma: float, dtype=torch.float64) -> torch.Tensor:
    """Normalised 1-D Gaussian of odd ``size`` taps, centred."""
    half = (size - 1) / 2
    x = torch.linspace(-half, half, size, dtype=dtype)
    weights = torch.exp(-0.5 * (x / sigma) ** 2)
    return weights / weights.sum()


class GaussianBlur(torch.nn.Module):
    """Separable Gaussian blur with reflect padding over the last two axes (…, H, W).

    ``kernel_size`` (ky, kx) odd and positive; ``sigma`` a number or a (min, max) pair. The
    real class draws σ uniformly from (min, max); only a fixed σ (min == max) is offered
    here, since a random draw would make the study's runs irreproducible.
    """

    def __init__(self, kernel_size, sigma=(0.1, 2.0)):
        super().__init__()
        ky, kx = (int(k) for k in _pair(kernel_size, "kernel_size"))
        if ky <= 0 or kx <= 0 or ky % 2 == 0 or kx % 2 == 0:
            raise ValueError(f"GaussianBlur: kernel_size must be odd and positive, got {kernel_size!r}")
        lo, hi = (float(s) for s in _pair(sigma, "sigma"))
        if lo <= 0 or hi < lo:
            raise ValueError(f"GaussianBlur: sigma must be positive, got {sigma!r}")
        if hi != lo:
            raise NotImplementedError("GaussianBlur stand-in: only a fixed sigma (min == max) is supported")
        self.kernel_size = (ky, kx)
        self.sigma = (lo, hi)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        ky, kx = self.kernel_size
        sigma = self.sigma[0]
        shape = img.shape
        flat = img.reshape(-1, 1, shape[-2], shape[-1])
        dtype = flat.dtype
        wy = gaussian_kernel(ky, sigma).to(dtype).reshape(1, 1, ky, 1)
        wx = gaussian_kernel(kx, sigma).to(dtype).reshape(1, 1, 1, kx)
        flat = torch.nn.functional.pad(flat, (kx // 2, kx // 2, ky // 2, ky // 2), mode="reflect")
        flat = torch.nn.functional.conv2d(torch.nn.functional.conv2d(flat, wy), wx)
        return flat.reshape(shape)


def install() -> bool:
    """Make ``import torchvision.transforms`` work; True when the stand-in was needed."""
    try:
        importlib.import_module("torchvision.transforms")
        return False
    except Exception:  # absent, or a binary build that does not match this torch
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
    package = types.ModuleType("torchvision")
    package.__doc__ = "ptychostudy's stand-in for torchvision (GaussianBlur only)"
    package.__path__ = []  # a package, so that `import torchvision.transforms` resolves
    transforms = types.ModuleType("torchvision.transforms")
    transforms.GaussianBlur = GaussianBlur
    package.transforms = transforms
    sys.modules["torchvision"] = package
    sys.modules["torchvision.transforms"] = transforms
    return True
