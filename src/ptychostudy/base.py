"""The base step: check the real probe and object, zoom them, write the prepared base.

Inputs are the files in ``data/base/`` (see its PROVENANCE.md). Each file's sha256 must
match params.yaml; an unexpected file is an error, not a warning.
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
from ptychostudy.resample import fourier_zoom


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


def prepare_base(cfg: Params, probe_path: Path, object_path: Path) -> Base:
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
    probe = probe / np.sqrt(power)

    object_arrays = _load_npz(Path(object_path), b.object_sha256, "object")
    raw = _require(object_arrays, "objectGuess", object_path, "object")
    if not np.iscomplexobj(raw):
        raise BaseDataError(f"object file {object_path}: objectGuess must be complex, got {raw.dtype}")
    if raw.ndim != 2:
        raise BaseDataError(f"object file {object_path}: objectGuess must be 2-D, got {raw.shape}")
    obj = fourier_zoom(raw.astype(np.complex128), b.object_zoom)
    n = b.patch_size
    if min(obj.shape) < 2 * n + cfg.simulate.guard_band_px + 2:
        raise BaseDataError(
            f"the zoomed object is {obj.shape[0]}×{obj.shape[1]} px: too small for two {n}-px splits "
            f"and a {cfg.simulate.guard_band_px}-px guard band; raise base.object_zoom"
        )
    z = b.object_zoom
    featured = scaled_region(featured_region(raw), z)  # on the real array (refuses a flat object): the
    # interpolant rings faintly across the flat padding
    meta = {
        "object_source": {"file": Path(object_path).name, "sha256": b.object_sha256, "shape": list(raw.shape)},
        "probe_source": {"file": Path(probe_path).name, "sha256": b.probe_sha256, "shape": list(real.shape)},
        "object_zoom": z,
        "probe_zoom": b.probe_zoom,
        "zoom_method": "trigonometric (DFT zero-padding) interpolation, sample i·zoom = input sample i",
        "featured_region": {"row0": featured[0], "row1": featured[1], "col0": featured[2], "col1": featured[3]},
        "probe_power": 1.0,
    }
    return Base(obj=obj.astype(np.complex64), probe=probe.astype(np.complex64), featured=featured, metadata=meta)


def cli(args) -> None:
    """``ptychostudy base``: prepare the base and say what it holds."""
    base = prepare_base(load_params(args.params, BaseParams, SimulateParams), args.probe, args.object)
    write_base(base, args.out)
    print(f"base: object {base.obj.shape[0]}×{base.obj.shape[1]}, probe {base.probe.shape[0]}×{base.probe.shape[1]}, "
          f"featured rows {base.featured[0]}–{base.featured[1]}, columns {base.featured[2]}–{base.featured[3]} -> {args.out}")


def build_parser(prog: str = "python -m ptychostudy.base") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="check the real probe and object (sha256), zoom them, write the prepared base",
                       description="The base step: verify each base file's sha256 against params.yaml (base.*_sha256), "
                       "check keys, dtypes and finiteness, zoom the object by base.object_zoom and the probe by "
                       "base.probe_zoom (trigonometric interpolation), normalise the probe to unit power and write one .npz.")
    stage.add_params(p)
    p.add_argument("--probe", type=Path, required=True, help="probe .npz (keys probe_real, probe_imag)")
    p.add_argument("--object", type=Path, required=True, help="object .npz (key objectGuess, complex)")
    p.add_argument("--out", type=Path, required=True, help="prepared base .npz to write")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.base") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
