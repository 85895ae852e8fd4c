"""The base step: check the real probe and the objects, prepare them, write one prepared base per object.

Inputs are the files in ``data/base/`` (see its PROVENANCE.md) and the synthetic patterns of params.yaml. Each
file's sha256 must match params.yaml; an unexpected file is an error, not a warning. An object read from a file
is zoomed by trigonometric interpolation (``base.object_files``); a pattern (``base.object_patterns``: a Siemens
star in amplitude and phase) is drawn ``oversample``× finer than the study's pixel and band-limited to it, so its
edges are as sharp as the study's grid holds. Each prepared base states how much of its object's phase power lies
at fine scales (above 1/16 cycles per pixel): the measure that says whether phase r can see detail there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ptychostudy import stage
from ptychostudy.io import sha256_file
from ptychostudy.npz import read_npz
from ptychostudy.params import Params
from ptychostudy.params import load as load_params
from ptychostudy.params.base import BaseParams
from ptychostudy.params.simulate import SimulateParams
from ptychostudy.prepared import Base, BaseDataError, write_base
from ptychostudy.resample import band_limit, fourier_zoom

FINE_SCALE = 1 / 16  # cycles per pixel: the phase power above it is "fine detail" (issue 36: run1084 holds 4 %)


def _load_npz(path: Path, expected_sha256: str, what: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise BaseDataError(f"{what} file {path} does not exist")
    digest = sha256_file(path)
    if digest != expected_sha256:
        raise BaseDataError(
            f"{what} file {path} has sha256 {digest}, params.yaml expects {expected_sha256}; "
            "the file changed or is the wrong one"
        )
    return read_npz(path, what, BaseDataError)


def _require(arrays: dict, key: str, path: Path, what: str) -> np.ndarray:
    if key not in arrays:
        raise BaseDataError(f"{what} file {path} lacks the key {key!r} (it has {', '.join(sorted(arrays))})")
    value = arrays[key]
    if not np.all(np.isfinite(value)):
        raise BaseDataError(f"{what} file {path}: {key} contains NaN or Inf")
    return value


def featured_region(obj: np.ndarray, tolerance: float = 1e-6) -> tuple[int, int, int, int]:
    """Bounding box (row0, row1, col0, col1, inclusive) of pixels that differ from the flat padding 1+0j."""
    mask = np.abs(obj - 1.0) > tolerance
    if not mask.any():
        raise BaseDataError("the object is flat (amplitude 1, phase 0 everywhere): it has no structure")
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def scaled_region(region: tuple[int, int, int, int], factor: int) -> tuple[int, int, int, int]:
    """A (row0, row1, col0, col1) inclusive box of the input in the ``factor``× zoomed image's pixels."""
    r0, r1, c0, c1 = region
    return r0 * factor, (r1 + 1) * factor - 1, c0 * factor, (c1 + 1) * factor - 1


def fine_power_fraction(phase: np.ndarray, cutoff: float = FINE_SCALE) -> float:
    """The share of a phase map's power (its mean removed) at spatial frequencies above ``cutoff`` cycles/px."""
    centred = np.asarray(phase, dtype=np.float64) - float(np.mean(phase))
    power = np.abs(np.fft.fft2(centred)) ** 2
    fy, fx = np.fft.fftfreq(centred.shape[0])[:, None], np.fft.fftfreq(centred.shape[1])[None, :]
    total = float(power.sum())
    return float(power[np.hypot(fy, fx) > cutoff].sum() / total) if total > 0 else 0.0


def load_probe(cfg: Params, probe_path: Path) -> tuple[np.ndarray, dict]:
    """The real probe, zoomed by trigonometric interpolation and normalised to unit power, and its source."""
    b = cfg.base
    probe_arrays = _load_npz(Path(probe_path), b.probe_sha256, "probe")
    real = _require(probe_arrays, "probe_real", probe_path, "probe")
    imag = _require(probe_arrays, "probe_imag", probe_path, "probe")
    if real.shape != imag.shape or real.ndim != 2 or real.shape[0] != real.shape[1]:
        raise BaseDataError(f"probe file {probe_path}: the probe must be square 2-D, got {real.shape}")
    cfg.base.check_probe(real.shape[0])
    # zoomed by trigonometric (band-limited) interpolation: no arm's basis (bilinear patches, the gradient
    # solver's bilinear grids) holds the result
    probe = fourier_zoom(real.astype(np.float64) + 1j * imag.astype(np.float64), b.probe_zoom)
    power = float(np.sum(np.abs(probe) ** 2))
    if power <= 0:
        raise BaseDataError(f"probe file {probe_path}: the probe is zero")
    source = {"file": Path(probe_path).name, "sha256": b.probe_sha256, "shape": list(real.shape)}
    return probe / np.sqrt(power), source


def object_from_file(cfg: Params, name: str, object_path: Path) -> tuple[np.ndarray, tuple, dict]:
    """(object on the study's grid, featured box, facts) of an object read from a file."""
    spec = cfg.base.object_files[name]
    object_arrays = _load_npz(Path(object_path), spec.sha256, f"object {name}")
    raw = _require(object_arrays, "objectGuess", object_path, "object")
    if not np.iscomplexobj(raw):
        raise BaseDataError(f"object file {object_path}: objectGuess must be complex, got {raw.dtype}")
    if raw.ndim != 2:
        raise BaseDataError(f"object file {object_path}: objectGuess must be 2-D, got {raw.shape}")
    obj = fourier_zoom(raw.astype(np.complex128), spec.zoom)
    featured = scaled_region(featured_region(raw), spec.zoom)  # on the real array (refuses a flat object): the
    # interpolant rings faintly across the flat padding
    facts = {"kind": "file", "file": Path(object_path).name, "sha256": spec.sha256, "shape": list(raw.shape),
             "zoom": spec.zoom, "method": "trigonometric (DFT zero-padding) interpolation, sample i·zoom = input sample i"}
    return obj, featured, facts


def siemens_star(cfg: Params, name: str) -> tuple[np.ndarray, tuple, dict]:
    """(object on the study's grid, featured box, facts) of a synthetic Siemens star: ``spokes`` dark spokes of
    phase ``phase_rad`` and amplitude ``amplitude`` inside ``radius_px``, drawn on the ``oversample``× finer grid
    (fine sample k lies at study coordinate k / oversample) and band-limited to the study's grid."""
    spec = cfg.base.object_patterns[name]
    rows, cols = spec.shape
    f = spec.oversample
    y = np.arange(rows * f, dtype=np.float64)[:, None] / f - (rows - 1) / 2
    x = np.arange(cols * f, dtype=np.float64)[None, :] / f - (cols - 1) / 2
    spoke = (np.sin(spec.spokes * np.arctan2(y, x)) > 0) & (np.hypot(y, x) < spec.radius_px)
    fine = np.where(spoke, spec.amplitude * np.exp(1j * spec.phase_rad), 1.0 + 0j)
    obj = band_limit(fine, f)
    r = int(np.ceil(spec.radius_px))
    cy, cx = (rows - 1) / 2, (cols - 1) / 2
    featured = (max(int(np.floor(cy - r)), 0), min(int(np.ceil(cy + r)), rows - 1),
                max(int(np.floor(cx - r)), 0), min(int(np.ceil(cx + r)), cols - 1))
    facts = {"kind": "pattern", "pattern": "siemens_star", "shape": [rows, cols], "spokes": spec.spokes,
             "radius_px": spec.radius_px, "phase_rad": spec.phase_rad, "amplitude": spec.amplitude,
             "oversample": f, "method": f"drawn {f}× finer than the study's pixel, band-limited to it (DFT crop)"}
    return obj, featured, facts


def prepare_base(cfg: Params, probe_path: Path, name: str, object_path: Path | None = None,
                 probe: tuple[np.ndarray, dict] | None = None) -> Base:
    """One object's prepared base: the object on the study's grid, the unit-power probe and their facts."""
    probe_arr, probe_source = probe if probe is not None else load_probe(cfg, probe_path)
    if cfg.base.object_kind(name) == "file":
        if object_path is None:
            raise BaseDataError(f"the object {name!r} is read from a file, and none was given (--object-file {name}=PATH)")
        obj, featured, facts = object_from_file(cfg, name, object_path)
    else:
        obj, featured, facts = siemens_star(cfg, name)
    n = cfg.base.patch_size
    if min(obj.shape) < 2 * n + cfg.simulate.guard_band_px + 2:
        raise BaseDataError(
            f"the object {name} is {obj.shape[0]}×{obj.shape[1]} px: too small for two {n}-px splits "
            f"and a {cfg.simulate.guard_band_px}-px guard band; make it larger (base.object_files.{name}.zoom or "
            f"base.object_patterns.{name}.shape)"
        )
    r0, r1, c0, c1 = featured
    meta = {
        "object": name,
        "object_source": facts,
        "probe_source": probe_source,
        "probe_zoom": cfg.base.probe_zoom,
        "featured_region": {"row0": r0, "row1": r1, "col0": c0, "col1": c1},
        "phase_power_above_1_16": fine_power_fraction(np.angle(obj[r0:r1 + 1, c0:c1 + 1])),
        "probe_power": 1.0,
    }
    return Base(obj=obj.astype(np.complex64), probe=probe_arr.astype(np.complex64), featured=featured, metadata=meta)


def _object_files(pairs: list[str]) -> dict[str, Path]:
    files = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise BaseDataError(f"--object-file takes NAME=PATH, got {pair!r}")
        files[name] = Path(path)
    return files


def cli(args) -> None:
    """``ptychostudy base``: prepare every object of the study and say what each holds."""
    cfg = load_params(args.params, BaseParams, SimulateParams)
    files = _object_files(args.object_file)
    unknown = sorted(set(files) - set(cfg.base.object_files))
    if unknown:
        raise BaseDataError(f"--object-file names {unknown[0]!r}, which base.object_files does not define")
    probe = load_probe(cfg, args.probe)
    names = [*cfg.base.object_files, *cfg.base.object_patterns]  # every object defined (study.objects picks from them)
    bases = {name: prepare_base(cfg, args.probe, name, files.get(name), probe) for name in names}
    for name, base in bases.items():  # every object checked before anything is written
        write_base(base, args.out_dir / f"{name}.npz")
        print(f"base {name}: object {base.obj.shape[0]}×{base.obj.shape[1]}, probe {base.probe.shape[0]}×"
              f"{base.probe.shape[1]}, featured rows {base.featured[0]}–{base.featured[1]}, columns "
              f"{base.featured[2]}–{base.featured[3]}, phase power above 1/16 cycles/px "
              f"{base.metadata['phase_power_above_1_16']:.1%} -> {args.out_dir / (name + '.npz')}")


def build_parser(prog: str = "python -m ptychostudy.base") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="check the real probe and objects (sha256), prepare every object of the study",
                       description="The base step: verify each base file's sha256 against params.yaml, check keys, "
                       "dtypes and finiteness, zoom the probe by base.probe_zoom and each file object by its zoom "
                       "(trigonometric interpolation), draw each pattern object finer than the study's pixel and "
                       "band-limit it, normalise the probe to unit power and write one <object>.npz per object defined.")
    stage.add_params(p)
    p.add_argument("--probe", type=Path, required=True, help="probe .npz (keys probe_real, probe_imag)")
    p.add_argument("--object-file", action="append", default=[], metavar="NAME=PATH",
                   help="an object of base.object_files and its .npz (key objectGuess, complex); once per such object")
    p.add_argument("--out-dir", type=Path, required=True, help="folder of the prepared bases (<object>.npz)")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.base") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
