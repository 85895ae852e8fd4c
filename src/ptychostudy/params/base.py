"""params ``base``: the real probe, the objects, and how they are prepared (module base.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ptychostudy.params import ParamsError, Section, key


@dataclass(frozen=True)
class ObjectFile:
    """An object read from a file in data/base (its path is in dvc.yaml's base stage)."""

    sha256: str = key("SHA-256 of the object file", kind="sha256")
    zoom: int = key("integer zoom of the object (trigonometric interpolation)", min=1, max=16)


@dataclass(frozen=True)
class ObjectPattern:
    """A synthetic test object: a Siemens star in amplitude and phase, drawn on a grid ``oversample``× finer than
    the study's pixel and band-limited to it (so its edges are as sharp as the study's grid can hold)."""

    shape: tuple[int, ...] = key("rows and columns of the object on the study's grid (px)", min=1, max=8192)
    spokes: int = key("number of spoke pairs (dark and light) around the star", min=2, max=4096)
    radius_px: float = key("outer radius of the star (study px)", gt=0)
    phase_rad: float = key("phase of the spokes (radians; the rest 0)", min=-6.3, max=6.3)
    amplitude: float = key("transmitted amplitude of the spokes (the rest 1)", gt=0, max=1)
    oversample: int = key("drawn this many times finer than the study's pixel, then band-limited", min=1, max=16)


@dataclass(frozen=True)
class BaseParams(Section):
    SECTION = "base"

    probe_sha256: str = key("SHA-256 of the probe file", kind="sha256")
    probe_zoom: int = key("integer zoom of the probe (trigonometric interpolation)", min=1, max=16)
    patch_size: int = key("N: pixels per side of a pattern (the probe side × probe_zoom)", max=1024)
    object_files: Mapping[str, ObjectFile] = key("objects read from data/base: name to its file's sha256 and zoom")
    object_patterns: Mapping[str, ObjectPattern] = key("synthetic test objects: name to its pattern")

    def check(self, p) -> None:
        if self.patch_size < 8 or self.patch_size % 2:
            raise ParamsError(f"base.patch_size must be an even number of pixels ≥ 8, got {self.patch_size}")
        twice = sorted(set(self.object_files) & set(self.object_patterns))
        if twice:
            raise ParamsError(f"the object {twice[0]!r} is defined twice, in base.object_files and base.object_patterns")
        for name, pattern in self.object_patterns.items():
            if len(pattern.shape) != 2:
                raise ParamsError(f"base.object_patterns.{name}.shape must be [rows, columns], got {list(pattern.shape)}")
            if 2 * pattern.radius_px > min(pattern.shape):
                raise ParamsError(f"base.object_patterns.{name}: a star of radius {pattern.radius_px} px does not fit "
                                  f"a {pattern.shape[0]}×{pattern.shape[1]} object")

    def object_kind(self, name: str) -> str:
        """"file" or "pattern": where an object of the study comes from."""
        if name in self.object_files:
            return "file"
        if name in self.object_patterns:
            return "pattern"
        raise ParamsError(f"the object {name!r} is defined in neither base.object_files nor base.object_patterns")

    def check_probe(self, probe_side: int) -> None:
        """The patch size must equal the (zoomed) probe's side, known once the probe file is read."""
        expected = probe_side * self.probe_zoom
        if self.patch_size != expected:
            raise ParamsError(f"base.patch_size = {self.patch_size} disagrees with the probe: a {probe_side}×{probe_side} "
                              f"probe zoomed {self.probe_zoom}× is {expected} px; set base.patch_size: {expected}")
